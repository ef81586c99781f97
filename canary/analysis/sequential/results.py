"""What one step of the sequential judge shows in a rollout's status: the deciding entry
and one dry-run entry per family, as MetricResults like every other check's."""

from __future__ import annotations

import math

from canary.analysis.sequential.core import JudgeStep
from canary.analysis.sequential.text import MAX_LOG, e_value, num
from canary.model import MetricResult, Outcome


def metric_results(step: JudgeStep) -> tuple[MetricResult, ...]:
    """The controller's status entries for one step.

    One deciding entry named ``sequential``: FAILED on rollback, PASSED when the stage is
    promoted early (or every family already has promotion evidence), INCONCLUSIVE
    otherwise; its value is the combined e-value and its message the judge's reason.
    Then one entry per family (``sequential/errors``, ``sequential/latency``) marked
    dry-run: shown in the status, never counted, FAILED for the family that carried a
    rollback, PASSED with promotion evidence, INCONCLUSIVE otherwise.
    """
    log_thr = math.log(step.threshold)
    worst = max(step.metrics, key=lambda m: m.log_e).name if step.metrics else ""
    proven = bool(step.metrics) and all(m.log_promote_e >= log_thr for m in step.metrics)
    if step.decision == "rollback":
        overall = Outcome.FAILED
    elif step.decision == "promote" or proven:
        overall = Outcome.PASSED
    else:
        overall = Outcome.INCONCLUSIVE
    threshold = f"e-value < {num(step.threshold)}"
    query = "canary vs stable (sequential test on counter increments)"
    out = [MetricResult(name="sequential", outcome=overall,
                        value=math.exp(min(step.log_e, MAX_LOG)), query=query,
                        threshold=threshold, message=step.reason)]
    for m in step.metrics:
        if step.decision == "rollback" and m.name == worst:
            outcome = Outcome.FAILED
        elif m.log_promote_e >= log_thr:
            outcome = Outcome.PASSED
        else:
            outcome = Outcome.INCONCLUSIVE
        out.append(MetricResult(
            name=f"sequential/{m.name}", outcome=outcome,
            value=math.exp(min(m.log_e, MAX_LOG)), query=f"{query}: {m.name}",
            threshold=threshold, message=f"{m.name}: {m.summary}; evidence "
            f"{e_value(m.log_e)}", dry_run=True))
    return tuple(out)
