"""Bad config.toml input is an exit-3 error with a hint, never a crash, a hang or a trace left.

Covers: nesting bombs, paths that are not regular files (symlink loop, FIFO, device,
directory), oversized files, integers gitlab-runner cannot load, `config show` of an invalid
file, and what a failed write leaves behind (lock file, backups, directory modes).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from provisioner.errors import ConfigError
from provisioner.registration import Executor, ExecutorConfig, Scope, parse_scope
from provisioner.registration.service import RegisterRequest, register
from provisioner.runner_config import ConfigDocument, ConfigStore, validate_text
from provisioner.runner_config.document import MAX_NESTING
from provisioner.runner_config.store import MAX_CONFIG_BYTES, read_config_text
from tests.conftest import Cli
from tests.unit.registration.fakes import BASE, FakeGitLab, make_api

NESTED = "x = " + "[" * 500 + "]" * 500 + "\n"

VALID = (
    'concurrent = 1\n\n[[runners]]\n  name = "a"\n  url = "https://gitlab.example.com/"\n'
    '  id = 7\n  token = "glrt-aaaaaaaaaaaaaaaaaaaa"\n  executor = "shell"\n'
)


def _request(**kw: object) -> RegisterRequest:
    return RegisterRequest(
        name="ci-1",
        scope=Scope(parse_scope("instance").runner_type),
        gitlab_url=BASE,
        executor=ExecutorConfig(Executor.SHELL),
        tags=("py",),
        **kw,  # type: ignore[arg-type]
    )


def _assert_untouched(directory: Path, before: set[str]) -> None:
    assert {p.name for p in directory.iterdir()} == before


# ---- 1. nesting bombs


@pytest.mark.parametrize("command", ["validate", "show", "lint"])
def test_nested_arrays_exit_3_with_a_hint(
    tmp_path: Path,
    cli: Cli,
    command: str,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(NESTED)
    assert len(NESTED) < 1100
    code, out, err = cli("config", command, "-c", str(path))
    assert code == 3
    message = f"{path}:1:{5 + MAX_NESTING}: "
    if command == "validate":
        assert out == (
            f"{message}error: values nested more than {MAX_NESTING} levels deep\n"
            f"invalid: {path}: 1 error, 0 warnings\n"
        )
    else:
        assert err == (
            f"Error: {message}TOML syntax error: values nested more than {MAX_NESTING} levels "
            "deep\nHint: gitlab-runner's config.toml nests at most a few levels; this file is not "
            "one (or was generated wrongly). Nothing was changed on disk.\n"
        )


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "{a = " * 200 + "1" + "}" * 200,
        "[" + ".".join(["a"] * 60) + "]\nx = 1\n",
        "a" + ".a" * 60 + " = 1\n",
        "[[runners]]\n" + "  x = " + "[" * 40 + "]" * 40 + "\n",
    ],
    ids=["inline-tables", "dotted-header", "dotted-key", "in-a-runner"],
)
def test_every_kind_of_deep_nesting_is_refused(text: str) -> None:
    report = validate_text(text)
    assert not report.valid
    assert report.errors[0].message == f"values nested more than {MAX_NESTING} levels deep"


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    text = (
        'x = "' + "[" * 100 + '"\n'
        "# " + "{" * 100 + "\n"
        "y = '''\n" + "[" * 100 + "\n'''\n"
        'z = """' + '\\"' + "[" * 100 + '"""\n'
    )
    assert validate_text(text).valid


def test_register_path_refuses_a_nesting_bomb_before_any_request(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(NESTED)
    fake = FakeGitLab()
    with pytest.raises(ConfigError) as info:
        register(_request(), gitlab=make_api(fake), store=ConfigStore(path))
    assert info.value.exit_code == 3
    assert "nested more than" in info.value.message
    assert info.value.hint
    assert fake.runners == {}
    assert path.read_text() == NESTED


# ---- 2. only regular files, up to a size


def _special_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    loop = tmp_path / "loop.toml"
    loop.symlink_to(tmp_path / "loop2.toml")
    (tmp_path / "loop2.toml").symlink_to(loop)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    return {
        "symlink-loop": (
            loop,
            f"Error: {loop}: too many levels of symbolic links (a symlink loop)",
        ),
        "fifo": (fifo, f"Error: {fifo} is a named pipe (FIFO), not a regular file"),
        "device": (Path("/dev/zero"), "Error: /dev/zero is a device, not a regular file"),
        "directory": (directory, f"Error: {directory} is a directory, not a config file"),
        "too-big": (big, f"Error: {big} is {MAX_CONFIG_BYTES + 3} bytes; runnerctl reads config"),
    }


KINDS = ["symlink-loop", "fifo", "device", "directory", "too-big"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["show", "validate", "lint"])
def test_config_commands_refuse_what_is_not_a_regular_file(
    tmp_path: Path,
    cli: Cli,
    kind: str,
    command: str,
) -> None:
    path, error = _special_paths(tmp_path)[kind]
    code, _, err = cli("config", command, "-c", str(path))
    assert code == 3
    assert err.startswith(error), err
    assert "\nHint: " in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_writers_refuse_before_taking_the_lock(tmp_path: Path, kind: str) -> None:
    path, error = _special_paths(tmp_path)[kind]
    before = {p.name for p in tmp_path.iterdir()}
    fake = FakeGitLab()
    with pytest.raises(ConfigError) as info:
        register(_request(), gitlab=make_api(fake), store=ConfigStore(path))
    assert f"Error: {info.value.message}".startswith(error)
    assert info.value.exit_code == 3
    assert info.value.hint
    assert fake.runners == {}  # nothing was created in GitLab
    _assert_untouched(tmp_path, before)  # no lock file, no temp file, no backup


@pytest.mark.timeout(60)
def test_a_fifo_is_never_read_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="named pipe"):
        read_config_text(fifo)
    with pytest.raises(ConfigError, match="named pipe"):
        ConfigStore(fifo).update(lambda _doc: None, create=True)
    assert not (tmp_path / "config.toml.lock").exists()


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    body = "concurrent = 1\n"
    path.write_text(body + "#" * (MAX_CONFIG_BYTES - len(body) - 1) + "\n")
    assert len(read_config_text(path)) == MAX_CONFIG_BYTES


def test_symlink_to_a_regular_file_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text(VALID)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    assert read_config_text(link) == VALID


@pytest.mark.parametrize("command", [["config", "show"], ["unregister", "a", "--keep-server"]])
def test_a_directory_as_config_is_exit_3(
    tmp_path: Path,
    cli: Cli,
    command: list[str],
) -> None:
    code, _, err = cli(*command, "--config", str(tmp_path))
    assert code == 3
    assert err == (
        f"Error: {tmp_path} is a directory, not a config file\n"
        "Hint: Point --config at the config.toml file itself.\n"
    )


# ---- 3. config show says the file is invalid, with validate's messages

INVALID_VARIANTS = {
    "limit-string": '[[runners]]\n  url = "u"\n  token = "glrt-x"\n  limit = "4"\n',
    "no-url": '[[runners]]\n  token = "glrt-x"\n  executor = "shell"\n',
    "no-token": '[[runners]]\n  url = "https://g/"\n  executor = "shell"\n',
    "empty-token": '[[runners]]\n  url = "https://g/"\n  token = ""\n',
    "runners-table": '[runners]\n  url = "https://g/"\n  token = "glrt-x"\n',
    "concurrent-zero": "concurrent = 0\n",
    "concurrent-string": 'concurrent = "4"\n',
    "bad-executor": '[[runners]]\n  url = "u"\n  token = "t"\n  executor = "podman"\n',
    "bad-shell": '[[runners]]\n  url = "u"\n  token = "t"\n  shell = "fish"\n',
    "docker-array": '[[runners]]\n  url = "u"\n  token = "t"\n  [[runners.docker]]\n',
    "privileged-string": '[[runners]]\n  url = "u"\n  token = "t"\n  [runners.docker]\n'
    '    privileged = "yes"\n',
    "bad-duration": 'connection_max_age = "15 minutes"\n',
    "date-as-name": '[[runners]]\n  name = 2026-01-01\n  url = "u"\n  token = "t"\n',
    "negative-limit": '[[runners]]\n  url = "u"\n  token = "t"\n  limit = -5\n',
    "int-overflow": "concurrent = 99999999999999999999\n",
}


@pytest.mark.parametrize("name", sorted(INVALID_VARIANTS))
def test_show_refuses_what_validate_rejects(
    tmp_path: Path,
    cli: Cli,
    name: str,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(INVALID_VARIANTS[name])
    report = validate_text(INVALID_VARIANTS[name], source=str(path))
    assert not report.valid
    code, validate_out, _ = cli("config", "validate", "-c", str(path))
    assert code == 3
    code, out, err = cli("config", "show", "-c", str(path))
    assert code == 3
    assert out == ""
    errors = [line for line in validate_out.splitlines() if ": error: " in line]
    count = len(errors)
    assert err == (
        f"Error: {path} is not a valid config.toml ({count} error{'s' if count != 1 else ''}):\n"
        + "".join(f"{line}\n" for line in errors)
        + "Hint: Fix the file (gitlab-runner would refuse it as well); "
        f"`runnerctl config validate --config {path}` lists every problem.\n"
    )
    code, out, _ = cli("-o", "json", "config", "show", "-c", str(path))
    assert code == 3
    assert json.loads(out)["error"]["exit_code"] == 3  # the error document, no table


# ---- 4. runners as an array of inline tables


def test_inline_runner_array_validates_and_takes_a_registration(tmp_path: Path) -> None:
    text = (
        "concurrent = 2\n"
        'runners = [{ name = "old", url = "https://other.example/", token = "glrt-old0000000",'
        ' executor = "docker", docker = { image = "alpine" } }]\n'
    )
    assert validate_text(text).valid
    path = tmp_path / "config.toml"
    path.write_text(text)
    fake = FakeGitLab()
    result = register(_request(), gitlab=make_api(fake), store=ConfigStore(path))
    assert result.config_changed
    written = path.read_text()
    assert validate_text(written).valid
    document = ConfigDocument.parse(written)
    assert [r["name"] for r in document.iter_runner_plain()] == ["old", "ci-1"]
    assert next(document.iter_runner_plain())["docker"] == {"image": "alpine"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('runners = [{ name = "a" }]\n', '[[runners]]\n  name = "a"\n'),
        (
            'concurrent = 1\nrunners = [{ name = "a" }]',
            'concurrent = 1\n\n[[runners]]\n  name = "a"\n',
        ),
        ("concurrent = 1\nrunners = []\n", "concurrent = 1\n"),
    ],
)
def test_inline_runner_array_becomes_runner_sections(text: str, expected: str) -> None:
    assert ConfigDocument.parse(text).dumps() == expected


def test_reading_an_inline_runner_array_rewrites_nothing(tmp_path: Path) -> None:
    text = 'runners = [{ name = "a", url = "u", token = "glrt-a000000000" }]\n'
    path = tmp_path / "config.toml"
    path.write_text(text)
    result = ConfigStore(path).update(lambda doc: doc.set_global("concurrent", None))
    assert not result.changed
    assert path.read_text() == text
    assert list(tmp_path.iterdir()) == [path, tmp_path / "config.toml.lock"]


# ---- 5. integers gitlab-runner cannot load


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "concurrent = 99999999999999999999\n",
            "concurrent = 99999999999999999999 does not fit in 64 bits",
        ),
        ("[x]\n  y = [1, -9223372036854775809]\n", "x.y[1] = -9223372036854775809 does not fit"),
        (
            '[[runners]]\n  url = "u"\n  token = "t"\n  limit = -5\n',
            "runners[0].limit = -5 is negative; gitlab-runner treats it as 0 (no limit)",
        ),
    ],
)
def test_integers_out_of_range_are_errors(text: str, message: str) -> None:
    report = validate_text(text)
    assert next(i.message for i in report.errors if i.code == "range").startswith(message)


def test_int64_bounds_themselves_are_fine() -> None:
    text = "[x]\n  a = 9223372036854775807\n  b = -9223372036854775808\n"
    assert validate_text(text).valid


@pytest.mark.parametrize("value", ["99999999999999999999", "-5", "9223372036854775808"])
def test_register_limit_option_is_bounded(
    tmp_path: Path,
    cli: Cli,
    value: str,
) -> None:
    env = {"GITLAB_URL": "https://gitlab.example", "GITLAB_TOKEN": "glpat-unit0000000000000000"}
    config = tmp_path / "config.toml"
    args = ["register", "-e", "shell", "-s", "instance", "-t", "x", "-c", str(config)]
    code, _, err = cli(*args, "--limit", value, env=env)
    assert code == 2
    assert "--limit" in err
    assert list(tmp_path.iterdir()) == []


# ---- 9. a failed command leaves no trace


def test_failed_first_write_leaves_no_lock_and_no_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "config.toml"

    def fail(_doc: ConfigDocument) -> None:
        raise ConfigError("refused")

    with pytest.raises(ConfigError, match="refused"):
        ConfigStore(path).update(fail, create=True)
    assert list(tmp_path.iterdir()) == []


def test_failed_registration_into_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gitlab-runner" / "config.toml"
    with pytest.raises(ConfigError):
        # An executor entry that cannot be valid: refused after the create, then rolled back.
        register(
            _request(limit=2**64),
            gitlab=make_api(FakeGitLab()),
            store=ConfigStore(path),
        )
    assert list(tmp_path.iterdir()) == []


def test_every_directory_created_for_a_config_is_private(tmp_path: Path) -> None:
    path = tmp_path / "x" / "y" / "z" / "config.toml"
    old = os.umask(0o022)
    try:
        ConfigStore(path).update(lambda doc: doc.set_global("concurrent", 2), create=True)
    finally:
        os.umask(old)
    for directory in (tmp_path / "x", tmp_path / "x" / "y", tmp_path / "x" / "y" / "z"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_a_failed_rename_leaves_no_new_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(VALID)

    def no_space(_src: object, _dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(ConfigError, match="No space left on device"):
        ConfigStore(path).update(lambda doc: doc.set_global("concurrent", 3))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "config.toml.lock"]
    assert path.read_text() == VALID
