"""hft_core installed as a package: `hft` and `import hft_core` work from any folder (issue 15).

`bash run.sh setup` installs this checkout editable (`pip install -e .`). Every check here runs
in a temporary folder outside the repository, with its own HFT_HOME and no PYTHONPATH, as a
user's own terminal, script or notebook would. Without the install these tests fail (not skip)
and say how to install: a missing `hft` is exactly what they are here to catch.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import hft_core
from hft_core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "run `bash run.sh setup` in the checkout (installs hft_core from it, editable, with the `hft` command)"
TIMEOUT = 300  # a subprocess imports torch and transformers: seconds on a busy 2-core machine


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HFT_HOME=str(home), HFT_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


@pytest.fixture
def outside(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """(a working folder outside the repository, an environment with a fresh HFT_HOME there)."""
    work = tmp_path / "work"
    work.mkdir()
    assert ROOT not in work.resolve().parents, f"the temp folder {work} is inside the repository"
    return work, _env(tmp_path / "home")


def _run(cmd: list[str], work: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module", autouse=True)
def installed_here(tmp_path_factory) -> None:
    """hft_core, seen from outside the checkout, is this checkout's code (the editable install)."""
    work = tmp_path_factory.mktemp("probe")
    probe = ("import importlib.util as u, os; s = u.find_spec('hft_core'); "
             "print(os.path.realpath(s.origin) if s else '')")
    out = _run([sys.executable, "-c", probe], work, _env(work / "home"))
    origin = out.stdout.strip()
    if not origin:
        pytest.fail(f"hft_core is not installed for {sys.executable}: {INSTALL}")
    if origin != str(ROOT / "hft_core" / "__init__.py"):
        pytest.fail(f"the installed hft_core is {origin}, not this checkout's: {INSTALL}")


def _hft() -> str:
    exe = shutil.which("hft")
    if exe is None:
        beside = Path(sysconfig.get_path("scripts")) / "hft"
        where = f" (it is at {beside}: put {beside.parent} on PATH)" if beside.exists() else ""
        pytest.fail(f"the `hft` command is not on PATH{where}: {INSTALL}")
    return exe


def test_hft_version_is_the_package_version(outside):
    work, env = outside
    out = _run([_hft(), "--version"], work, env)
    assert out.returncode == 0, f"`hft --version` exited {out.returncode}: {out.stderr[-2000:]}"
    assert out.stdout.strip() == f"hft {hft_core.__version__}"
    # one source of the version: the installed metadata is read from hft_core.__version__
    assert importlib.metadata.version("hft-lab") == hft_core.__version__, (
        f"installed metadata says {importlib.metadata.version('hft-lab')}, hft_core says "
        f"{hft_core.__version__}: {INSTALL}")


@pytest.mark.parametrize("how", ["hft", "python -m hft_core"])
def test_list_from_any_folder(outside, how):
    work, env = outside
    cmd = [_hft(), "list"] if how == "hft" else [sys.executable, "-m", "hft_core", "list"]
    out = _run(cmd, work, env)
    assert out.returncode == 0, f"`{how} list` exited {out.returncode}: {out.stderr[-2000:]}"
    home = env["HFT_HOME"]
    assert f"no runs in {home}" in out.stdout, out.stdout  # the store of HFT_HOME, not the checkout's


SCRIPT = textwrap.dedent("""
    import hft_core
    from hft_core.config import RunConfig
    from hft_core.runs import run_here

    cfg = RunConfig(model="tiny:bert", data="tiny.csv", max_steps=2, batch_size=4, n_eval=8, eval_every=0,
                    device="cpu")
    outcome = run_here(cfg)
    print("RESULT", outcome.run_id, outcome.status, hft_core.__file__)
""")


def test_a_script_outside_the_checkout_trains_into_its_store(outside):
    work, env = outside
    rows = [f"{'good great fine' if i % 2 else 'bad awful poor'} text number {i},{'pos' if i % 2 else 'neg'}"
            for i in range(40)]
    (work / "tiny.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    (work / "my_script.py").write_text(SCRIPT)
    out = _run([sys.executable, "my_script.py"], work, env)
    assert out.returncode == 0, f"the script failed ({out.returncode}):\n{out.stderr[-3000:]}"
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, out.stdout
    _, run_id, status, module_file = line[-1].split(" ", 3)
    assert status == "finished"
    assert Path(module_file).resolve() == ROOT / "hft_core" / "__init__.py"  # edits in the checkout are live

    store = RunStore(env["HFT_HOME"])
    try:
        assert [r.id for r in store.list_runs()] == [run_id]
        m = store.metrics(run_id)
        loss_steps = sorted(m[m.name == "loss"].step.tolist())
        assert loss_steps == [1, 2]
        evals = m[m.name == "eval/accuracy"]
        assert evals.step.tolist() == [2] and 0.0 <= evals.value.iloc[0] <= 1.0
    finally:
        store.close()

    listed = _run([_hft(), "list"], work, env)
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stdout + listed.stderr
