"""What both file kinds share at the YAML edge: the strict base model, durations, bounded
names and counts, and turning a pydantic error into an InputError with file, line and
field.

The yamlsource module already refused control characters, odd tags and oversized
documents; the bounds here make sure every number a file can carry is one the controller
can compute with (no NaN or infinity, no count that only a typo would write).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from canary.config.yamlsource import Document
from canary.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]

# Names (services, hooks, metrics) follow Kubernetes' DNS subdomain length; versions fit
# an OCI image tag. Control characters were refused when the YAML was read.
MAX_NAME = 253
MAX_VERSION = 128
# Failure, inconclusive and error limits count checks: a million checks at one a second
# is eleven days, more than any rollout; a larger number can only be a typo.
MAX_COUNT = 1_000_000

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Version = Annotated[str, Field(min_length=1, max_length=MAX_VERSION)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class _Model(BaseModel):
    # allow_inf_nan: a threshold or duration of .nan or .inf passes every comparison
    # wrongly or crashes date arithmetic; refused here for every float of both files.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True,
                              allow_inf_nan=False)


class _Metadata(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$", max_length=63)


def _validate(model: type[BaseModel], doc: Document, data: Any, prefix: tuple[str | int, ...] = ()
              ) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # An unknown field first: a typo also makes the intended field look missing.
        err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        loc = tuple(p for p in (*prefix, *err["loc"]) if not _is_union_tag(p))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "literal_error":
            msg = f"expected {err.get('ctx', {}).get('expected', 'another value')}"
        raise doc.error(msg.removeprefix("Value error, "), loc) from None


def _is_union_tag(p: str | int) -> bool:
    return isinstance(p, str) and (p in ("int", "StageModel") or p.startswith("function-"))
