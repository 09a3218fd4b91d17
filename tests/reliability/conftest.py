"""The fault-injection suite: each test prints one line of figures, shown in ``make test`` output."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

FIGURES: list[str] = []


def knob(name: str, default: int) -> int:
    """A size of the run, bigger through the environment (e.g. ``RELIABILITY_SESSIONS=1000 make test``)."""
    return int(os.environ.get(name, default))


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``report("crashes: 25, ...")``: the line goes to the terminal at once and again in the summary."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str) -> None:
        text = f"[{request.node.name}] {line}"
        FIGURES.append(text)
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(text)
        else:
            print(text)

    return write


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
