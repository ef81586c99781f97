"""The notifier for rollouts that configure none, so callers never test for None."""

from __future__ import annotations

from canary.model import Notification


class NullNotifier:
    """Sends nothing and records nothing (a recording double lives in canary.testing)."""

    def send(self, notification: Notification) -> None:
        return None

    def __repr__(self) -> str:
        return "NullNotifier()"
