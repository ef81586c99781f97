"""The end-to-end lab (real Prometheus, demo apps, HAProxy) for the CI and wheel tests."""

from tests.e2e.conftest import lab, stack_for  # noqa: F401 - fixtures, re-exported
