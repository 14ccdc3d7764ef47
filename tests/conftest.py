"""Shared fixtures: every test session gets its own HFT_HOME, every test a fixed torch seed.

HFT_HOME is a session temp folder, so runs, the store and the converted SmolLM2 cache
never touch ~/.hft_lab, and the SmolLM2 conversion happens at most once per session.
Tests that need a private home still set their own with ``monkeypatch.setenv``.

Time limits (pytest-timeout, pytest.ini): 300 s a test; a test marked slow (a big model, a
notebook in its own kernel) gets SLOW_TIMEOUT_S unless it names its own limit.
"""
from __future__ import annotations

import os

os.environ.setdefault("HFT_OFFLINE", "1")  # the tests never need a model hub (set before hft_core is imported)

import pytest  # noqa: E402
import torch  # noqa: E402


SLOW_TIMEOUT_S = 900


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


@pytest.fixture(autouse=True)
def torch_seed():
    torch.manual_seed(0)
