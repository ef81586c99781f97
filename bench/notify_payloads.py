"""How big the Teams and PagerDuty payloads get, and what a template costs to render.

``.venv/bin/python -m bench.notify_payloads`` prints the figures quoted for notifications:
the bytes of a Teams card (limit ~28 KB per message; canary keeps under 24 KB by leaving
metrics out) and of a PagerDuty trigger (limit 512 KB) for an ordinary rollback and for
an absurd one (60 failing metrics, 5,000-character queries, a 10,000-character reason,
once in ASCII and once in three-byte characters), and the time to render a template with
a loop over the failing metrics. Timings on a shared machine are indicative only.
"""

from __future__ import annotations

import json
import timeit
from typing import Any

from canary.model import MetricResult, Notification, Outcome
from canary.notify.pagerduty import pagerduty_event
from canary.notify.teams import teams_message
from canary.notify.templates import compile_templates

TEMPLATE = ("{{ rollout }} {{ reason }}\n{% for m in metrics %}- {{ m.name }} {{ m.value }} "
            "{{ m.threshold }} {{ m.query }}\n{% endfor %}")


def rollback(results: tuple[MetricResult, ...], reason: str) -> Notification:
    return Notification(event="rolled-back", rollout="checkout", service="checkout-svc",
                        version="2.0.0", stable_version="1.4.2", stage=2, weight=25,
                        reason=reason, results=results)


def size(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, ensure_ascii=False).encode())


def shown(card: dict[str, Any]) -> int:
    body = card["attachments"][0]["content"]["body"]
    return sum(1 for b in body if b["type"] == "TextBlock" and b["text"].startswith("**m"))


def main() -> None:
    ordinary = rollback((
        MetricResult("m0", Outcome.FAILED, 0.0523, 'sum(rate(http_requests_total{code=~"5.."}'
                     '[1m]))', threshold="<= 0.01"),
        MetricResult("m1", Outcome.ERROR, None, "histogram_quantile(0.99, x)",
                     threshold="<= 0.5", message="Prometheus unreachable")),
        "analysis failed: m0, m1")
    ascii_big = rollback(tuple(MetricResult(f"m{i}", Outcome.FAILED, float(i), "q" * 5000,
                                            threshold="<= 0") for i in range(60)), "r" * 10_000)
    wide_big = rollback(tuple(MetricResult(f"m{i}", Outcome.ERROR, None, "界" * 5000,
                                           message="錯" * 3000) for i in range(60)),
                        "理" * 10_000)
    for name, n in (("ordinary", ordinary), ("60 metrics", ascii_big),
                    ("60 metrics, 3-byte text", wide_big)):
        card = teams_message(n)
        event = pagerduty_event(n, routing_key="k" * 32)
        print(f"{name:24} teams {size(card):6} B ({shown(card)} metrics shown)   "
              f"pagerduty {size(event):6} B")
    templates = compile_templates({"rolled-back": TEMPLATE})
    runs = 2000
    took = timeit.timeit(lambda: templates.render(ordinary), number=runs)
    print(f"render a rollback template: {took / runs * 1e6:.0f} µs ({runs} runs)")


if __name__ == "__main__":
    main()
