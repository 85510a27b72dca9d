"""Round-tripping and the runner-entry API of ConfigDocument."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioner.errors import ConfigError
from provisioner.runner_config import (
    ConfigDocument,
    ConfigSyntaxError,
    RunnerNotFoundError,
    RunnerRef,
    build_model,
)
from provisioner.runner_config.document import Location, locate_keys
from tests.unit.runner_config.refs import (
    EXAMPLES,
    PARSEABLE,
    REGISTER_EMULATED,
    UPSTREAM_LINT,
    VALID_UPSTREAM,
    ids,
)

ROUND_TRIP = REGISTER_EMULATED + EXAMPLES + VALID_UPSTREAM


def test_reference_fixtures_are_all_there() -> None:
    assert len(REGISTER_EMULATED) == 9
    assert len(EXAMPLES) == 3
    assert len(VALID_UPSTREAM) == 1


@pytest.mark.parametrize("path", ROUND_TRIP, ids=ids(ROUND_TRIP))
def test_unchanged_load_and_save_is_byte_identical(path: Path) -> None:
    raw = path.read_bytes()
    document = ConfigDocument.parse(raw.decode("utf-8"))
    assert document.dumps().encode("utf-8") == raw


@pytest.mark.parametrize("path", PARSEABLE, ids=ids(PARSEABLE))
def test_every_parseable_fixture_round_trips(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert ConfigDocument.parse(text).dumps() == text


COMMENTED = """\
# managed by hand: keep this comment
concurrent = 4  # two per core
check_interval = 0
custom_global = "kept"

[session_server]
  session_timeout = 1800

# the first runner
[[runners]]
  name = "alpha"
  url = "https://gitlab.example.com/"
  id = 1
  token = "glrt-alpha-token-0001"
  executor = "shell"
  mystery = true  # unknown key, kept
  [runners.cache]
    MaxUploadedArchiveSize = 0

# the second runner
[[runners]]
  name = "beta"
  url = "https://gitlab.example.com/"
  id = 2
  token = "glrt-beta-token-00002"
  executor = "docker"
  [runners.docker]
    image = "alpine:3.20"  # pinned
    volumes = ["/cache"]
"""


def test_editing_one_runner_keeps_everything_else() -> None:
    document = ConfigDocument.parse(COMMENTED)
    document.update_runner(RunnerRef(name="beta"), {"docker": {"image": "debian:12"}, "limit": 2})
    after = document.dumps()
    expected = COMMENTED.replace('image = "alpine:3.20"  # pinned', 'image = "debian:12"  # pinned')
    expected = expected.replace('  executor = "docker"\n', '  executor = "docker"\n  limit = 2\n')
    assert after == expected


def test_new_sub_table_goes_before_the_comment_of_the_next_runner() -> None:
    document = ConfigDocument.parse(COMMENTED)
    document.update_runner(RunnerRef(id=1), {"docker": {"image": "alpine"}})
    after = document.dumps()
    assert (
        "  [runners.cache]\n    MaxUploadedArchiveSize = 0\n"
        '  [runners.docker]\n    image = "alpine"\n'
        "\n# the second runner\n[[runners]]\n"
    ) in after
    assert after.startswith(
        "# managed by hand: keep this comment\nconcurrent = 4  # two per core\n"
    )
    assert tomllib.loads(after)["runners"][0]["docker"] == {"image": "alpine"}


def test_add_runner_writes_gitlab_runner_layout(shell_text: str) -> None:
    document = ConfigDocument.parse(shell_text)
    index = document.add_runner(
        {
            "name": "new",
            "url": "https://gitlab.example.com/",
            "id": 77,
            "token": "glrt-new-runner-token",
            "token_obtained_at": datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC),
            "token_expires_at": datetime(1, 1, 1, tzinfo=UTC),
            "executor": "docker",
            "docker": {"image": "alpine:3.20", "privileged": False, "volumes": ["/cache"]},
        }
    )
    assert index == 1
    assert document.dumps() == shell_text + (
        "\n"
        "[[runners]]\n"
        '  name = "new"\n'
        '  url = "https://gitlab.example.com/"\n'
        "  id = 77\n"
        '  token = "glrt-new-runner-token"\n'
        "  token_obtained_at = 2026-06-01T12:00:00Z\n"
        "  token_expires_at = 0001-01-01T00:00:00Z\n"
        '  executor = "docker"\n'
        "  [runners.docker]\n"
        '    image = "alpine:3.20"\n'
        "    privileged = false\n"
        '    volumes = ["/cache"]\n'
    )


def test_add_runner_to_a_file_without_runners() -> None:
    document = ConfigDocument.empty()
    document.add_runner({"name": "a", "url": "https://h/", "token": "t", "executor": "shell"})
    data = tomllib.loads(document.dumps())
    assert data["runners"] == [
        {"name": "a", "url": "https://h/", "token": "t", "executor": "shell"}
    ]
    assert data["concurrent"] == 1


def test_add_runner_refuses_a_duplicate_token_or_id(shell_text: str) -> None:
    document = ConfigDocument.parse(shell_text)
    with pytest.raises(ConfigError, match="already configured"):
        document.add_runner({"name": "x", "token": "glrt-t3_Xq2vN8kLr4sT9wYb1cZd"})
    with pytest.raises(ConfigError, match="id 1207 is already configured"):
        document.add_runner({"name": "x", "id": 1207, "token": "other"})


def test_find_runner_by_id_token_and_name() -> None:
    document = ConfigDocument.parse(COMMENTED)
    assert document.find_runner(RunnerRef(id=2)) == 1
    assert document.find_runner(RunnerRef(token="glrt-alpha-token-0001")) == 0
    assert document.find_runner(RunnerRef(name="beta")) == 1
    assert document.find_runner(RunnerRef(name="gamma")) is None


def test_name_lookup_must_be_unambiguous() -> None:
    document = ConfigDocument.parse(COMMENTED.replace('name = "beta"', 'name = "alpha"'))
    with pytest.raises(ConfigError, match="2 runners match name 'alpha'"):
        document.find_runner(RunnerRef(name="alpha"))


def test_update_and_remove_unknown_runner_fail_with_a_hint() -> None:
    document = ConfigDocument.parse(COMMENTED)
    with pytest.raises(RunnerNotFoundError) as info:
        document.update_runner(RunnerRef(id=99), {"limit": 1})
    assert info.value.hint == "Run `runnerctl config show` to list the runners in this file."
    with pytest.raises(RunnerNotFoundError, match="no runner with the given token"):
        document.remove_runner(RunnerRef(token="nope"))
    assert document.dumps() == COMMENTED


def test_remove_runner_keeps_the_others() -> None:
    document = ConfigDocument.parse(COMMENTED)
    document.remove_runner(RunnerRef(name="alpha"))
    text = document.dumps()
    assert "alpha" not in text
    assert '# the second runner\n[[runners]]\n  name = "beta"' in text
    assert text.startswith("# managed by hand: keep this comment\n")
    assert [r.name for r in build_model(document.plain()).runners] == ["beta"]


def test_update_removes_a_key_given_none() -> None:
    document = ConfigDocument.parse(COMMENTED)
    document.update_runner(RunnerRef(id=1), {"mystery": None})
    assert "mystery" not in document.dumps()


def test_set_global_adds_before_the_first_table() -> None:
    document = ConfigDocument.parse(COMMENTED)
    document.set_global("log_level", "debug")
    document.set_global("concurrent", 8)
    text = document.dumps()
    assert text.startswith(
        "# managed by hand: keep this comment\nconcurrent = 8  # two per core\ncheck_interval = 0\n"
        'custom_global = "kept"\nlog_level = "debug"\n'
    )


def test_single_runners_table_is_refused_for_edits() -> None:
    document = ConfigDocument.parse('[runners]\n  name = "x"\n')
    with pytest.raises(ConfigError, match=r"must be an array of tables \(\[\[runners\]\]\)"):
        document.add_runner({"name": "y"})


def test_syntax_error_has_line_and_column() -> None:
    text = (UPSTREAM_LINT / "invalid_syntax.toml").read_text(encoding="utf-8")
    with pytest.raises(ConfigSyntaxError) as info:
        ConfigDocument.parse(text, source="c.toml")
    assert info.value.location == Location(4, 10)
    assert str(info.value) == (
        "c.toml:4:10: TOML syntax error: Expected ']]' at the end of an array declaration"
    )
    assert info.value.exit_code == 3


def test_locate_keys_tracks_arrays_of_tables() -> None:
    where = locate_keys(COMMENTED)
    assert where[("concurrent",)] == Location(2, 1)
    assert where[("runners", 0, "mystery")] == Location(16, 3)
    assert where[("runners", 1, "docker", "image")] == Location(28, 5)
    assert where[("runners", 1)] == Location(21, 1)


def test_update_merges_into_an_inline_table_and_replaces_arrays() -> None:
    document = ConfigDocument.parse(
        '[[runners]]\n  name = "a"\n  url = "u"\n  token = "t"\n'
        '  feature_flags = { FF_A = true }\n  environment = ["A=1"]\n'
    )
    document.update_runner(
        RunnerRef(name="a"), {"feature_flags": {"FF_B": False}, "environment": ["A=2", "B=3"]}
    )
    runner = tomllib.loads(document.dumps())["runners"][0]
    assert runner["feature_flags"] == {"FF_A": True, "FF_B": False}
    assert runner["environment"] == ["A=2", "B=3"]


def test_services_are_written_and_replaced_as_arrays_of_tables() -> None:
    document = ConfigDocument.empty()
    services = [{"name": "postgres:16", "alias": "db"}, {"name": "redis:7"}]
    document.add_runner(
        {"name": "b", "url": "u", "token": "t", "docker": {"image": "x", "services": services}}
    )
    text = document.dumps()
    assert (
        '  [runners.docker]\n    image = "x"\n    [[runners.docker.services]]\n'
        '      name = "postgres:16"\n      alias = "db"\n    [[runners.docker.services]]\n'
        '      name = "redis:7"\n'
    ) in text
    document.update_runner(RunnerRef(name="b"), {"docker": {"services": [{"name": "mysql:8"}]}})
    docker = tomllib.loads(document.dumps())["runners"][0]["docker"]
    assert docker == {"image": "x", "services": [{"name": "mysql:8"}]}


def test_removing_the_last_runner_leaves_a_file_that_takes_new_runners() -> None:
    doc = ConfigDocument.parse(
        'concurrent = 1\n\n[[runners]]\n  name = "a"\n  url = "https://g/"\n  id = 3\n'
        '  token = "glrt-aaaaaaaaaaaaaaaaaaaa"\n  executor = "shell"\n'
    )
    doc.remove_runner(RunnerRef(name="a"))
    assert doc.dumps() == "concurrent = 1\n\n"
    doc.add_runner(
        {
            "name": "b",
            "url": "https://g/",
            "id": 4,
            "token": "glrt-bbbbbbbbbbbbbbbbbbbb",
            "token_expires_at": datetime(1, 1, 1, tzinfo=UTC),
            "executor": "shell",
        }
    )
    reparsed = ConfigDocument.parse(doc.dumps())
    assert "token_expires_at = 0001-01-01T00:00:00Z" in reparsed.dumps()
    assert [r["name"] for r in reparsed.plain()["runners"]] == ["b"]
