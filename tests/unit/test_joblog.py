"""The job-log cleaner, on traces shaped like gitlab-runner's."""

from __future__ import annotations

from provisioner import joblog
from provisioner.joblog import Section

# As gitlab-runner 17 writes a docker-executor job: sections, colours, a pip progress bar
# redrawn with \r, a collapsed section with options, and the failure line.
TRACE = (
    "\x1b[0KRunning with gitlab-runner 17.5.0 (9e0c6d58)\x1b[0;m\n"
    "section_start:1795273700:prepare_executor\r\x1b[0K\x1b[0K\x1b[36;1m"
    'Preparing the "docker" executor\x1b[0;m\x1b[0;m\n'
    "\x1b[0KUsing docker image sha256:4f1e for python:3.11 ...\x1b[0;m\n"
    "section_end:1795273702:prepare_executor\r\x1b[0K"
    "section_start:1795273702:get_sources\r\x1b[0K\x1b[0K\x1b[36;1m"
    "Getting source from Git repository\x1b[0;m\x1b[0;m\n"
    "\x1b[32;1mFetching changes with git depth set to 20...\x1b[0;m\r\n"
    "section_end:1795273705:get_sources\r\x1b[0K"
    "section_start:1795273705:step_script[collapsed=true]\r\x1b[0K\x1b[0K\x1b[36;1m"
    'Executing "step_script" stage of the job script\x1b[0;m\x1b[0;m\n'
    "\x1b[32;1m$ pip install -r requirements.txt\x1b[0;m\n"
    "Downloading pkg (1.2 MB)\r   |##        | 20%\r   |##########| 100%\n"
    "\x1b[32;1m$ pytest -q\x1b[0;m\n"
    "E   AssertionError: permission denied\n"
    "section_end:1795273731:step_script\r\x1b[0K"
    "\x1b[31;1mERROR: Job failed: exit code 1\n"
    "\x1b[0;m\n"
)


def test_clean_lines_are_what_the_job_page_shows() -> None:
    assert joblog.clean_lines(TRACE) == (
        "Running with gitlab-runner 17.5.0 (9e0c6d58)",
        'Preparing the "docker" executor',
        "Using docker image sha256:4f1e for python:3.11 ...",
        "Getting source from Git repository",
        "Fetching changes with git depth set to 20...",
        'Executing "step_script" stage of the job script',
        "$ pip install -r requirements.txt",
        "   |##########| 100%",
        "$ pytest -q",
        "E   AssertionError: permission denied",
        "ERROR: Job failed: exit code 1",
    )


def test_clean_line_keeps_the_last_redraw_and_drops_markers() -> None:
    assert joblog.clean_line("10%\r50%\r100%") == "100%"
    assert joblog.clean_line("section_end:1795273731:step_script\r\x1b[0K") == ""
    assert joblog.clean_line("section_start:1:build_wheel text after  ") == "text after"
    assert joblog.clean_line("\x1b[?25l\x1b[1;33mwarning\x1b[0m") == "warning"


def test_tail_takes_the_last_non_empty_lines() -> None:
    assert joblog.tail(TRACE, 2) == (
        "E   AssertionError: permission denied\nERROR: Job failed: exit code 1"
    )
    assert joblog.tail(TRACE, 0) == ""
    assert joblog.tail("", 5) == ""
    assert joblog.tail(TRACE).splitlines() == list(joblog.clean_lines(TRACE))


def test_sections_hold_their_own_lines_and_durations() -> None:
    found = joblog.sections(TRACE)
    assert [(s.name, s.seconds) for s in found] == [
        ("prepare_executor", 2),
        ("get_sources", 3),
        ("step_script", 26),
    ]
    script = found[-1]
    assert script.lines == (
        'Executing "step_script" stage of the job script',
        "$ pip install -r requirements.txt",
        "   |##########| 100%",
        "$ pytest -q",
        "E   AssertionError: permission denied",
    )
    # The runner's own lines outside any section belong to none.
    assert all("Job failed" not in line for s in found for line in s.lines)


def test_nested_and_unclosed_sections() -> None:
    trace = (
        "section_start:10:build\r\x1b[0Kbuild\n"
        "section_start:11:wheel\r\x1b[0Kwheel\n"
        "making wheel\n"
        "section_end:15:wheel\r\x1b[0K\n"
        "after wheel\n"
        "section_start:20:upload\r\x1b[0Kupload\n"
        "killed\n"
    )
    assert joblog.sections(trace) == (
        Section("build", 10, None, ("build", "after wheel")),
        Section("wheel", 11, 15, ("wheel", "making wheel")),
        Section("upload", 20, None, ("upload", "killed")),
    )
    assert joblog.sections(trace)[2].seconds is None


def test_tail_drops_colours_and_section_markers() -> None:
    trace = (
        "section_start:1795273731:step_script\r\x1b[0K\x1b[32;1m$ verify\x1b[0;m\n"
        "progress 10%\rprogress 100%\n"
        "\x1b[31;1mERROR: Job failed: exit code 1\x1b[0;m\n"
        "section_end:1795273765:step_script\r\x1b[0K\n"
    )
    assert joblog.tail(trace, lines=2) == "progress 100%\nERROR: Job failed: exit code 1"
