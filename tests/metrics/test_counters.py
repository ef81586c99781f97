"""The accounting arithmetic on its own: spans tile, resets count, late samples are kept."""

from __future__ import annotations

from canary.metrics.base import Series
from canary.metrics.counters import Seen, advance, grid_growth

A = {"instance": "a", "code": "200"}


def s(*points: tuple[float, float], labels: dict[str, str] | None = None) -> Series:
    return Series(labels=labels or A, points=tuple(points))


def test_first_reading_counts_from_the_baseline_sample() -> None:
    seen: Seen = {}
    g = advance(seen, [s((1, 100), (2, 110), (3, 130))], baseline=1.5)
    assert g.total == 30 and g.fresh


def test_consecutive_readings_tile_exactly_with_a_late_sample() -> None:
    seen: Seen = {}
    advance(seen, [s((1, 100))], baseline=1)
    # the sample of t=2 was still being ingested when the reading pinned at 2.5 ran
    first = advance(seen, [s((1, 100))], baseline=None)
    second = advance(seen, [s((1, 100), (2, 120), (3, 150))], baseline=None)
    assert first.total == 0 and not first.fresh
    assert second.total == 50  # nothing lost, nothing counted twice


def test_a_reset_counts_what_the_new_instance_counted() -> None:
    seen: Seen = {}
    advance(seen, [s((1, 100))], baseline=1)
    g = advance(seen, [s((2, 140), (3, 5), (4, 25))], baseline=None)
    assert g.total == 40 + 5 + 20


def test_a_new_series_counts_from_zero_and_labels_group() -> None:
    seen: Seen = {}
    advance(seen, [s((1, 10))], baseline=1)
    g = advance(seen, [s((2, 12)), s((2, 3), labels={"instance": "b", "code": "200"})],
                baseline=None)
    assert g.total == 2 + 3
    assert g.by_label("instance") == {"a": 2, "b": 3}


def test_grid_growth_sums_to_the_whole_growth() -> None:
    points = [(float(t), float(v)) for t, v in
              [(0, 0), (1, 10), (2, 30), (3, 4), (4, 20), (5, 50), (6, 51)]]
    steps = grid_growth([s(*points)], [0.5, 2.5, 4.5, 6.5])
    assert [g.total for g in steps] == [30, 4 + 16, 30 + 1]
