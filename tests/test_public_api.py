"""The public surface is exactly what __all__ says, sorted; changing it is deliberate."""

from __future__ import annotations

import canary
from canary.testing import FakeRouter, RecordingNotifier


def test_public_names_are_pinned() -> None:
    assert canary.__all__ == sorted(canary.__all__)
    assert canary.__all__ == [
        "CanaryError", "ConflictError", "InputError", "MetricResult", "MetricsError",
        "MetricsProvider", "NotFoundError", "Notification", "Notifier", "NotifyError",
        "Outcome", "Phase", "Router", "RouterError", "Sample", "StateStore",
        "TemporaryError", "Verdict", "Weights", "open_store",
    ]
    for name in canary.__all__:
        assert getattr(canary, name) is not None


def test_shipped_test_doubles_implement_the_ports() -> None:
    assert isinstance(FakeRouter(), canary.Router)
    assert isinstance(RecordingNotifier(), canary.Notifier)
