"""Regression cases for every input that once crashed `canary validate` or, worse, passed it
and crashed `canary deploy` after traffic moved (issue 13). Each must now be exit 2 naming
file, line and field, with nothing stored."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canary.cli import app
from canary.config.yamlsource import MAX_DOCUMENT_BYTES, load_text
from canary.durations import MAX_DURATION, parse_duration
from canary.errors import InputError
from canary.rollout.wiring import load_specs
from tests.fuzz.mutations import BOMB

ROLLOUT = """\
apiVersion: canary/v1
kind: Rollout
metadata:
  name: checkout
spec:
  service: checkout
  version: "2.0.0"
  stableVersion: "1.0.0"
  router:
    type: "null"
  stages: [5, 25, 100]
  pause: 1m
  analysis:
    policy: policy.yaml
"""

POLICY = """\
apiVersion: canary/v1
kind: AnalysisPolicy
metadata:
  name: p
spec:
  interval: 10s
  window: 30s
  metrics:
    - name: error-rate
      builtin: error-rate
      max: 0.01
"""


def files(tmp: Path, rollout: str | bytes = ROLLOUT, policy: str = POLICY) -> Path:
    (tmp / "policy.yaml").write_text(policy)
    f = tmp / "rollout.yaml"
    f.write_bytes(rollout.encode() if isinstance(rollout, str) else rollout)
    return f


def validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def refused(path: Path, *words: str, named: str = "rollout.yaml") -> str:
    code, out = validate(path)
    assert code == 2, out
    assert f"{path.parent / named}:" in out  # file and line
    for w in words:
        assert w in out, out
    return out


def test_the_reference_files_are_valid(tmp_path: Path) -> None:
    assert validate(files(tmp_path))[0] == 0


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    f = files(tmp_path, ROLLOUT.encode().replace(b"service: checkout",
                                                  b"service: caf\xe9"))
    refused(f, "rollout.yaml:6:", "not UTF-8", "0xe9")


@pytest.mark.parametrize("text", ["x: &a [*a]\n", "x: &a {b: [1, *a]}\n"])
def test_a_recursive_alias(tmp_path: Path, text: str) -> None:
    refused(files(tmp_path, ROLLOUT + text), "rollout.yaml:15:", "recursive alias")


@pytest.mark.parametrize("nesting", [
    "extra: " + "[" * 500 + "]" * 500,
    "extra: " + "{a: " * 500 + "1" + "}" * 500,
    "extra:\n" + "".join("  " * k + "a:\n" for k in range(1, 300)) + "  " * 300 + "1",
    "extra: " + "[" * 100_000,
])
def test_nesting_past_the_limit(tmp_path: Path, nesting: str) -> None:
    refused(files(tmp_path, ROLLOUT + nesting), "nested more than 64 levels")


def test_an_impossible_date_is_text_not_a_crash(tmp_path: Path) -> None:
    out = refused(files(tmp_path, ROLLOUT.replace('"2.0.0"', "2001-13-45").replace(
        "  service: checkout\n", "  service: checkout\n  stableVersion: 2001-13-45\n")))
    assert "duplicate key 'stableVersion'" in out
    f = files(tmp_path, ROLLOUT.replace('version: "2.0.0"', "version: 2001-13-45"))
    assert validate(f)[0] == 0  # a date-like version is its text
    f = files(tmp_path, "apiVersion: canary/v1\nkind: Rollout\nmetadata: {name: x}\n"
                        "spec: 2001-13-45\n")
    refused(f, "rollout.yaml:4:", "spec")


@pytest.mark.parametrize(("value", "words"), [
    ("!custom x", ("tag !custom is not supported",)),
    ("!!int abc", ("cannot read 'abc' as int",)),
    ("!!bool maybe", ("cannot read 'maybe' as bool",)),
    ("!!binary aGk=", ("tag !!binary is not supported",)),
    ("!!python/object:os.system x", ("is not supported",)),
])
def test_tags_and_unbuildable_scalars(tmp_path: Path, value: str, words: tuple[str, ...]
                                      ) -> None:
    f = files(tmp_path, ROLLOUT.replace("service: checkout", f"service: {value}"))
    refused(f, "rollout.yaml:6:", "spec.service", *words)


@pytest.mark.parametrize(("line", "field"), [
    ("  pause: 1m\n  hooks:\n    preStage:\n      - {name: h, command: [x], timeout: }\n",
     "spec.hooks.preStage[0].timeout"),
    ("  pause: [1, 2]\n", "spec.pause"),
    ("  deadline: {a: 1}\n", "spec.deadline"),
])
def test_empty_or_non_scalar_durations(tmp_path: Path, line: str, field: str) -> None:
    refused(files(tmp_path, ROLLOUT.replace("  pause: 1m\n", line)), field, "duration")


def test_a_router_timeout_with_no_value(tmp_path: Path) -> None:
    text = ROLLOUT.replace('type: "null"', "type: command\n    setCommand: [x]\n"
                                               "    getCommand: [y]\n    timeout:")
    refused(files(tmp_path, text), "spec.router.timeout")


def test_a_policy_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    out = refused(files(tmp_path, ROLLOUT.replace("policy: policy.yaml", "policy: " + "p" * 300)),
                  "rollout.yaml:14:", "spec.analysis.policy", "not found")
    assert len(out) < 2000
    refused(files(tmp_path, ROLLOUT.replace("policy: policy.yaml", "policy: " + "p" * 1100)),
            "spec.analysis.policy", "at most 1024")


def test_an_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    assert len(BOMB) < 600
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="expands to more than 20000 values"):
            load_text(BOMB, file="bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # expanded, it would be 9^9 values (1.3 GB before the limit)
    refused(files(tmp_path, ROLLOUT + BOMB), "expands to more than")


def test_many_aliases_and_a_big_document(tmp_path: Path) -> None:
    many = "x: &x 1\ny: [" + ", ".join(["*x"] * 201) + "]\n"
    refused(files(tmp_path, ROLLOUT + many), "more than 200 aliases")
    big = ROLLOUT + "# " + "x" * MAX_DOCUMENT_BYTES + "\n"
    refused(files(tmp_path, big), "larger than 256 KiB")


# -- accepted by validate, then crashing deploy after 5% of the traffic had moved ------------

DEPLOY_CRASHES = [
    ("  pause: 1m\n", "  pause: .nan\n", "spec.pause"),
    ("  pause: 1m\n", "  pause: .inf\n", "spec.pause"),
    ("  pause: 1m\n", "  pause: 3000000y\n", "spec.pause"),
    ("  pause: 1m\n", "  pause: 1000000000000000\n", "spec.pause"),
    ("  stages: [5, 25, 100]\n", "  stages: [{weight: 5, pause: -.inf}]\n", "spec.stages[0]"),
    ('version: "2.0.0"', 'version: "2.0.0\\0"\n  hooks:\n    preStage:\n'
     '      - {name: h, command: [echo, "{version}"]}', "spec.version"),
    ("  pause: 1m\n", "  pause: 1m\n  hooks:\n    preStage:\n"
     "      - {name: h, command: [echo], retries: 20, backoff: 30d}\n", "backoff"),
]


@pytest.mark.parametrize(("old", "new", "field"), DEPLOY_CRASHES)
def test_deploy_crashes_are_refused_before_anything_moves(tmp_path: Path, old: str,
                                                          new: str, field: str) -> None:
    assert old in ROLLOUT
    f = files(tmp_path, ROLLOUT.replace(old, new))
    refused(f, field)
    with pytest.raises(InputError) as exc:
        load_specs(f.read_text(), file=str(f), version=None)
    assert field in str(exc.value)
    store = f"sqlite:///{tmp_path}/state.db"
    result = CliRunner().invoke(app, ["deploy", "-f", str(f), "--no-preflight",
                                      "--store", store])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    status = CliRunner().invoke(app, ["status", "checkout", "--store", store])
    assert status.exit_code == 2 and "checkout" in status.output  # nothing was created


@pytest.mark.parametrize("interval", ["1" * 400, "1" * 400 + "s", ".nan", "31d"])
def test_policy_durations_must_be_finite_and_bounded(tmp_path: Path, interval: str) -> None:
    f = files(tmp_path, policy=POLICY.replace("interval: 10s", f"interval: {interval}"))
    refused(f, "policy.yaml:6:", "spec.interval", named="policy.yaml")


@pytest.mark.parametrize(("old", "new"), [
    ("max: 0.01", "max: .nan"), ("max: 0.01", "max: .inf"),
    ("max: 0.01", "max: 0.01\n      failureLimit: 10000000"),
    ("max: 0.01", "max: 0.01\n      inconclusiveLimit: " + "9" * 30),
])
def test_policy_numbers_are_bounded(tmp_path: Path, old: str, new: str) -> None:
    refused(files(tmp_path, policy=POLICY.replace(old, new)), "spec.metrics[0]",
            named="policy.yaml")


def test_names_and_versions_have_sane_lengths(tmp_path: Path) -> None:
    refused(files(tmp_path, ROLLOUT.replace('"2.0.0"', "v" * 129)), "spec.version")
    refused(files(tmp_path, ROLLOUT.replace("service: checkout", "service: " + "s" * 254)),
            "spec.service")
    refused(files(tmp_path, ROLLOUT.replace("service: checkout", 'service: "a\\x1bb"')),
            "spec.service", "U+001B")


def test_a_version_option_with_a_control_character(tmp_path: Path) -> None:
    f = files(tmp_path)
    with pytest.raises(InputError, match="U\\+0000") as exc:
        load_specs(f.read_text(), file=str(f), version="2.0.1\0")
    assert exc.value.field == "--version"


def test_an_interpolated_control_character(tmp_path: Path) -> None:
    f = files(tmp_path, ROLLOUT.replace('"2.0.0"', "${V}"))
    with pytest.raises(InputError, match="environment variable put a control character"):
        load_specs(f.read_text(), file=str(f), version=None, env={"V": "1\x07"})


def test_parse_duration_bounds() -> None:
    assert parse_duration("30d") == MAX_DURATION
    assert parse_duration(0) == 0.0
    for bad in ("30d1s", float("nan"), float("inf"), 10**400, "1" * 400 + "s", None, [1],
                {"a": 1}, True, -1, ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_api_parses_through_the_same_door(tmp_path: Path) -> None:
    """`canary serve`'s POST /rollouts hands the body to deploy.submit: same refusals."""
    from datetime import UTC, datetime

    from canary.rollout.wiring import submit
    from canary.store.registry import open_store

    (tmp_path / "policy.yaml").write_text(POLICY)
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    for text in (ROLLOUT + BOMB, ROLLOUT.replace("  pause: 1m\n", "  pause: .nan\n"),
                 ROLLOUT + "x: " + "[" * 1000):
        with pytest.raises(InputError):
            submit(text, file=str(tmp_path / "rollout.yaml"), version=None, store=store,
                   now=datetime.now(UTC))
    assert store.list_active() == []


def test_a_stored_document_is_read_through_the_same_door(tmp_path: Path) -> None:
    """On resume, `canary serve` rebuilds the runner from the document kept in the store."""
    import dataclasses
    from datetime import UTC, datetime

    from canary.rollout.wiring import runner_for_state, submit
    from canary.store.registry import open_store

    (tmp_path / "policy.yaml").write_text(POLICY)
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    _, _, state, _ = submit(ROLLOUT, file=str(tmp_path / "rollout.yaml"), version=None,
                            store=store, now=datetime.now(UTC))
    assert runner_for_state(state, store=store).plan.stages[0].weight == 5
    for document in (ROLLOUT.replace("  pause: 1m\n", "  pause: .nan\n"), ROLLOUT + BOMB):
        with pytest.raises(InputError):
            runner_for_state(dataclasses.replace(state, document=document), store=store)
