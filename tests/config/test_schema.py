"""The JSON Schemas editors use: the shipped policies and example rollouts validate, and
what canary refuses for its shape, the schema refuses too.

The ``jsonschema`` package is not installed here, so a small validator for the keywords
the generated schemas use is part of this test; it refuses any keyword it does not know,
so a schema cannot pass by using something it skips.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.config.schema import json_schema
from canary.config.spec import PACKAGE_POLICIES

REPO = Path(__file__).resolve().parents[2]
ROLLOUTS = sorted((REPO / "examples").glob("**/rollout*.yaml")) + sorted(
    (REPO / "examples" / "rollouts").glob("*.yaml"))
POLICIES = sorted(PACKAGE_POLICIES.glob("*.yaml"))
# Annotations only ("format" too, in draft 2020-12 without the format-assertion vocabulary).
IGNORED = {"$schema", "title", "description", "default", "$defs", "format"}


class Invalid(Exception):
    pass


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "") -> None:
    for key, rule in schema.items():
        if key in IGNORED:
            continue
        check = CHECKS.get(key)
        if check is None:
            raise AssertionError(f"the test validator does not know {key!r} (at {at})")
        check(value, rule, schema, root, at)


def _type(value: Any, rule: str | list[str], schema: dict[str, Any], root: dict[str, Any],
          at: str) -> None:
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool,
             "null": type(None)}
    for kind in rule if isinstance(rule, list) else [rule]:
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if kind in kinds and isinstance(value, kinds[kind]):
            return
    raise Invalid(f"{at}: {value!r} is not {rule}")


def _properties(value: Any, rule: dict[str, Any], schema: dict[str, Any],
                root: dict[str, Any], at: str) -> None:
    if isinstance(value, dict):
        for name, sub in rule.items():
            if name in value:
                validate(value[name], sub, root, f"{at}.{name}")


def _additional(value: Any, rule: bool | dict[str, Any], schema: dict[str, Any],
                root: dict[str, Any], at: str) -> None:
    if not isinstance(value, dict):
        return
    for name, item in value.items():
        if name in schema.get("properties", {}) or any(
                re.search(p, name) for p in schema.get("patternProperties", {})):
            continue
        if rule is False:
            raise Invalid(f"{at}.{name}: unknown field")
        if isinstance(rule, dict):
            validate(item, rule, root, f"{at}.{name}")


def _pattern_properties(value: Any, rule: dict[str, Any], schema: dict[str, Any],
                        root: dict[str, Any], at: str) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            for pattern, sub in rule.items():
                if re.search(pattern, name):
                    validate(item, sub, root, f"{at}.{name}")


def _any_of(value: Any, rule: list[dict[str, Any]], schema: dict[str, Any],
            root: dict[str, Any], at: str, *, exactly_one: bool = False) -> None:
    passed = 0
    for sub in rule:
        try:
            validate(value, sub, root, at)
            passed += 1
        except Invalid:
            pass
    if passed == 0 or (exactly_one and passed > 1):
        raise Invalid(f"{at}: {value!r} matches {passed} of the alternatives")


def _ref(value: Any, rule: str, schema: dict[str, Any], root: dict[str, Any], at: str) -> None:
    validate(value, root["$defs"][rule.removeprefix("#/$defs/")], root, at)


def _scalar(test: Any) -> Any:
    def check(value: Any, rule: Any, schema: dict[str, Any], root: dict[str, Any],
              at: str) -> None:
        if not test(value, rule):
            raise Invalid(f"{at}: {value!r} fails {rule!r}")
    return check


def _number(op: Any) -> Any:
    return _scalar(lambda v, r: not isinstance(v, int | float) or isinstance(v, bool) or op(v, r))


def _text(op: Any) -> Any:
    return _scalar(lambda v, r: not isinstance(v, str) or op(v, r))


def _items(value: Any, rule: dict[str, Any], schema: dict[str, Any], root: dict[str, Any],
           at: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            validate(item, rule, root, f"{at}[{i}]")


CHECKS: dict[str, Any] = {
    "type": _type, "properties": _properties, "additionalProperties": _additional,
    "patternProperties": _pattern_properties, "anyOf": _any_of,
    "oneOf": lambda *a: _any_of(*a, exactly_one=True), "$ref": _ref, "items": _items,
    "required": _scalar(lambda v, r: not isinstance(v, dict) or all(k in v for k in r)),
    "enum": _scalar(lambda v, r: v in r), "const": _scalar(lambda v, r: v == r),
    "pattern": _text(lambda v, r: re.search(r, v) is not None),
    "minLength": _text(lambda v, r: len(v) >= r), "maxLength": _text(lambda v, r: len(v) <= r),
    "minimum": _number(lambda v, r: v >= r), "maximum": _number(lambda v, r: v <= r),
    "exclusiveMinimum": _number(lambda v, r: v > r),
    "exclusiveMaximum": _number(lambda v, r: v < r),
    "minItems": _scalar(lambda v, r: not isinstance(v, list) or len(v) >= r),
    "minProperties": _scalar(lambda v, r: not isinstance(v, dict) or len(v) >= r),
    "propertyNames": _scalar(lambda v, r: not isinstance(v, dict) or all(
        k in r.get("enum", [k]) for k in v)),
}


def check(document: Any, kind: str) -> None:
    schema = json_schema(kind)  # type: ignore[arg-type]
    validate(document, schema, schema, "$")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_there_is_something_to_validate() -> None:
    assert len(POLICIES) >= 4 and len(ROLLOUTS) >= 5


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_shipped_policies_validate(path: Path) -> None:
    check(load(path), "AnalysisPolicy")


@pytest.mark.parametrize("path", ROLLOUTS, ids=lambda p: str(p.relative_to(REPO)))
def test_example_rollouts_validate(path: Path) -> None:
    check(load(path), "Rollout")


def test_the_schemas_are_json_with_a_title() -> None:
    for kind in ("Rollout", "AnalysisPolicy"):
        schema = json_schema(kind)
        assert json.loads(json.dumps(schema)) == schema
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert schema["title"] == f"canary/v1 {kind}"
        assert '"title": "_' not in json.dumps(schema)  # pydantic's class names are gone


POLICY = load(PACKAGE_POLICIES / "default.yaml")
ROLLOUT = load(REPO / "examples" / "rollouts" / "haproxy.yaml")


def changed(document: Any, path: str, value: Any) -> Any:
    doc = json.loads(json.dumps(document))
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return doc


@pytest.mark.parametrize(("path", "value"), [
    ("spec.metrics.0.builtin", "error_rate"),
    ("spec.metrics.0.maxx", 1),
    ("spec.family", "envoy"),
    ("spec.window", "a minute"),
    ("spec.labels", {"servce": "app"}),
    ("spec.select", {"canary": {"server": "c"}}),
    ("spec.select", {"canary": {"server": "c"}, "stable": {"server": {"is": "s"}}}),
    ("spec.metrics.0.quantile", 99),
    ("kind", "Rollout"),
])
def test_a_policy_the_schema_refuses(path: str, value: Any) -> None:
    with pytest.raises(Invalid):
        check(changed(POLICY, path, value), "AnalysisPolicy")


@pytest.mark.parametrize(("path", "value"), [
    ("spec.window", "${WINDOW:-1m}"),
    ("spec.metrics.0.max", "${MAX_ERRORS}"),
    ("spec.select", {"canary": {"server": ["c1", "c2"]}, "stable": {"server": {"not": ""}}}),
    ("spec.window", 90),
])
def test_a_policy_the_schema_accepts(path: str, value: Any) -> None:
    check(changed(POLICY, path, value), "AnalysisPolicy")


@pytest.mark.parametrize(("path", "value"), [
    ("spec.router.type", "haproxyy"),
    ("spec.router.backnd", "x"),
    ("spec.router.backend", KeyError),
    ("spec.stages", [{"weight": 5, "pause": "soon"}]),
    ("spec.analysis.policyy", "default"),
])
def test_a_rollout_the_schema_refuses(path: str, value: Any) -> None:
    with pytest.raises(Invalid):
        check(changed(ROLLOUT, path, value), "Rollout")


def test_a_router_takes_one_name_or_a_list() -> None:
    check(changed(ROLLOUT, "spec.router.canary", ["canary-1", "canary-2"]), "Rollout")
    check(changed(ROLLOUT, "spec.router.canary", "canary-1"), "Rollout")
