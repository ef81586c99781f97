"""Which HTTPRoute rule and which backendRefs the gateway-api router drives: its router
block (Config) and how that block chooses a rule of the route: by index, by name, by a
match it contains, or as the one rule naming both Services."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from canary.errors import RouterError
from canary.routers.features import Match, Sticky
from canary.routers.gateway_rules import DEFAULT_MATCH
from canary.routers.kube import KubeConnection, ObjectRef
from canary.routers.kube_rules import user_indices

_ROUTE_MATCH_KEYS = frozenset({"path", "headers", "queryParams", "method"})


class Config(KubeConnection):
    """The ``router`` block of a rollout with ``type: gateway-api``."""

    http_route: str = Field(min_length=1)
    stable_service: str = Field(min_length=1)
    canary_service: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # only backendRefs on this port
    # Which rule: by index (not counting canary's match rule), by name (rules[].name) or
    # by a match it contains, e.g. {path: {type: PathPrefix, value: /api}}. None of them:
    # the one rule naming both services.
    rule: int | None = Field(default=None, ge=0)
    rule_name: str | None = None
    rule_match: dict[str, Any] | None = None
    version: Literal["v1", "v1beta1"] = "v1"
    match: Match | None = None
    match_rule_name: str = Field(default="canary-match", min_length=1, max_length=253,
                                 pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    sticky: Sticky | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_match(cls, data: Any) -> Any:
        # Before matches existed, `match` chose the rule by an HTTPRouteMatch; such a block
        # (path, headers, queryParams, method) still means ruleMatch.
        if isinstance(data, dict) and isinstance(data.get("match"), dict) and \
                data["match"] and set(data["match"]) <= _ROUTE_MATCH_KEYS \
                and "ruleMatch" not in data and "rule_match" not in data:
            data = {**data, "ruleMatch": data["match"]}
            del data["match"]
        return data

    @model_validator(mode="after")
    def _one_selector(self) -> Config:
        chosen = [n for n, v in (("rule", self.rule), ("ruleName", self.rule_name),
                                 ("ruleMatch", self.rule_match)) if v is not None]
        if len(chosen) > 1:
            raise ValueError(f"choose the rule one way, not with {' and '.join(chosen)}")
        if self.stable_service == self.canary_service:
            raise ValueError("stableService and canaryService must be different Services")
        if self.rule_name is not None and self.rule_name == self.match_rule_name:
            raise ValueError(f"ruleName {self.rule_name!r} is the name of canary's own match "
                             "rule; set matchRuleName to another name")
        return self


def rule_index(rules: list[Any], c: Config, *, ref: ObjectRef) -> int:
    """The index of the rule the router block chooses (see Config), among the user's rules."""
    mine = user_indices(rules, c.match_rule_name)  # canary's match rule is never chosen
    if c.rule is not None:
        if c.rule >= len(mine):
            raise RouterError(f"{ref} has {len(mine)} rules; rule {c.rule} does "
                              "not exist (rules are counted from 0, without canary's "
                              "match rule)")
        return mine[c.rule]
    if c.rule_name is not None:
        hits = [i for i in mine if rules[i].get("name") == c.rule_name]
        what = f"named {c.rule_name!r}"
    elif c.rule_match is not None:
        hits = [i for i in mine if any(_contains(m, c.rule_match)
                                       for m in rules[i].get("matches") or DEFAULT_MATCH)]
        what = f"with a match containing {c.rule_match}"
    else:
        hits = [i for i in mine
                if any(is_service(b, c.stable_service, c) for b in refs_of(rules[i]))
                and any(is_service(b, c.canary_service, c) for b in refs_of(rules[i]))]
        what = f"referencing both {c.stable_service} and {c.canary_service}"
    if len(hits) != 1:
        count = "no rule" if not hits else f"{len(hits)} rules"
        raise RouterError(f"{ref}: {count} {what}; choose one with rule (an index), "
                          "ruleName or ruleMatch in the router block")
    return hits[0]


def is_service(ref: dict[str, Any], service: str, config: Config) -> bool:
    """Whether a backendRef names ``service`` in the router's namespace (and port)."""
    return (
        ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") == ""
        and ref.get("namespace", config.namespace) == config.namespace
        and (config.port is None or ref.get("port") == config.port)
    )


def rules_of(obj: dict[str, Any], ref: ObjectRef) -> list[Any]:
    rules = (obj.get("spec") or {}).get("rules")
    if not isinstance(rules, list) or not rules:
        raise RouterError(f"{ref} has no rules")
    return rules


def refs_of(rule: dict[str, Any]) -> list[dict[str, Any]]:
    refs = rule.get("backendRefs")
    return [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []


def label(ref: dict[str, Any]) -> str:
    port = f":{ref['port']}" if "port" in ref else ""
    return f"{ref.get('kind', 'Service')} {ref.get('name')}{port}"


def _contains(actual: Any, wanted: Any) -> bool:
    """Whether ``wanted`` is a part of ``actual``: dict keys and list items may be extra."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(actual, list) and all(
            any(_contains(a, w) for a in actual) for w in wanted)
    return bool(actual == wanted)
