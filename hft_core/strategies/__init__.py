"""Strategies: one module each, registered on import. See base.py for the hooks.

To add one: write ``hft_core/strategies/<name>.py`` with a config dataclass, a
small class with the hooks it needs and a ``register(StrategySpec(...))`` line,
then add its module name below and a row to tests/test_strategy_matrix.py.
"""
import importlib

_MODULES = [
    # filled in as strategies land; each registers itself on import
]

for _m in _MODULES:
    importlib.import_module(f"hft_core.strategies.{_m}")
