"""A JSON file of measured figures in $HFT_HOME/cache, shared by every process of that home.

    probes = JsonCache("estimates.json")      # estimate.py: time-estimate probes by shape
    probes.put(key, {...}); probes.get(key); probes.drop(key); probes.drop()

Writes merge one entry under a lock file and replace the file atomically (a reader never sees
half a file, two worker processes never lose each other's entry). A read-only or vanished home
is not an error: the caller's in-memory figure still serves its process.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from hft_core import home


class JsonCache:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return home.cache_dir() / self.name

    def read(self) -> dict[str, Any]:
        try:
            d = json.loads(self.path.read_text(encoding="utf-8"))
            return d if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> Any:
        return self.read().get(key)

    def load(self, key: str, make: Callable[..., Any], memo: dict[str, Any]) -> Any:
        """``memo[key]``, else ``make(**entry)`` of the file's entry (kept in ``memo``), else None (none,
        or an older layout that ``make`` does not take: measure again)."""
        if key in memo:
            return memo[key]
        d = self.get(key)
        if not isinstance(d, dict):
            return None
        try:
            memo[key] = make(**d)
        except TypeError:
            return None
        return memo[key]

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        self._update(lambda d: d.__setitem__(key, dict(value)))

    def drop(self, key: str | None = None) -> None:
        """Forget one entry, or the whole file."""
        if key is None:
            with self._lock:
                try:
                    self.path.unlink()
                except OSError:
                    pass
            return
        self._update(lambda d: d.pop(key, None))

    def _update(self, change) -> None:
        import fcntl

        with self._lock:
            path = self.path
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = open(path.with_name(path.name + ".lock"), "a")
            except OSError:
                return
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                d = self.read()
                change(d)
                tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
                tmp.write_text(json.dumps(d, indent=1), encoding="utf-8")
                tmp.replace(path)
            except OSError:
                pass
            finally:
                lock.close()
