"""Traffic moving forward: a stage's hooks, weight and pause, the verdicts counted against
each metric's limits, the next stage, and promotion once every stage passed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from canary.model import Outcome, Phase, Verdict
from canary.rollout import hookflow, rollback
from canary.rollout.vocabulary import MetricLimits, Observation, Plan, SetWeights, Step
from canary.state import FailureKind, MetricCounts, RolloutState, Skip, StageProgress


def progressing(step: Step, obs: Observation, plan: Plan) -> None:
    s = step.state
    # preStage hooks run before this stage's traffic moves; a match or mirror stage (weight
    # 0) moves no weight, so its hooks run on entry (recorded by key: never twice).
    zero = plan.stages[s.stage_index].weight == 0
    if s.stage.started_at is None and (s.desired_weight != s.actual_weight or zero) \
            and not _stage_hooks_done(step, plan, "preStage"):
        return
    if obs.weights is None or obs.weights.canary != s.desired_weight:
        apply_weight(step, obs)
        return
    now = step.now
    stage = plan.stages[s.stage_index]
    if s.stage.started_at is None:
        s = step.state
        step.state = replace(
            s, stage=replace(s.stage, started_at=now,
                             pause_until=now + timedelta(seconds=stage.pause),
                             next_analysis_at=now + timedelta(seconds=plan.interval)),
            message=f"stage {s.stage_index + 1}/{len(plan.stages)}: {stage.weight}% "
                    "on the canary")
        step.event("stage-reached", f"{stage.weight}% of traffic on {s.version}",
                   stage=s.stage_index + 1, weight=stage.weight)
        if plan.notify_stages:
            step.notify("stage")
        return
    if obs.verdict is not None and _judge(step, obs.verdict, plan):
        return
    s = step.state
    passed = not plan.analysis or s.stage.outcome is Outcome.PASSED
    until = s.stage.pause_until
    if s.run.skip is not Skip.NONE or (until is not None and now >= until and passed):
        if s.run.skip is not Skip.FULL and not _stage_hooks_done(step, plan, "postStage"):
            return
        advance(step, plan)
    elif until is not None and now >= until and _held_too_long(s, plan):
        step.state = replace(
            s, phase=Phase.PAUSED, stage=replace(s.stage, paused_remaining=0.0),
            message="held: analysis stayed inconclusive past its limit; "
                    "promote, resume or abort")
        step.event("held", step.state.message)
        step.notify("held")


def _held_too_long(s: RolloutState, plan: Plan) -> bool:
    return any(s.stage.counts.get(name, MetricCounts()).inconclusive > lim.inconclusive_limit
               for name, lim in plan.limits.items() if not lim.dry_run)


def _judge(step: Step, verdict: Verdict, plan: Plan) -> bool:
    """Count the verdict per metric; roll back (and return True) when a limit is crossed."""
    s = step.state
    counts = dict(s.stage.counts)
    crossed: list[str] = []
    for r in verdict.results:
        c = counts.get(r.name, MetricCounts()).after(r.outcome)
        counts[r.name] = c
        lim = plan.limits.get(r.name, MetricLimits())
        if r.dry_run or lim.dry_run:
            continue
        if c.failures > lim.failure_limit:
            crossed.append(r.message if lim.failure_limit == 0 else
                           f"{r.message} [failed {c.failures} checks in this stage, "
                           f"{lim.failure_limit} allowed]")
        elif lim.consecutive_failure_limit is not None and \
                c.consecutive_failures > lim.consecutive_failure_limit:
            crossed.append(f"{r.message} [failed {c.consecutive_failures} checks in a row, "
                           f"{lim.consecutive_failure_limit} allowed]")
        elif c.consecutive_errors >= lim.consecutive_error_limit:
            crossed.append(f"{r.message} [could not be measured {c.consecutive_errors} times "
                           "in a row]")
    step.state = replace(
        s, last_analysis_at=verdict.at,
        stage=replace(s.stage, counts=counts, outcome=verdict.outcome,
                      next_analysis_at=step.now + timedelta(seconds=plan.interval)),
        run=replace(s.run, last_results=verdict.results,
                    judge_memory=verdict.memory or s.run.judge_memory))
    step.event("analysis", f"analysis {verdict.outcome.value}", outcome=verdict.outcome.value,
               results=[r.to_json() for r in verdict.results])
    if not crossed:
        if verdict.promote_stage and verdict.outcome is Outcome.PASSED:
            # early promotion: the evidence is in, end the stage
            step.state = replace(step.state, run=replace(step.state.run, skip=Skip.STAGE))
            step.event("early-promotion", "the sequential judge has evidence the canary is "
                                          "no worse: ending the stage early")
        return False
    # Each reason is the metric's own message: name, value, threshold, window, query.
    detail = "; ".join(crossed)
    rollback.rollback(step, kind=FailureKind.ANALYSIS, reason=detail, notice="rolled-back")
    return True


def advance(step: Step, plan: Plan) -> None:
    nxt = step.state.stage_index + 1
    # The next stage moves weight up, or is a match or mirror stage (weight 0) before the
    # weighted ones; `promote --full` has set 100% and skips whatever is left.
    if nxt < len(plan.stages) and (plan.stages[nxt].weight > step.state.desired_weight
                                   or plan.stages[nxt].weight == step.state.desired_weight == 0):
        enter_stage(step, nxt, plan)
        return
    if not step.state.run.promotion_confirmed:
        status = hookflow.hooks(step, plan, "confirmPromotion")
        if status == "running":
            return
        if status == "failed":
            # A confirmation gate that says no waits for a human, it does not roll back.
            s = step.state
            hook = hookflow.failed_hook(s, "confirmPromotion")
            step.state = replace(
                s, phase=Phase.PAUSED, stage=replace(s.stage, paused_remaining=0.0),
                run=replace(s.run, skip=Skip.NONE),
                message=f"confirmPromotion hook {hook} did not confirm: `canary promote` "
                        "to promote anyway, `canary abort` to roll back")
            step.event("held", step.state.message)
            step.notify("held")
            return
    already = step.state.desired_weight == 100
    step.state = replace(step.state, phase=Phase.PROMOTING, desired_weight=100,
                         message="promoting")
    step.event("promoting", "all stages passed: promoting")
    if not already:
        step.actions.append(SetWeights(100))


def enter_stage(step: Step, index: int, plan: Plan) -> None:
    s = step.state
    weight = plan.stages[index].weight
    step.state = replace(
        s, phase=Phase.PROGRESSING, stage_index=index, desired_weight=weight,
        # a new stage, its clocks not started; failure limits are per stage, errors in a
        # row carry over
        stage=StageProgress(entered_at=step.now, counts={
            k: MetricCounts(consecutive_errors=v.consecutive_errors)
            for k, v in s.stage.counts.items()}),
        run=replace(s.run, skip=Skip.NONE if s.run.skip is Skip.STAGE else s.run.skip),
        message=f"shifting {weight}% of traffic to {s.version}")
    step.event("stage-started", f"stage {index + 1}/{len(plan.stages)}: setting {weight}%",
               stage=index + 1, weight=weight)
    if plan.hooks.get("preStage"):
        progressing(step, Observation(now=step.now), plan)  # preStage hooks first
    else:
        step.actions.append(SetWeights(weight))


def apply_weight(step: Step, obs: Observation) -> None:
    """Level-triggered: whatever the router says, ask again for the desired weight."""
    s = step.state
    if obs.weights is not None and s.stage.started_at is not None:
        step.event("drift", f"router reports {obs.weights.canary}% but the rollout wants "
                            f"{s.desired_weight}%: re-applying", actual=obs.weights.canary)
    step.actions.append(SetWeights(s.desired_weight))


def paused(step: Step, obs: Observation, plan: Plan) -> None:
    if obs.weights is None or obs.weights.canary != step.state.desired_weight:
        apply_weight(step, obs)


def promoting(step: Step, obs: Observation, plan: Plan) -> None:
    # 100% on the canary first; promote hooks (e.g. upgrade the stable fleet) then send
    # traffic back to the stable servers, now running the new version.
    s = step.state
    if plan.hooks.get("promote") and s.desired_weight == 100:
        if obs.weights is None or obs.weights.canary != 100:
            apply_weight(step, obs)
            return
        status = hookflow.hooks(step, plan, "promote")
        if status == "running":
            return
        if status == "failed":
            rollback.rollback(step, kind=FailureKind.HOOK, notice="rolled-back",
                              reason=f"promote hook {hookflow.failed_hook(s, 'promote')} failed")
            return
        step.state = replace(step.state, desired_weight=0,
                             message="promote hooks done: draining the canary")
    if obs.weights is None or obs.weights.canary != step.state.desired_weight:
        apply_weight(step, obs)
        return
    post = hookflow.hooks(step, plan, "postRollout", stop_on_failure=False)
    if post == "running":
        return
    note = ""
    if post == "failed":
        note = f" (postRollout hook {hookflow.failed_hook(s, 'postRollout')} failed)"
    step.state = replace(step.state, phase=Phase.SUCCEEDED,
                         run=replace(step.state.run, finished_at=step.now),
                         message=f"promoted {s.version}{note}")
    step.event("promoted", f"{s.version} promoted{note}")
    step.notify("promoted")


def _stage_hooks_done(step: Step, plan: Plan, point: str) -> bool:
    """Run a stage's ``point`` hooks; True once all succeeded. While one runs, False; when
    one failed, False after rolling back."""
    s = step.state
    status = hookflow.hooks(step, plan, point)
    if status == "failed":
        hook = hookflow.failed_hook(s, point)
        rollback.rollback(step, kind=FailureKind.HOOK, notice="rolled-back",
                          reason=f"{point} hook {hook} failed at stage {s.stage_index + 1}")
    return status not in ("running", "failed")
