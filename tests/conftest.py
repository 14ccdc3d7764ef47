"""Shared fixtures: every test session gets its own HFT_HOME, every test a fixed torch seed.

HFT_HOME is a session temp folder, so runs, the store and the converted SmolLM2 cache
never touch ~/.hft_lab, and the SmolLM2 conversion happens at most once per session.
Tests that need a private home still set their own with ``monkeypatch.setenv``.

Time limits (pytest-timeout, pytest.ini): 300 s a test; a test marked slow (a big model, a
notebook in its own kernel) gets SLOW_TIMEOUT_S unless it names its own limit.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HFT_OFFLINE", "1")  # the tests never need a model hub (set before hft_core is imported)

import pytest  # noqa: E402
import torch  # noqa: E402


SLOW_TIMEOUT_S = 900


# ---- test processes: one per core (pytest-xdist, `-n auto` in pytest.ini) ------------------------
# Each test process is pinned to its own core(s) before anything trains, and everything it starts
# (training workers, the app, Chromium) inherits the pin: the machine is split, never shared, as
# hft_core splits the cores between runs side by side (placement.threads_per_run reads the same
# affinity mask). So two test processes never slow each other several-fold, and a test sees the
# machine as one core, as it would under `taskset -c 0`.

def _cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity masks; one test process
        return [0]


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one test process per core this run may use (1 under `taskset -c 0`)."""
    return len(_cores()) if hasattr(os, "sched_setaffinity") else 1


def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... in a test process of xdist
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    mine = _cores()[int(worker[2:]) % count::count]
    if mine:
        os.sched_setaffinity(0, mine)
        os.environ["OMP_NUM_THREADS"] = str(len(mine))  # for what the tests start (placement reads the mask)
        torch.set_num_threads(len(mine))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.fixture(scope="session", autouse=True)
def hft_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hft_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HFT_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def one_torch_thread():
    """For a module of tiny-model tests (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    they train several times faster on one torch thread (no thread start-up per op, no
    oversubscription on a busy machine); the count is restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def torch_seed():
    torch.manual_seed(0)


PLUGINS = Path(__file__).resolve().parent / "plugins"   # test-only strategies (HFT_PLUGINS)


@pytest.fixture
def crash_strategy():
    """The test-only "crash" strategy (tests/plugins/hft_test_crash.py) registered in this process too,
    to validate configs that use it; the workers that train them load it through HFT_PLUGINS."""
    sys.path.insert(0, str(PLUGINS))
    import hft_test_crash  # noqa: F401
    from hft_core.strategies import base

    yield
    base.REGISTRY.pop("crash", None)
    sys.modules.pop("hft_test_crash", None)
    sys.path.remove(str(PLUGINS))
