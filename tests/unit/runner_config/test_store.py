"""ConfigStore: atomic, private, backed-up, serialised writes that never lose a runner."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.errors import ConfigError
from provisioner.runner_config import ConfigDocument, ConfigStore, ConfigSyntaxError, RunnerRef
from provisioner.runner_config.store import MISSING_HINT

T0 = datetime(2026, 5, 12, 8, 0, 0, tzinfo=UTC)


def entry(i: int, **extra: object) -> dict[str, object]:
    return {
        "name": f"runner-{i}",
        "url": "https://gitlab.example.com/",
        "id": 1000 + i,
        "token": f"glrt-token-{i:04d}-abcdefgh",
        "token_obtained_at": T0,
        "token_expires_at": datetime(1, 1, 1, tzinfo=UTC),
        "executor": "shell",
        **extra,
    }


def adder(i: int) -> Callable[[ConfigDocument], None]:
    def add(document: ConfigDocument) -> None:
        document.add_runner(entry(i))

    return add


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(path: Path) -> list[str]:
    return [r["name"] for r in tomllib.loads(path.read_text(encoding="utf-8")).get("runners", [])]


def temps(directory: Path) -> list[Path]:
    return sorted(directory.glob(".config.toml.*.tmp"))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "gitlab-runner" / "config.toml"


def test_create_makes_private_dir_and_file(cfg: Path) -> None:
    result = ConfigStore(cfg).update(adder(1), create=True)
    assert result.changed
    assert result.backup is None
    assert mode(cfg.parent) == 0o700
    assert mode(cfg) == 0o600
    assert mode(cfg.with_name("config.toml.lock")) == 0o600
    assert names(cfg) == ["runner-1"]
    assert tomllib.loads(cfg.read_text())["concurrent"] == 1


def test_missing_file_without_create_is_a_clear_error(cfg: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ConfigStore(cfg).update(adder(1))
    assert info.value.message == f"config file not found: {cfg}"
    assert info.value.hint == MISSING_HINT
    assert info.value.exit_code == 3
    assert not cfg.exists()


def test_update_keeps_a_private_backup_of_the_previous_file(cfg: Path) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    before = cfg.read_bytes()
    os.chmod(cfg, 0o644)
    result = store.update(adder(2))
    assert result.backup is not None
    assert result.backup.read_bytes() == before
    assert mode(result.backup) == 0o600
    assert mode(cfg) == 0o600
    assert names(cfg) == ["runner-1", "runner-2"]


def test_backups_are_bounded(cfg: Path) -> None:
    store = ConfigStore(cfg, keep_backups=3)
    store.update(adder(0), create=True)
    for i in range(1, 8):
        store.update(adder(i))
    backups = store.backups()
    assert len(backups) == 3
    # The newest backup is the file as it was before the last write.
    assert names(backups[-1]) == [f"runner-{i}" for i in range(7)]


def test_noop_update_writes_nothing(cfg: Path) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    before = cfg.stat()
    result = store.update(lambda _doc: None)
    assert not result.changed
    assert cfg.stat().st_ino == before.st_ino
    assert cfg.stat().st_mtime_ns == before.st_mtime_ns
    assert store.backups() == []


def test_broken_file_is_never_overwritten(cfg: Path) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    broken = cfg.read_text() + "[[runners\n"
    cfg.write_text(broken)
    with pytest.raises(ConfigSyntaxError) as info:
        store.update(adder(2))
    assert str(info.value).startswith(f"{cfg}:")
    assert cfg.read_text() == broken
    assert store.backups() == []
    assert temps(cfg.parent) == []


def test_an_edit_that_fails_changes_nothing(cfg: Path) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    before = cfg.read_bytes()
    with pytest.raises(ConfigError, match="already configured"):
        store.update(adder(1))
    assert cfg.read_bytes() == before
    assert temps(cfg.parent) == []


def _stalled_writer(path: str, stage: str, ready: object) -> None:
    def hook(name: str, _temp: Path) -> None:
        if name == stage:
            ready.set()  # type: ignore[attr-defined]
            time.sleep(120)

    ConfigStore(Path(path), hook=hook).update(adder(99))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stage", ["temp-partial", "before-rename"])
def test_writer_killed_mid_write_leaves_the_old_file(cfg: Path, stage: str) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    original = cfg.read_bytes()
    expected = ConfigDocument.parse(original.decode())
    adder(99)(expected)
    new_bytes = expected.dumps().encode()

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_stalled_writer, args=(str(cfg), stage, ready))
    child.start()
    try:
        assert ready.wait(30), "the writer never reached the stage"
        (temp,) = temps(cfg.parent)
        written = temp.read_bytes()
        if stage == "temp-partial":
            assert written == new_bytes[: len(new_bytes) // 2]
        else:
            assert written == new_bytes
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert cfg.read_bytes() == original
    # The lock died with the writer: the next transaction runs and cleans the temp file up.
    store.update(adder(2))
    assert names(cfg) == ["runner-1", "runner-2"]
    assert temps(cfg.parent) == []


def _rotate(document: ConfigDocument, i: int, token: str, at: datetime) -> None:
    document.update_runner(RunnerRef(id=1000 + i), {"token": token, "token_obtained_at": at})


def test_disk_wins_when_it_holds_a_newer_token(cfg: Path) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    stale = store.load()  # a caller reads the file...
    # ...gitlab-runner rotates the token in the meantime...
    rotated_at = T0 + timedelta(days=30)
    store.update(lambda d: _rotate(d, 1, "glrt-rotated-by-runner", rotated_at))
    # ...and the caller saves its stale copy with an unrelated change.
    stale.update_runner(RunnerRef(id=1001), {"limit": 4})
    result = store.save(stale)
    assert result.kept_from_disk == ("runner-1",)
    runner = tomllib.loads(cfg.read_text())["runners"][0]
    assert runner["token"] == "glrt-rotated-by-runner"
    assert runner["token_obtained_at"] == rotated_at
    assert runner["limit"] == 4


def test_caller_with_a_newer_token_wins(cfg: Path) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    newer = T0 + timedelta(days=1)
    result = store.update(lambda d: _rotate(d, 1, "glrt-rotated-by-us", newer))
    assert result.kept_from_disk == ()
    runner = tomllib.loads(cfg.read_text())["runners"][0]
    assert (runner["token"], runner["token_obtained_at"]) == ("glrt-rotated-by-us", newer)


def test_token_change_without_a_newer_timestamp_keeps_the_disk_token(cfg: Path) -> None:
    store = ConfigStore(cfg)
    store.update(adder(1), create=True)
    same_time = store.update(lambda d: _rotate(d, 1, "glrt-other", T0))
    assert same_time.kept_from_disk == ("runner-1",)
    dropped = store.update(
        lambda d: d.update_runner(RunnerRef(id=1001), {"token": "x", "token_obtained_at": None})
    )
    assert dropped.kept_from_disk == ("runner-1",)
    runner = tomllib.loads(cfg.read_text())["runners"][0]
    assert (runner["token"], runner["token_obtained_at"]) == ("glrt-token-0001-abcdefgh", T0)


def test_runner_system_id_is_never_touched(cfg: Path) -> None:
    cfg.parent.mkdir(mode=0o700)
    system_id = cfg.parent / ".runner_system_id"
    system_id.write_text("s_0123456789ab\n")
    os.chmod(system_id, 0o600)
    before = system_id.stat()
    store = ConfigStore(cfg, keep_backups=1)
    store.update(adder(1), create=True)
    for i in range(2, 5):
        store.update(adder(i))
    store.update(lambda d: d.remove_runner(RunnerRef(id=1002)))
    after = system_id.stat()
    assert system_id.read_text() == "s_0123456789ab\n"
    assert (after.st_ino, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
        before.st_ino,
        before.st_mtime_ns,
        0o600,
    )


def test_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "managed" / "config.toml"
    ConfigStore(real).update(adder(1), create=True)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    ConfigStore(link).update(adder(2))
    assert link.is_symlink()
    assert names(real) == ["runner-1", "runner-2"]


def _size_limited_writer(path: str) -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
    try:
        ConfigStore(Path(path)).update(adder(2))
    except ConfigError as exc:
        ok = exc.message.startswith(f"cannot write {path}: ") and exc.exit_code == 3
        os._exit(10 if ok else 11)
    os._exit(12)


def test_failed_write_is_a_config_error_and_keeps_the_file(cfg: Path) -> None:
    ConfigStore(cfg).update(adder(1), create=True)
    before = cfg.read_bytes()
    assert len(before) > 64
    child = multiprocessing.get_context("fork").Process(
        target=_size_limited_writer, args=(str(cfg),)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 10
    assert cfg.read_bytes() == before
    assert temps(cfg.parent) == []
