"""Recorded traffic (docs/contract.md): what loads, and how bad input is reported."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from canary.analysis.sequential.core import VersionCounts
from canary.errors import InputError
from canary.replay.recording import (
    from_prometheus,
    load_recording,
    parse_recording,
    recording_paths,
    to_json,
)

DATA = Path(__file__).parent.parent / "data" / "backtest"

GOOD: dict[str, Any] = {
    "name": "checkout-2026-11-20", "service": "checkout", "interval": "15s",
    "series": [
        {"t": 15,
         "stable": {"requests": 950, "errors": 9,
                    "latency": {"0.05": 800, "0.1": 930, "0.25": 948, "+Inf": 950}},
         "canary": {"requests": 50, "errors": 1,
                    "latency": {"0.05": 41, "0.1": 48, "0.25": 50, "+Inf": 50}}},
        {"t": 30, "stable": {"requests": 940, "errors": 8}, "canary": None},
        {"t": 45, "stable": {"requests": -900, "errors": -9},
         "canary": {"requests": 50, "errors": 0}},
        {"t": 60, "stable": {"requests": 960, "errors": 10},
         "canary": {"requests": 52, "errors": 2.5}},
    ]}


def write(tmp_path: Path, data: Any, name: str = "rec.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_the_design_example_loads(tmp_path: Path) -> None:
    rec = load_recording(write(tmp_path, GOOD))
    assert (rec.name, rec.service, rec.interval) == ("checkout-2026-11-20", "checkout", 15.0)
    assert [p.t for p in rec.series] == [15, 30, 45, 60]
    first = rec.series[0].canary
    assert first is not None and first.latency == {0.05: 41, 0.1: 48, 0.25: 50, math.inf: 50}
    assert rec.series[1].canary is None
    stable = rec.series[2].stable
    assert stable is not None and stable.requests == -900  # a counter reset is data
    intervals = rec.intervals()
    assert [iv.seconds for iv in intervals] == [15.0] * 4
    assert intervals[0].canary is first


def mutate(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the field at ``path`` (dotted, [i] for list items) set, or deleted."""
    data = copy.deepcopy(GOOD)
    keys: list[Any] = [int(k) if k.isdigit() else k
                       for k in path.replace("[", ".").replace("]", "").split(".")]
    target: Any = data
    for k in keys[:-1]:
        target = target[k]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


DELETE = object()


@pytest.mark.parametrize(("path", "value", "field", "words"), [
    ("series[3].canary.errors", "2", "series[3].canary.errors", "expected a number"),
    ("series[0].stable.requests", True, "series[0].stable.requests", "a boolean"),
    ("series[1].stable.errors", DELETE, "series[1].stable.errors", "missing"),
    ("series[2].canary.erors", 1, "series[2].canary.erors", "unknown field"),
    ("series[0].canary.latency.fast", 3, "series[0].canary.latency.fast", "bucket"),
    ("series[0].canary.latency", [1, 2], "series[0].canary.latency", "object"),
    ("series[2].t", 10, "series[2].t", "later than"),
    ("series[1]", [], "series[1]", "expected an object"),
    ("series", {}, "series", "list"),
    ("interval", "fast", "interval", "duration"),
    ("interval", "0s", "interval", "longer"),
    ("name", "", "name", "non-empty"),
    ("name", DELETE, "name", "missing"),
    ("seires", [], "seires", "unknown field"),
])
def test_bad_input_names_file_and_field(tmp_path: Path, path: str, value: Any, field: str,
                                        words: str) -> None:
    file = write(tmp_path, mutate(path, value))
    with pytest.raises(InputError) as err:
        load_recording(file)
    assert err.value.file == file
    assert err.value.field == field
    assert words in err.value.message
    assert str(err.value).startswith(f"{file}: {field}: ")


def test_syntax_errors_and_non_finite_numbers(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",\n "series": [\n  {"t": 15,}\n]}')
    with pytest.raises(InputError) as err:
        load_recording(str(broken))
    assert err.value.file == str(broken) and err.value.line == 3
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(GOOD).replace('"errors": 9', '"errors": NaN'))
    with pytest.raises(InputError, match="NaN"):
        load_recording(str(nan))
    with pytest.raises(InputError, match="cannot read") as err:
        load_recording(str(tmp_path / "absent.json"))
    assert err.value.file == str(tmp_path / "absent.json")


def test_parse_without_a_file_names_the_field() -> None:
    with pytest.raises(InputError) as err:
        parse_recording(mutate("series[0].canary.requests", None))
    assert err.value.field == "series[0].canary.requests" and err.value.file is None


def test_directories_mean_every_json_file_sorted(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "sub.json").mkdir()
    single = write(tmp_path, GOOD, "z.json")
    assert recording_paths([str(tmp_path), single]) == [
        str(tmp_path / "a.json"), str(tmp_path / "b.json"), single, single]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no \\*.json") as err:
        recording_paths([str(empty)])
    assert err.value.file == str(empty)
    with pytest.raises(InputError, match="no such file"):
        recording_paths([str(tmp_path / "missing")])


def test_the_sample_recordings_are_valid() -> None:
    files = recording_paths([str(DATA)])
    assert len(files) >= 4
    for f in files:
        rec = load_recording(f)
        assert rec.series and rec.interval == 15.0


def test_round_trip_through_the_json_form(tmp_path: Path) -> None:
    rec = load_recording(write(tmp_path, GOOD))
    again = load_recording(write(tmp_path, to_json(rec), "again.json"))
    assert again.series == rec.series and again.interval == rec.interval


def test_from_prometheus_range_results() -> None:
    def series(version: str, values: list[str], **labels: str) -> dict[str, Any]:
        return {"metric": {"version": version, **labels},
                "values": [[1_700_000_000 + 15 * i, v] for i, v in enumerate(values)]}

    rec = from_prometheus(
        name="live", service="checkout", interval=15.0, canary="2.0", stable="1.0",
        requests=[series("2.0", ["50", "NaN", "52"]), series("1.0", ["950", "940", "960"]),
                  series("0.9", ["1", "1", "1"])],
        errors=[series("2.0", ["1", "0", "2"])],  # stable: no 5xx series at all
        buckets=[series("2.0", ["41", "0", "40"], le="0.1"),
                 series("2.0", ["50", "0", "52"], le="+Inf")])
    assert [p.t for p in rec.series] == [15.0, 30.0, 45.0]
    first, second = rec.series[0], rec.series[1]
    assert first.canary == VersionCounts(50.0, 1.0, {0.1: 41.0, math.inf: 50.0})
    assert first.stable == VersionCounts(950.0, 0.0, {})
    assert second.canary is None  # NaN requests: no data for the canary then
    assert parse_recording(to_json(rec)).series == rec.series
