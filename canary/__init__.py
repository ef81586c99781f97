"""canary: a progressive-delivery controller.

What users may import is listed in ``__all__`` (and pinned by a test); everything else
may change between versions. The ports (Router, MetricsProvider, Notifier, StateStore)
are what an adapter written outside this package implements.
"""

__version__ = "0.1.0"  # the one place; pyproject.toml reads it, `canary --version` prints it

from canary.errors import (
    CanaryError,
    ConflictError,
    InputError,
    MetricsError,
    NotFoundError,
    NotifyError,
    RouterError,
    TemporaryError,
)
from canary.metrics.base import MetricsProvider, Sample
from canary.model import MetricResult, Notification, Outcome, Phase, Verdict, Weights
from canary.notify.base import Notifier
from canary.routers.base import Router
from canary.store.base import StateStore
from canary.store.registry import open_store

__all__ = [
    "CanaryError",
    "ConflictError",
    "InputError",
    "MetricResult",
    "MetricsError",
    "MetricsProvider",
    "NotFoundError",
    "Notification",
    "Notifier",
    "NotifyError",
    "Outcome",
    "Phase",
    "Router",
    "RouterError",
    "Sample",
    "StateStore",
    "TemporaryError",
    "Verdict",
    "Weights",
    "open_store",
]
