"""Rows to values and back, as both stores read and write them: a rollout's JSON, an event,
the schema version, and the rule that folds a repeated event into its predecessor. A row
that cannot be read is StoreError naming the store: one line, exit 4."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from canary.errors import InputError
from canary.model import Event
from canary.state import RolloutState
from canary.store.base import SCHEMA_VERSION, StoreError


def decode_state(text: str, *, where: str) -> RolloutState:
    """A stored rollout row, or StoreError naming it: a corrupt row is one line, exit 4."""
    try:
        return RolloutState.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{where}: a stored rollout cannot be read ({type(exc).__name__}: "
                         f"{exc}); the store is corrupt or was written by another program"
                         ) from exc


def decode_event(at: object, kind: str, message: str, data: str, key: str | None, *,
                 where: str) -> Event:
    try:
        when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        values = json.loads(data)
        if not isinstance(values, dict):
            raise TypeError(f"event data is {type(values).__name__}, not an object")
        return Event(at=when, kind=str(kind), message=str(message), data=values, key=key)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{where}: a stored event ({kind!r}) cannot be read ({exc}); the "
                         "store is corrupt or was written by another program") from exc


def schema_of(value: object, *, where: str) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise StoreError(f"{where}: schema version {value!r} is not a number: not a canary "
                         "store, or a corrupt one") from exc


def coalesced(last: Event | None, new: Event) -> dict[str, Any] | None:
    """The data of ``last`` counting ``new`` too when ``new`` only repeats it (same kind,
    message and data, no key); None when it must be a row of its own. A router down for a
    day is then one event with a count, first and last time, not 86,000 rows."""
    if last is None or new.key is not None or last.key is not None:
        return None
    if (last.kind, last.message) != (new.kind, new.message):
        return None
    base = {k: v for k, v in last.data.items() if k not in ("count", "last_at")}
    if base != dict(new.data) or "count" in new.data or "last_at" in new.data:
        return None
    return {**base, "count": int(last.data.get("count", 1)) + 1, "last_at": new.at.isoformat()}


def check_schema(value: object, *, store: str) -> None:
    """Refuse a store written by a newer canary (its data may mean something else)."""
    found = schema_of(value, where=f"state store {store}")
    if found > SCHEMA_VERSION:
        raise InputError(f"store {store} has schema {found}, newer than this canary "
                         f"understands ({SCHEMA_VERSION}): upgrade canary")
