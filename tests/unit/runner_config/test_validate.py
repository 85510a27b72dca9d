"""Validation parity with gitlab-runner: its own lint fixtures, reference files, decoder quirks."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.runner_config import IssueSeverity, Location, validate_text
from provisioner.runner_config.schema import executors, shells
from tests.unit.runner_config.refs import (
    EXAMPLES,
    REGISTER_EMULATED,
    UPSTREAM_LINT,
    UPSTREAM_VERDICTS,
    ids,
)


@pytest.mark.parametrize("name", sorted(UPSTREAM_VERDICTS))
def test_same_verdict_as_gitlab_runner_lint(name: str) -> None:
    # `gitlab-runner lint` rejects unknown keys: that is our --strict mode.
    expected_valid, problem = UPSTREAM_VERDICTS[name]
    report = validate_text((UPSTREAM_LINT / name).read_text(encoding="utf-8"), strict=True)
    assert report.valid is expected_valid
    if problem is None:
        assert report.issues == ()
    else:
        assert [i.path or i.code for i in report.errors] == [problem]


def test_upstream_lint_fixture_set_is_complete() -> None:
    assert sorted(p.name for p in UPSTREAM_LINT.glob("*.toml")) == sorted(UPSTREAM_VERDICTS)


def test_unknown_keys_are_warnings_without_strict_like_gitlab_runner_run() -> None:
    text = (UPSTREAM_LINT / "misspelled_key.toml").read_text(encoding="utf-8")
    report = validate_text(text, source="m.toml")
    assert report.valid
    assert [i.render("m.toml") for i in report.warnings] == [
        "m.toml:9:3: warning: unknown key runners[0].buids_dir (did you mean 'builds_dir'?): "
        "gitlab-runner ignores it"
    ]


def test_wrong_section_names_the_unknown_top_level_key() -> None:
    text = (UPSTREAM_LINT / "wrong_section.toml").read_text(encoding="utf-8")
    (issue,) = validate_text(text, strict=True).errors
    assert issue.code == "unknown-key"
    assert issue.location == Location(11, 1)
    assert "unknown key runner (did you mean 'runners'?)" in issue.message


def test_syntax_error_is_reported_with_line_and_column() -> None:
    text = (UPSTREAM_LINT / "invalid_syntax.toml").read_text(encoding="utf-8")
    (issue,) = validate_text(text, source="s.toml").issues
    assert issue.render("s.toml") == (
        "s.toml:4:10: error: Expected ']]' at the end of an array declaration"
    )


def test_bad_shell_is_an_error_even_without_strict() -> None:
    text = (UPSTREAM_LINT / "bad_shell.toml").read_text(encoding="utf-8")
    report = validate_text(text, source="b.toml")
    assert [i.render("b.toml") for i in report.issues] == [
        "b.toml:9:3: error: runners[0].shell = 'fish' is not one of 'bash', 'sh', 'pwsh', "
        "'powershell'"
    ]


ACCEPTED = REGISTER_EMULATED + EXAMPLES


@pytest.mark.parametrize("path", ACCEPTED, ids=ids(ACCEPTED))
def test_reference_files_are_accepted_strictly_and_cleanly(path: Path) -> None:
    report = validate_text(path.read_text(encoding="utf-8"), strict=True)
    assert report.issues == ()


def _runner(body: str, top: str = "concurrent = 1\n") -> str:
    return top + '[[runners]]\n  name = "r"\n  url = "https://h/"\n  token = "t"\n' + body


def _one(text: str, *, strict: bool = False) -> tuple[IssueSeverity, str, str]:
    (issue,) = validate_text(text, strict=strict).issues
    return issue.severity, issue.code, issue.message


def test_wrong_types_are_errors() -> None:
    assert _one('concurrent = "4"\n') == (
        IssueSeverity.ERROR,
        "type",
        "concurrent must be an integer, not a string",
    )
    assert _one(_runner('  executor = "docker"\n  [runners.docker]\n    privileged = "yes"\n')) == (
        IssueSeverity.ERROR,
        "type",
        "runners[0].docker.privileged must be a boolean (true or false), not a string",
    )
    assert _one(_runner('  executor = "docker"\n  [runners.docker]\n    volumes = "/cache"\n'))[
        2
    ] == ("runners[0].docker.volumes must be an array of strings, not a string")
    assert _one(_runner('  executor = "shell"\n  limit = 1.5\n'))[2] == (
        "runners[0].limit must be an integer, not a float (1.5)"
    )


def test_integer_is_accepted_where_a_float_belongs() -> None:
    text = _runner('  executor = "docker+machine"\n  [runners.machine]\n    IdleScaleFactor = 1\n')
    assert validate_text(text).issues == ()


def test_single_runners_table_is_a_type_error() -> None:
    text = '[runners]\n  name = "r"\n  url = "u"\n  token = "t"\n'
    assert _one(text) == (
        IssueSeverity.ERROR,
        "type",
        "runners must be an array of tables ([[runners]]), not a single table [runners]",
    )


def test_date_in_a_string_field_is_an_error() -> None:
    assert _one(_runner('  executor = "shell"\n  builds_dir = 2024-01-01\n'))[2] == (
        "runners[0].builds_dir must be a string, not a date-time"
    )


def test_durations_are_go_duration_strings() -> None:
    ok = _runner('  executor = "shell"\n  unhealthy_interval = "1h30m"\n')
    assert validate_text(ok).issues == ()
    assert _one('connection_max_age = "15 minutes"\n') == (
        IssueSeverity.ERROR,
        "duration",
        "connection_max_age = '15 minutes' is not a Go duration "
        '(examples: "90s", "15m", "1h30m")',
    )


def test_bare_integer_duration_is_flagged_as_nanoseconds() -> None:
    assert _one("connection_max_age = 900\n") == (
        IssueSeverity.WARNING,
        "duration-integer",
        "connection_max_age = 900 is read as 900 nanoseconds; write a duration string "
        'such as "900s" instead',
    )
    assert validate_text("connection_max_age = 0\n").issues == ()


def test_case_insensitive_keys_match_with_a_warning() -> None:
    text = _runner('  Executor = "docker"\n  [runners.docker]\n    Privileged = false\n')
    report = validate_text(text, strict=True)
    assert report.valid
    assert [i.message for i in report.warnings] == [
        "key runners[0].Executor matches 'executor' only when case is ignored; gitlab-runner "
        "accepts it, but write it as 'executor'",
        "key runners[0].docker.Privileged matches 'privileged' only when case is ignored; "
        "gitlab-runner accepts it, but write it as 'privileged'",
    ]


def test_camel_case_key_that_is_not_a_case_variant_is_unknown() -> None:
    # The kubernetes docs' `allowPrivilegeEscalation` does not match allow_privilege_escalation.
    text = _runner(
        '  executor = "kubernetes"\n  [runners.kubernetes]\n'
        "    [runners.kubernetes.build_container_security_context]\n"
        "      allowPrivilegeEscalation = false\n"
    )
    severity, code, _ = _one(text)
    assert (severity, code) == (IssueSeverity.WARNING, "unknown-key")


@pytest.mark.parametrize("executor", executors())
def test_every_registered_executor_is_accepted(executor: str) -> None:
    assert validate_text(_runner(f'  executor = "{executor}"\n')).issues == ()


def test_executor_list_matches_gitlab_runner() -> None:
    assert set(executors()) == {
        "shell", "docker", "docker-windows", "docker+machine", "docker-autoscaler", "instance",
        "kubernetes", "custom", "ssh", "parallels", "virtualbox",
    }  # fmt: skip
    assert set(shells()) == {"", "bash", "sh", "pwsh", "powershell"}


def test_unknown_executor_and_removed_cmd_shell_are_errors() -> None:
    assert _one(_runner('  executor = "docker+autoscaler"\n'))[1] == "enum"
    assert _one(_runner('  executor = "shell"\n  shell = "cmd"\n'))[1] == "enum"


def test_url_and_token_are_required() -> None:
    report = validate_text('[[runners]]\n  name = "r"\n  executor = "shell"\n', source="c")
    assert [i.render("c") for i in report.errors] == [
        "c:1:1: error: runners[0]: url is required",
        "c:1:1: error: runners[0]: token is required",
    ]
    assert _one(_runner('  executor = "shell"\n').replace('token = "t"', 'token = ""'))[2] == (
        "runners[0].token must not be empty"
    )


def test_log_level_is_case_insensitive_and_log_format_is_not() -> None:
    assert validate_text('log_level = "DEBUG"\n').issues == ()
    assert _one('log_format = "JSON"\n')[1] == "enum"


def test_concurrent_must_be_at_least_one_and_warns_below_runner_count() -> None:
    assert _one("concurrent = 0\n")[2] == "concurrent = 0 is below the minimum 1"
    text = _runner('  executor = "shell"\n') + _runner('  executor = "shell"\n', top="")
    assert _one(text) == (
        IssueSeverity.WARNING,
        "concurrency",
        "concurrent = 1 is lower than the number of runners (2): some runners will wait for a "
        "free slot",
    )


def test_missing_executor_is_a_warning() -> None:
    assert _one(_runner("")) == (
        IssueSeverity.WARNING,
        "no-executor",
        "runners[0]: no executor; gitlab-runner marks this runner unhealthy",
    )


def test_docker_memory_and_pull_policy_values() -> None:
    base = '  executor = "docker"\n  [runners.docker]\n'
    assert validate_text(_runner(base + '    memory = "512m"\n')).issues == ()
    assert _one(_runner(base + '    memory = "lots"\n'))[1] == "pattern"
    assert validate_text(_runner(base + '    pull_policy = ["always", "if-not-present"]\n')).valid
    assert _one(_runner(base + '    pull_policy = "sometimes"\n'))[2] == (
        "runners[0].docker.pull_policy = 'sometimes' is not one of 'always', 'never', "
        "'if-not-present'"
    )


def test_feature_flags_must_be_booleans() -> None:
    base = '  executor = "shell"\n  [runners.feature_flags]\n'
    assert validate_text(_runner(base + "    FF_NETWORK_PER_BUILD = true\n")).issues == ()
    assert _one(_runner(base + '    FF_NETWORK_PER_BUILD = "true"\n'))[1] == "type"


def test_token_obtained_at_must_be_a_date_time() -> None:
    base = '  executor = "shell"\n'
    assert validate_text(_runner(base + "  token_obtained_at = 2026-05-12T08:41:09Z\n")).valid
    assert validate_text(_runner(base + '  token_obtained_at = "2026-05-12T08:41:09Z"\n')).valid
    assert _one(_runner(base + "  token_obtained_at = 2026-05-12\n"))[1] == "type"
