"""The store's errors, in a module of their own so the store and its control plane share them."""
from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot do what was asked. The message names the path and what to do."""


class UnknownRun(StoreError, KeyError):
    """No run with this id in the store (also a KeyError, so ``except KeyError`` works)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""
