"""A fork server for worker processes: torch and the trainer imported once, each worker forked from it.

Importing torch, transformers and the trainer takes seconds on 2 cores; a worker forked
from a process that did it already starts in a fraction of a second (the app's workers
after a crash, a test's workers, `hft worker --per-device N`). Not multiprocessing's
forkserver: that one re-imports the caller's ``__main__`` in every child, which breaks a
script or notebook without an ``if __name__ == "__main__"`` guard.

    server = ForkServer()                                  # one per supervising process
    proc = server.spawn(argv, env, log_path)               # -> a handle like a Popen
    proc.pid, proc.exitcode, proc.is_alive(), proc.terminate(), proc.kill(), proc.join(timeout)

The server (``python -m hft_core.forkserver``) is single-threaded: it reads requests (JSON
lines) on stdin and answers on stdout with {"pid": N}, and {"exited": N, "code": rc} when a
child ends (rc < 0: killed by signal -rc, as Popen.returncode). When its stdin closes (the
supervising process ended) it sends SIGTERM to its children and exits.
"""
from __future__ import annotations

import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
from typing import Any


class ForkedProcess:
    """A worker forked by the server: what the supervisor needs of a Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exitcode: int | None = None
        self._ended = threading.Event()

    def _exited(self, code: int) -> None:
        self.exitcode = code
        self._ended.set()

    def is_alive(self) -> bool:
        return not self._ended.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._ended.wait(timeout)

    def _signal(self, sig: int) -> None:
        if self.is_alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class ForkServer:
    """The client: starts the server process on first use, again if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._children: dict[int, ForkedProcess] = {}
        self._pids: queue.Queue = queue.Queue()

    def _ensure(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-m", "hft_core.forkserver"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
            threading.Thread(target=self._read, args=(self._proc,), name="hft-forkserver-reader", daemon=True).start()
        return self._proc

    def spawn(self, argv: list[str], env: dict[str, str], log_path: str, timeout: float = 300.0) -> ForkedProcess:
        """Fork a worker running ``worker_process.main(argv)`` with ``env``, its output in ``log_path``."""
        with self._lock:
            proc = self._ensure()
            proc.stdin.write(json.dumps({"argv": argv, "env": env, "log": log_path}) + "\n")
            proc.stdin.flush()
            try:  # the first request waits for the server's imports (seconds)
                pid = self._pids.get(timeout=timeout)
            except queue.Empty:
                raise RuntimeError(f"the worker fork server did not answer within {timeout:.0f} s") from None
            if pid is None:
                raise RuntimeError("the worker fork server ended before it could start a worker")
            child = self._children.setdefault(pid, ForkedProcess(pid))
            return child

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "pid" in msg:
                self._children.setdefault(msg["pid"], ForkedProcess(msg["pid"]))
                self._pids.put(msg["pid"])
            elif "exited" in msg:
                self._children.setdefault(msg["exited"], ForkedProcess(msg["exited"]))._exited(int(msg["code"]))
        # the server ended: its children were told to stop; none of them can be reaped by us any more
        for child in list(self._children.values()):
            if child.is_alive():
                child._exited(0 if not _alive(child.pid) else -signal.SIGTERM)
        self._pids.put(None)

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.stdin.close()  # the server stops its children and exits
                try:
                    self._proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._proc.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


# ---- the server ------------------------------------------------------------------------------

def serve() -> int:
    import hft_core  # noqa: F401  (the point of the server: these are imported once)
    import hft_core.trainer  # noqa: F401
    from hft_core import worker_process

    out = sys.stdout
    children: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)  # a handler, so SIGCHLD reaches the wake-up pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the app's Ctrl-C is the app's
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "request")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    pending = b""

    def say(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            say({"exited": pid, "code": code})

    while True:
        for key, _ in sel.select():
            if key.data == "child":
                os.read(wake_r, 4096)
                reap()
                continue
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:  # the supervising process is gone: stop the workers, then leave
                for pid in children:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except OSError:
                        pass
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:  # the worker: none of the server's plumbing
                    sel.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                    try:
                        worker_process.run_forked(request["argv"], request["env"], request["log"])
                    finally:
                        os._exit(70)  # run_forked exits by itself; here only if it raised
                children.add(pid)
                say({"pid": pid})


if __name__ == "__main__":
    sys.exit(serve())
