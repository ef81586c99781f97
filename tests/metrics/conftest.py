"""Session fixtures: the real labs (demo apps, load, HAProxy, Prometheus) the tests share."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from canary.metrics.prometheus import PrometheusProvider

from .lab import Lab, running_lab
from .scenarios import Scenarios, running_scenarios


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed")
    with running_lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture()
def provider(lab: Lab) -> Iterator[PrometheusProvider]:
    with PrometheusProvider(lab.prometheus_url, timeout=5.0) as p:
        yield p


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenarios]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed")
    with running_scenarios(tmp_path_factory.mktemp("scenarios")) as running:
        yield running
