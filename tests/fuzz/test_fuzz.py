"""Fuzz: a seeded corpus of mutated shipped files through `canary validate` and the deploy
path. 0 tracebacks, 0 hangs, validate exits 0 or 2, and every file it accepts can be
turned into a plan and concrete times without anything but InputError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fuzz.harness import run_case
from tests.fuzz.mutations import cases

N = int(os.environ.get("CANARY_FUZZ_CASES", "300"))
SEED = int(os.environ.get("CANARY_FUZZ_SEED", "13"))


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_API_TOKEN", "t")  # examples/rollouts/http.yaml reads it


def test_corpus_covers_every_mutation_and_both_kinds() -> None:
    corpus = cases(N, seed=SEED)
    kinds = {c.kind for c in corpus}
    names = {m for c in corpus for m in c.mutations}
    assert kinds == {"rollout", "policy"}
    assert {"flip", "swap-value", "alias", "deep", "not-utf8", "control-char"} <= names


def test_fuzzed_files_never_crash_validate_or_deploy(tmp_path: Path) -> None:
    bad = []
    codes: dict[int, int] = {}
    for i, case in enumerate(cases(N, seed=SEED)):
        out = run_case(case, tmp_path, i)
        codes[out.exit_code] = codes.get(out.exit_code, 0) + 1
        if out.traceback or out.hung or out.exit_code not in (0, 2) or out.deploy_error:
            bad.append(f"case {i} ({case.seed.name}, {'+'.join(case.mutations)}): exit "
                       f"{out.exit_code}, hung: {out.hung}, deploy: {out.deploy_error}\n"
                       f"{out.output[-600:]}")
    assert not bad, "\n\n".join(bad[:5])
    # The corpus must exercise both answers, or it tests nothing.
    assert codes.get(0, 0) > 0 and codes.get(2, 0) > 0, codes
