"""How a rollout moves traffic: staged canary (the default) or blue-green, and its stages.

Every strategy becomes a list of stages the one engine runs, so journal, resume, hooks,
analysis, operator commands, alerts and exit codes are the same for all of them:

* a weighted stage sends ``weight`` percent of traffic to the canary;
* a match stage (``{match: ..., pause: 1h}``) sends no weighted share, only the requests
  the router's match selects (an A/B audience, testers): the canary's analysis runs on
  them;
* a mirror stage (``{mirror: 50, pause: 5m}``) copies that share of live requests to the
  canary and discards its answers; the canary is judged on its own metrics;
* ``strategy: blueGreen`` is a match stage on the preview header for ``preview`` (smoke
  tests and pre-promotion analysis on preview traffic), then one switch to 100% for
  ``rollbackWindow`` (post-promotion analysis, the old version still routable: a failure
  switches back in one step), then promotion.

Special stages come before the weighted ones, whose weights go up. A stage that needs a
router feature (see routers/features.py) is refused here, with the stage's line, when the
rollout's router type cannot do it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from canary import defaults
from canary.config.specbase import Duration, _Model
from canary.config.yamlsource import Document
from canary.errors import InputError
from canary.model import Phase
from canary.routers.features import Routes
from canary.specs import Stage
from canary.state import RolloutState

DEFAULT_STAGES = defaults.STAGES
DEFAULT_PAUSE = defaults.PAUSE
DEFAULT_PREVIEW_HEADER = defaults.PREVIEW_HEADER
DEFAULT_ROLLBACK_WINDOW = defaults.ROLLBACK_WINDOW

Strategy = Literal["canary", "blueGreen"]


class StageModel(_Model):
    weight: int | None = Field(default=None, ge=1, le=100)
    match: bool | dict[str, Any] | None = None
    mirror: int | None = Field(default=None, ge=1, le=100)
    pause: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StageModel:
        kinds = [k for k in ("weight", "match", "mirror")
                 if getattr(self, k) not in (None, False)]
        if len(kinds) != 1:
            raise ValueError("a stage has exactly one of weight (percent of traffic), match "
                             "(only requests the router's match selects) or mirror (percent "
                             f"of requests copied to the canary); got {kinds or 'none'}")
        return self


class BlueGreenModel(_Model):
    preview: Duration = DEFAULT_PAUSE
    rollback_window: Duration = Field(default=DEFAULT_ROLLBACK_WINDOW, alias="rollbackWindow")
    preview_header: str = Field(default=DEFAULT_PREVIEW_HEADER, alias="previewHeader",
                                min_length=1, max_length=128)


def build_stages(doc: Document, *, strategy: Strategy, stages: list[StageModel | int] | None,
                 pause: float | None, blue_green: BlueGreenModel | None,
                 router: dict[str, Any]) -> tuple[tuple[Stage, ...], dict[str, Any]]:
    """The stages the engine runs, and the router block with any match a stage brings."""
    path: tuple[str | int, ...] = ("spec", "stages")
    default_pause = pause if pause is not None else DEFAULT_PAUSE
    router = dict(router)
    if strategy == "blueGreen":
        if stages is not None:
            raise doc.error("blueGreen has no stages: it previews, then switches once; set "
                            "spec.blueGreen.preview and rollbackWindow instead", path)
        bg = blue_green or BlueGreenModel()
        router.setdefault("match", {"header": bg.preview_header, "value": "1"})
        _need(doc, router, "match", ("spec", "strategy"))
        return (Stage(weight=0, pause=bg.preview, match=True),
                Stage(weight=100, pause=bg.rollback_window)), router
    if blue_green is not None:
        raise doc.error("spec.blueGreen needs strategy: blueGreen", ("spec", "blueGreen"))
    built: list[Stage] = []
    weighted_seen = False
    last_weight = 0
    for i, raw in enumerate(stages if stages is not None else DEFAULT_STAGES):
        where = (*path, i)
        if isinstance(raw, int):
            raw = StageModel(weight=raw)
        stage_pause = raw.pause if raw.pause is not None else default_pause
        if raw.weight is not None:
            if raw.weight <= last_weight:
                raise doc.error(f"stage weights must go up: {raw.weight} after {last_weight}",
                                where)
            weighted_seen, last_weight = True, raw.weight
            built.append(Stage(weight=raw.weight, pause=stage_pause))
            continue
        if weighted_seen:
            raise doc.error("match and mirror stages come before the weighted stages", where)
        if raw.match not in (None, False):
            if isinstance(raw.match, dict):
                if "match" in router and router["match"] != raw.match:
                    raise doc.error("spec.router.match is set already; give `match: true` "
                                    "here to use it", (*where, "match"))
                router["match"] = raw.match
            _need(doc, router, "match", (*where, "match"))
            built.append(Stage(weight=0, pause=stage_pause, match=True))
        else:
            assert raw.mirror is not None
            _need(doc, router, "mirror", (*where, "mirror"))
            built.append(Stage(weight=0, pause=stage_pause, mirror=raw.mirror))
    if not built:
        raise doc.error("at least one stage is needed", path)
    return tuple(built), router


def _need(doc: Document, router: dict[str, Any], feature: str,
          where: tuple[str | int, ...]) -> None:
    """The router must be able to do ``feature``; a match must also say what it matches."""
    from canary.routers.registry import require_feature

    kind = router.get("type")
    if not isinstance(kind, str):
        return  # the router block's own validation names the missing type
    try:
        require_feature(kind, feature, field=".".join(str(p) for p in where))
    except InputError as exc:
        raise doc.error(exc.message, where) from None
    if feature == "match" and "match" not in router:
        raise doc.error("a match stage needs spec.router.match (which header or cookie), "
                        "or the match itself here: {match: {header: X-Canary, value: \"1\"}}",
                        where)


def routes_for(state: RolloutState, stages: Sequence[Stage], *,
               match_configured: bool) -> Routes:
    """The matches and mirroring a rollout in ``state`` wants from its router.

    The match is on while the canary takes part (from the first stage until promotion);
    a stage's mirroring lasts while that stage runs. Everything else (pending, gating, a
    rollback, any ending) wants neither: matching requests go back to stable with the
    rest.
    """
    if state.phase not in (Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING):
        return Routes()
    stage = stages[state.stage_index] if 0 <= state.stage_index < len(stages) else None
    mirror = stage.mirror if stage is not None and state.phase is not Phase.PROMOTING else 0
    return Routes(match=match_configured, mirror=mirror)
