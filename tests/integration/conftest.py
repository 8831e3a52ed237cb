"""Fixtures for the integration tests: deployments whose processes always get killed.

``harness`` (per test) and ``module_harness`` (per module) create deployments in a
temporary directory; teardown terminates every process they started, also when the test
failed. When a test fails, the captured stdout/stderr of every process is attached to
the report ("process logs" section).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._harness import Harness


@pytest.fixture
def harness(tmp_path) -> Iterator[Harness]:  # type: ignore[no-untyped-def]
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.stop_all()


@pytest.fixture(scope="module")
def module_harness(tmp_path_factory) -> Iterator[Harness]:  # type: ignore[no-untyped-def]
    h = Harness(tmp_path_factory.mktemp("deployments"))
    try:
        yield h
    finally:
        h.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    report = yield
    if report.failed and report.when in ("setup", "call"):
        seen = []
        for value in getattr(item, "funcargs", {}).values():
            for h in (value, getattr(value, "harness", None)):
                if isinstance(h, Harness) and h not in seen:
                    seen.append(h)
        for h in seen:
            report.sections.append(("process logs", h.logs()))
    return report
