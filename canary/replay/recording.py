"""Recorded traffic (docs/contract.md): load, validate, and hand it to the judges as intervals.

A recording is what ``canary backtest`` replays: per interval, the increments of both
versions' request, error and latency-bucket counters. Bad input is reported the way a
person fixes it: the file and the exact field (``series[3].canary.errors``), never a
traceback. Values that real counters produce are kept, not rejected: a negative
increment (a counter reset) or more errors than requests (scrapes that straddle an
interval) are data, and the judges skip such intervals themselves.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canary.analysis.sequential.core import IntervalCounts, VersionCounts
from canary.durations import format_duration, parse_duration
from canary.errors import InputError

TOP_FIELDS = ("name", "service", "interval", "series")
POINT_FIELDS = ("t", "stable", "canary")
VERSION_FIELDS = ("requests", "errors", "latency")


@dataclass(frozen=True)
class Point:
    """One interval: the counts observed during the interval that ends at ``t`` seconds."""

    t: float
    stable: VersionCounts | None  # None: no data for this version in this interval
    canary: VersionCounts | None


@dataclass(frozen=True)
class Recording:
    name: str
    service: str
    interval: float  # seconds
    series: tuple[Point, ...]
    source: str = ""

    def intervals(self) -> list[IntervalCounts]:
        """The series as the sequential judge takes it (one stage: shares as observed)."""
        return [IntervalCounts(stable=p.stable, canary=p.canary, seconds=self.interval)
                for p in self.series]


def load_recording(path: str) -> Recording:
    """Read and validate one recording; InputError naming the file and field if bad."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"cannot read the recording: {exc.strerror or exc}", file=path) from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", file=path,
                         line=exc.lineno) from exc
    except ValueError as exc:
        raise InputError(str(exc), file=path) from exc
    return parse_recording(data, source=path)


def parse_recording(data: Any, *, source: str = "") -> Recording:
    """Validate an already decoded recording (see ``load_recording``)."""
    where = source or None
    top = _object(data, "", where, required=("name", "series", "interval"), known=TOP_FIELDS)
    name = _text(top["name"], "name", where)
    service = _text(top.get("service", ""), "service", where, empty_ok=True)
    interval = top["interval"]
    try:
        if isinstance(interval, bool) or not isinstance(interval, str | int | float):
            raise ValueError("expected a duration like 15s or 1m")
        seconds = parse_duration(interval)
    except ValueError as exc:
        raise InputError(str(exc), file=where, field="interval") from exc
    if seconds <= 0:
        raise InputError("must be longer than 0s", file=where, field="interval")
    series = top["series"]
    if not isinstance(series, list):
        raise InputError(f"expected a list of intervals, got {_kind(series)}", file=where,
                         field="series")
    points, last = [], -math.inf
    for i, raw in enumerate(series):
        at = f"series[{i}]"
        entry = _object(raw, at, where, required=("t",), known=POINT_FIELDS)
        t = _number(entry["t"], f"{at}.t", where)
        if t <= last:
            raise InputError(f"must be later than the previous interval's t ({last:g})",
                             file=where, field=f"{at}.t")
        last = t
        points.append(Point(t=t, stable=_version(entry.get("stable"), f"{at}.stable", where),
                            canary=_version(entry.get("canary"), f"{at}.canary", where)))
    return Recording(name=name, service=service, interval=seconds, series=tuple(points),
                     source=source)


def to_json(recording: Recording) -> dict[str, Any]:
    """The A.5 document of ``recording`` (what ``load_recording`` reads back)."""
    def version(v: VersionCounts | None) -> dict[str, Any] | None:
        if v is None:
            return None
        out: dict[str, Any] = {"requests": v.requests, "errors": v.errors}
        if v.latency:
            out["latency"] = {("+Inf" if math.isinf(b) else repr(b)): c
                              for b, c in sorted(v.latency.items())}
        return out

    return {"name": recording.name, "service": recording.service,
            "interval": format_duration(recording.interval),
            "series": [{"t": p.t, "stable": version(p.stable), "canary": version(p.canary)}
                       for p in recording.series]}


def from_prometheus(*, name: str, service: str, interval: float, canary: str, stable: str,
                    requests: Sequence[Mapping[str, Any]], errors: Sequence[Mapping[str, Any]],
                    buckets: Sequence[Mapping[str, Any]] = (), version_label: str = "version",
                    ) -> Recording:
    """A recording from Prometheus range-query results (``data.result`` of a matrix).

    ``requests`` and ``errors`` hold one series per version (label ``version_label``),
    e.g. ``sum by (version) (increase(http_requests_total{...}[15s]))`` evaluated with
    ``step=15s``; ``buckets`` the same for the histogram, by version and ``le``. ``t``
    counts seconds from the start, so the first interval ends at ``interval``. A missing
    or NaN request count leaves that version without data for the interval; a version
    with requests but no error series had no errors (Prometheus has no series for a
    counter that never moved).
    """
    sides = {canary: "canary", stable: "stable"}
    table: dict[float, dict[str, dict[str, Any]]] = {}

    def put(series: Sequence[Mapping[str, Any]], what: str) -> None:
        for item in series:
            labels = item.get("metric", {})
            side = sides.get(labels.get(version_label, ""))
            if side is None:
                continue
            for ts, raw in item.get("values", []):
                value = float(raw)
                if math.isnan(value):
                    continue
                slot = table.setdefault(float(ts), {}).setdefault(side, {"latency": {}})
                if what == "latency":
                    slot["latency"][float(labels.get("le", "nan"))] = value
                else:
                    slot[what] = value

    put(requests, "requests")
    put(errors, "errors")
    put(buckets, "latency")
    if not table:
        return Recording(name=name, service=service, interval=interval, series=())
    first = min(table)
    points = []
    for ts in sorted(table):
        row = table[ts]
        got = {side: VersionCounts(v["requests"], v.get("errors", 0.0), v["latency"])
               for side, v in row.items() if "requests" in v}
        points.append(Point(t=ts - first + interval, stable=got.get("stable"),
                            canary=got.get("canary")))
    return Recording(name=name, service=service, interval=interval, series=tuple(points))


def recording_paths(paths: list[str]) -> list[str]:
    """FILE_OR_DIR arguments as files: a directory means every ``*.json`` in it, sorted."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.endswith(".json") and os.path.isfile(os.path.join(p, f)))
            if not found:
                raise InputError("no *.json recordings in this directory", file=p)
            out.extend(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError("no such file or directory", file=p)
    return out


def iter_recordings(paths: list[str]) -> Iterator[Recording]:
    """Load the recordings named by ``paths`` (files or directories), one at a time."""
    for path in recording_paths(paths):
        yield load_recording(path)


def _version(raw: Any, at: str, where: str | None) -> VersionCounts | None:
    if raw is None:
        return None
    d = _object(raw, at, where, required=("requests", "errors"), known=VERSION_FIELDS)
    latency: dict[float, float] = {}
    buckets = d.get("latency")
    if buckets is not None:
        if not isinstance(buckets, dict):
            raise InputError(f"expected an object of bucket bound -> cumulative count, got "
                             f"{_kind(buckets)}", file=where, field=f"{at}.latency")
        for key, value in buckets.items():
            bound = _bound(key)
            if math.isnan(bound):
                raise InputError('expected a bucket upper bound in seconds, like "0.25" or '
                                 '"+Inf"', file=where, field=f"{at}.latency.{key}")
            if bound in latency:
                raise InputError(f"the bound {bound:g} appears twice", file=where,
                                 field=f"{at}.latency.{key}")
            latency[bound] = _number(value, f"{at}.latency.{key}", where, negative_ok=True)
    return VersionCounts(requests=_number(d["requests"], f"{at}.requests", where,
                                          negative_ok=True),
                         errors=_number(d["errors"], f"{at}.errors", where, negative_ok=True),
                         latency=latency)


def _object(raw: Any, at: str, where: str | None, *, required: tuple[str, ...],
            known: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise InputError(f"expected an object, got {_kind(raw)}", file=where, field=at or None)
    for key in raw:
        if key not in known:
            raise InputError(f"unknown field (expected one of {', '.join(known)})",
                             file=where, field=f"{at}.{key}" if at else str(key))
    for key in required:
        if key not in raw:
            raise InputError("is missing", file=where, field=f"{at}.{key}" if at else key)
    return raw


def _number(raw: Any, at: str, where: str | None, *, negative_ok: bool = False) -> float:
    kind = type(raw)
    if kind is not int and kind is not float:
        raise InputError(f"expected a number, got {_kind(raw)}", file=where, field=at)
    value = float(raw)
    if value - value != 0:  # inf or nan
        raise InputError("expected a finite number", file=where, field=at)
    if value < 0 and not negative_ok:
        raise InputError("cannot be negative", file=where, field=at)
    return value


@functools.lru_cache(maxsize=1024)
def _bound(key: str) -> float:
    """A bucket bound from its JSON key ("0.25", "+Inf"); NaN when it is not one."""
    try:
        bound = float(key)
    except ValueError:
        return math.nan
    return bound if bound >= 0 else math.nan


def _text(raw: Any, at: str, where: str | None, *, empty_ok: bool = False) -> str:
    if not isinstance(raw, str) or (not raw.strip() and not empty_ok):
        raise InputError(f"expected a non-empty string, got {_kind(raw)}", file=where,
                         field=at)
    return raw


def _kind(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, str):
        return f"the string {raw!r}" if len(raw) < 40 else "a string"
    return {dict: "an object", list: "a list", int: "a number", float: "a number"}.get(
        type(raw), type(raw).__name__)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in a recording (JSON has no {name})")
