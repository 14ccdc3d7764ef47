"""A strategy that crashes its process, for the tests of worker isolation (HFT_PLUGINS=hft_test_crash).

``mix: {crash: {how: segv}}`` kills the training process with SIGSEGV in ``setup``, as a bug in a
native kernel would; ``how: abort`` calls os.abort() (SIGABRT), as a failed C++ assertion would.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from hft_core.fields import check, param
from hft_core.strategies.base import Hooks, StrategySpec, register


@dataclass
class CrashConfig:
    how: str = param("segv", "segv: SIGSEGV, abort: os.abort()")

    def __post_init__(self) -> None:
        check(self.how in ("segv", "abort"), "mix.crash.how", self.how, "use 'segv' or 'abort'")


class Crash(Hooks):
    name = "crash"

    def __init__(self, cfg: CrashConfig) -> None:
        self.cfg = cfg

    def setup(self, model, ctx):
        if self.cfg.how == "abort":
            os.abort()
        os.kill(os.getpid(), signal.SIGSEGV)
        return model


register(StrategySpec(name="crash", config_cls=CrashConfig, factory=Crash, title="Crash (tests only)",
                      summary="Kills its training process, to test that a crash stays in its worker."))
