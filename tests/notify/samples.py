"""Notifications to send in tests, and the secret they must never leak."""

from __future__ import annotations

from canary.model import MetricResult, Notification, Outcome

# Looks like a real incoming-webhook path; tests assert it never leaks.
SECRET_PATH = "/services/T0CANARY/B0SECRET/xoxSuperSecretToken42"
SECRET_TOKEN = "xoxSuperSecretToken42"


def rollback(**overrides: object) -> Notification:
    """A rollback after an analysis failure at stage 2, with two failing metrics."""
    values: dict[str, object] = dict(
        event="rolled-back",
        rollout="checkout",
        service="checkout-svc",
        version="2.0.0",
        stable_version="1.4.2",
        stage=2,
        weight=25,
        reason="analysis failed: error-rate, latency-p99",
        results=(
            MetricResult("error-rate", Outcome.FAILED, 0.0523,
                         'sum(rate(http_requests_total{service="checkout-svc",code=~"5.."}[1m]))',
                         threshold="<= 0.01"),
            MetricResult("latency-p99", Outcome.ERROR, None,
                         "histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))",
                         threshold="<= 0.5", message="Prometheus unreachable"),
            MetricResult("queue-depth", Outcome.PASSED, 3.0, "max(queue_depth)",
                         threshold="<= 100"),
            MetricResult("cpu", Outcome.FAILED, 0.97, "avg(cpu_usage)", threshold="<= 0.9",
                         dry_run=True),
        ),
        key="checkout/7/rolled-back",
    )
    values.update(overrides)
    return Notification(**values)  # type: ignore[arg-type]
