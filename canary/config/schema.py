"""JSON Schemas of the rollout and policy files, for editors that validate YAML as you type.

Built from the very pydantic models that ``canary validate`` uses (spec.py and each router
adapter's ``Config``), so the schema cannot drift from what canary accepts. Three things
the models alone would get wrong are fixed on the way out:

- durations are validated from text (``10m``), not only numbers;
- fields whose validator takes "one value or a list" accept a single value too;
- any value may be written as ``${VAR}`` / ``${VAR:-default}``: files are interpolated
  before they are validated, so a number or a pattern-checked string may be a variable.

The schema checks shape and types; cross-field rules (min below max, a reachable
consecutive limit, a family's needs) remain ``canary validate``'s job.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from canary.durations import parse_duration

Kind = Literal["Rollout", "AnalysisPolicy"]
DRAFT = "https://json-schema.org/draft/2020-12/schema"
DURATION = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w|y))+\s*$"
VARIABLE = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}


def json_schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a ``Rollout`` or ``AnalysisPolicy`` file."""
    from canary.config.rolloutfile import _Rollout
    from canary.config.spec import _Policy

    model: type[BaseModel] = _Rollout if kind == "Rollout" else _Policy
    schema = _generate(model, "#/$defs/{model}")
    if kind == "Rollout":
        router, defs = _routers()
        schema["$defs"]["_RolloutSpec"]["properties"]["router"] = router
        schema["$defs"].update(defs)
    schema = _allow_variables(_untitled(schema))
    what = "a canary rollout" if kind == "Rollout" else "a canary analysis policy"
    return {"$schema": DRAFT, "title": f"canary/v1 {kind}",
            "description": f"The file format of {what}.", **schema}


class _Generator(GenerateJsonSchema):
    def function_before_schema(self, schema: core_schema.BeforeValidatorFunctionSchema
                               ) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        function = schema["function"].get("function")
        # Our models parse numbers through a before-validator only to accept durations
        # (parse_duration itself, or a field validator calling it).
        if function is parse_duration or inner.get("type") in ("number", "integer"):
            return {"anyOf": [inner, {"type": "string", "pattern": DURATION}]}
        if inner.get("type") == "array" and "items" in inner:
            # Adapters take "one value or a list" and normalise it before validation.
            return {"anyOf": [inner, inner["items"]]}
        return inner


def _generate(model: type[BaseModel], ref_template: str) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, ref_template=ref_template,
                                   schema_generator=_Generator, mode="validation")


def _routers() -> tuple[dict[str, Any], dict[str, Any]]:
    """``spec.router``: one variant per router type, chosen by ``type``."""
    from canary.errors import InputError
    from canary.routers.registry import ROUTER_TYPES, router_config_model

    variants, defs = [], {}
    for name in sorted(ROUTER_TYPES):
        try:
            model = router_config_model(name)
        except InputError:  # its adapter's dependencies are not installed here
            variants.append({"properties": {"type": {"const": name}}, "required": ["type"]})
            continue
        schema = _generate(model, f"#/$defs/{name}.{{model}}")
        for key, value in schema.pop("$defs", {}).items():
            defs[f"{name}.{key}"] = value
        schema["properties"] = {"type": {"const": name}, **schema.get("properties", {})}
        schema["required"] = ["type", *schema.get("required", [])]
        variants.append(schema)
    return {"type": "object", "required": ["type"], "oneOf": variants}, defs


_MAPS = ("properties", "$defs", "patternProperties")  # name -> schema
_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")  # [schema]
_ONE = ("items", "additionalProperties", "not")  # schema


_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum",
           "le": "maximum"}  # pydantic leaves these raw on an annotated before-validator


def _untitled(node: Any) -> Any:
    """Without pydantic's generated titles ("Relativemax", "_Metric"): noise in editors;
    bounds pydantic could not place are renamed to their JSON Schema keywords."""
    return _walk(node, lambda schema: {_BOUNDS.get(k, k): v for k, v in schema.items()
                                       if k != "title"})


def _allow_variables(node: Any) -> Any:
    """Let every checked scalar be written as ``${VAR}`` (interpolated before validation)."""
    def wrap(schema: dict[str, Any]) -> dict[str, Any]:
        types = schema.get("type")
        types = types if isinstance(types, list) else [types]
        checked = (any(t in ("number", "integer", "boolean") for t in types)
                   or "pattern" in schema or "enum" in schema or "const" in schema)
        if not checked or "object" in types or "array" in types:
            return schema
        inner = {k: v for k, v in schema.items() if k != "default"}
        wrapped: dict[str, Any] = {"anyOf": [inner, copy.deepcopy(VARIABLE)]}
        if "default" in schema:
            wrapped["default"] = schema["default"]
        return wrapped

    return _walk(node, wrap)


def _walk(schema: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``change`` applied to every subschema, innermost first."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _walk(sub, change) for name, sub in out[key].items()}
    for key in _LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_walk(sub, change) for sub in out[key]]
    for key in _ONE:
        if isinstance(out.get(key), dict):
            out[key] = _walk(out[key], change)
    return change(out)
