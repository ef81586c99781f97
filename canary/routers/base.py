"""The Router port: four methods, one adapter file per backend beside it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from canary.model import Weights


@runtime_checkable
class Router(Protocol):
    """Moves traffic between the stable and canary versions of one service.

    ``set_weights`` is absolute and idempotent; ``get_weights`` reads what is in effect on
    the router (never what was last asked). Failures raise ``RouterError``.
    """

    def ensure(self) -> None:
        """Check the configuration is usable (backend and servers exist); RouterError if not."""

    def set_weights(self, weights: Weights) -> None: ...

    def get_weights(self) -> Weights: ...

    def describe(self) -> str:
        """One line naming what this router drives, for progress output."""
