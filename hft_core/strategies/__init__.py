"""Strategies: one module each, registered on import. See base.py for the hooks.

To add one: write ``hft_core/strategies/<name>.py`` with a config dataclass, a
small class with the hooks it needs and a ``register(StrategySpec(...))`` line,
then add its module name below and a row to tests/test_strategy_matrix.py.
"""
import importlib

_MODULES = [
    # each registers itself on import; setup order is each spec's `order`, not this list
    "blend", "reinit", "l2sp", "kd", "mutual", "aux", "eda", "neftune", "lora", "freeze", "half_ft", "lpft", "mixout",
]

for _m in _MODULES:
    importlib.import_module(f"hft_core.strategies.{_m}")

# strategies of your own: modules named in HFT_PLUGINS (comma-separated, importable), each with its
# register(...) line; the app, the CLI and every worker process import them here
import os as _os  # noqa: E402

for _m in (n.strip() for n in _os.environ.get("HFT_PLUGINS", "").split(",")):
    if _m:
        importlib.import_module(_m)
