"""The Notifier port: one method. Secrets (webhook URLs, tokens) stay inside adapters."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from canary.model import Notification


@runtime_checkable
class Notifier(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver one notification; raise NotifyError if it could not be delivered."""
        ...
