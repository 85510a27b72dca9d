"""The stand-in runner reports events as values; ``cli/sandbox.py`` writes gitlab-runner's lines."""

from __future__ import annotations

import pytest

from provisioner.cli.sandbox import runner_line
from provisioner.sandbox_runner import EventLevel, RunnerEvent


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            RunnerEvent(EventLevel.ERROR, "Verifying runner... is not valid", runner="abc123"),
            "ERROR: Verifying runner... is not valid  runner=abc123",
        ),
        (
            RunnerEvent(EventLevel.WARNING, "No runner can take jobs: nothing to do"),
            "WARNING: No runner can take jobs: nothing to do",
        ),
        (
            RunnerEvent(EventLevel.INFO, "Job succeeded  duration_s=1.000", runner="x"),
            "Job succeeded  duration_s=1.000  runner=x",
        ),
    ],
)
def test_runner_line_marks_the_level_and_names_the_runner(event: RunnerEvent, line: str) -> None:
    assert runner_line(event) == line
