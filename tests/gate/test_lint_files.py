"""Files, directories and globs in migration order; the report, its renderings, the CLI."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from canary.errors import InputError
from canary.gate.lint import expand_paths, lint_paths
from canary.gate.lint_cli import run_lint

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "migrations")
ORDERED = os.path.join(DATA, "ordered")
FIRST, SECOND, TENTH = (os.path.join(ORDERED, n) for n in (
    "1_create_coupons.sql", "2_expand_orders.sql", "10_contract_orders.sql"))


def test_directory_files_run_in_natural_order_and_only_sql() -> None:
    assert expand_paths([ORDERED]) == [FIRST, SECOND, TENTH]


def test_arguments_keep_their_order_and_each_file_is_linted_once() -> None:
    assert expand_paths([TENTH, ORDERED, FIRST]) == [TENTH, FIRST, SECOND]
    assert expand_paths([FIRST, os.path.join(ORDERED, ".", "1_create_coupons.sql")]) == [FIRST]


def test_glob_is_expanded_in_natural_order() -> None:
    assert expand_paths([os.path.join(ORDERED, "*_orders.sql")]) == [SECOND, TENTH]


@pytest.mark.parametrize(("paths", "problem"), [
    ([os.path.join(DATA, "missing.sql")], "no such file"),
    ([os.path.join(DATA, "nothing-*.sql")], "matches no files"),
    ([], "no migration files"),
])
def test_bad_paths_are_input_errors_naming_the_path(paths: list[str], problem: str) -> None:
    with pytest.raises(InputError, match=problem) as info:
        lint_paths(paths, dialect="postgres")
    assert paths == [] or info.value.file == paths[0]


def test_directory_without_sql_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"no \*\.sql files") as info:
        lint_paths([str(tmp_path)], dialect="postgres")
    assert info.value.file == str(tmp_path)


def test_undecodable_file_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.sql"
    bad.write_bytes(b"-- caf\xe9\nSELECT 1;")
    with pytest.raises(InputError, match="cannot read") as info:
        lint_paths([str(bad)], dialect="postgres")
    assert info.value.file == str(bad)


def test_report_over_several_files() -> None:
    report = lint_paths([ORDERED], dialect="postgres")
    assert report.files == (FIRST, SECOND, TENTH)
    assert [(f.file, f.line, f.rule) for f in report.findings] == [
        (SECOND, 2, "create-index-without-concurrently"),
        (TENTH, 2, "drop-column"),
        (TENTH, 4, "drop-table"),
    ]
    assert [f.rule for f in report.errors] == ["drop-table"]
    assert [f.rule for f in report.warnings] == ["create-index-without-concurrently"]
    assert [f.allowed for f in report.allowed] == ["unused since v1.4"]
    assert not report.ok


def test_warnings_and_allowed_findings_do_not_block() -> None:
    assert lint_paths([FIRST, SECOND], dialect="postgres").ok


def test_text_rendering() -> None:
    lines = lint_paths([TENTH], dialect="postgres").render_text()
    assert lines[0] == (
        f"{TENTH}:2: drop-column: allowed: column orders.legacy_note: the old version still "
        "reads or writes it and fails (reason: unused since v1.4)")
    assert lines[1].startswith(f"{TENTH}:4: drop-table: table legacy_orders: ")
    assert lines[1].endswith(")") and "(fix: " in lines[1]
    assert lines[2] == "1 error(s), 0 warning(s), 1 allowed, in 1 file(s)"
    warning = lint_paths([SECOND], dialect="postgres").render_text()[0]
    assert warning.startswith(f"{SECOND}:2: create-index-without-concurrently: warning: ")


def test_json_rendering_round_trips() -> None:
    doc = json.loads(json.dumps(lint_paths([ORDERED], dialect="postgres").to_json()))
    assert doc["ok"] is False and doc["dialect"] == "postgres"
    assert doc["errors"] == 1 and doc["warnings"] == 1
    assert doc["findings"][1] == {
        "file": TENTH, "line": 2, "rule": "drop-column", "severity": "error",
        "message": "column orders.legacy_note: the old version still reads or writes it and "
                   "fails", "fix": doc["findings"][1]["fix"], "allowed": "unused since v1.4"}


def test_file_that_cannot_be_tokenized_is_reported_not_raised() -> None:
    report = lint_paths([os.path.join(DATA, "broken")], dialect="postgres")
    assert [(f.line, f.rule) for f in report.errors] == [(1, "unparsable-statement")]


def _run(paths: list[str], dialect: str, output: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_lint(paths, dialect, output, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_exit_codes() -> None:
    assert _run([FIRST, SECOND], "postgres", "text")[0] == 0
    code, out, err = _run([ORDERED], "postgres", "text")
    assert code == 1 and "drop-table" in out and err == ""
    code, out, err = _run([ORDERED], "oracle", "text")
    assert code == 2 and out == "" and "oracle" in err
    code, out, err = _run([os.path.join(DATA, "missing.sql")], "postgres", "text")
    assert code == 2 and "missing.sql" in err
    assert _run([ORDERED], "postgres", "yaml")[0] == 2


def test_cli_json_output_is_one_document() -> None:
    code, out, _ = _run([ORDERED], "postgresql", "json")
    assert code == 1
    assert json.loads(out)["files"] == [FIRST, SECOND, TENTH]
