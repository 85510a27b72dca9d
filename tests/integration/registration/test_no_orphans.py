"""No runner left behind: narrow token scopes, signals, and kills, against the sandbox.

Every ``runnerctl`` runs as its own process; GitLab's side is read through our adapter.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.integration.registration.conftest import RUNNERCTL, Lab, Run, runners_named

pytestmark = pytest.mark.sandbox


def _token(lab: Lab, scopes: list[str]) -> str:
    import gitlab

    gl = gitlab.Gitlab(lab.url, private_token=lab.token)
    root = gl.users.list(username="root")[0]
    made = gl.http_post(
        f"/users/{root.id}/personal_access_tokens",
        post_data={"name": "narrow", "scopes": scopes, "expires_at": "2099-01-01"},
    )
    return str(made["token"])  # type: ignore[index]


def _register_args(name: str, config: Path) -> tuple[str, ...]:
    return (
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-n",
        name,
        "-t",
        "x",
        "--config",
        str(config),
    )


def _entries(config: Path) -> dict[str, dict[str, Any]]:
    if not config.exists():
        return {}
    return {r["name"]: r for r in tomllib.loads(config.read_text()).get("runners", [])}


def test_create_runner_only_token_leaves_nothing_behind(lab: Lab, run: Run, tmp_path: Path) -> None:
    narrow = _token(lab, ["create_runner"])
    config = tmp_path / "config.toml"
    dry = run(*_register_args("narrow-1", config), "--dry-run", env=lab.env(GITLAB_TOKEN=narrow))
    assert dry.returncode == 4, dry.stderr
    assert "read it back (GET /runners/:id)" in dry.stderr
    assert "the real run would fail" in dry.stderr
    for _attempt in range(2):  # a retry must not pile up runners either
        real = run(*_register_args("narrow-1", config), env=lab.env(GITLAB_TOKEN=narrow))
        assert real.returncode == 4, real.stderr
        assert "read_api" in real.stderr
        assert "lacks the create_runner" not in real.stderr
        assert "was deleted again" in real.stderr
        assert runners_named(lab, "narrow-1") == []
        assert not config.exists()
    both = _token(lab, ["create_runner", "api"])
    ok = run(*_register_args("narrow-1", config), "--dry-run", env=lab.env(GITLAB_TOKEN=both))
    assert ok.returncode == 0, ok.stderr


def test_ctrl_c_during_register_deletes_the_runner_again(lab: Lab, tmp_path: Path) -> None:
    """SIGINT as soon as the runner exists in GitLab: complete in both places, or in neither."""
    outcomes: list[int] = []
    for i in range(4):
        name = f"sigint-{i}"
        config = tmp_path / f"c{i}.toml"
        proc = subprocess.Popen(
            [RUNNERCTL, *_register_args(name, config)],
            env=lab.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while proc.poll() is None and not runners_named(lab, name):
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        outcomes.append(proc.returncode)
        in_gitlab = [r.id for r in runners_named(lab, name)]
        in_file = [e["id"] for e in _entries(config).values()]
        assert in_gitlab == in_file, (proc.returncode, err)
        if proc.returncode == 130:
            assert "Interrupted." in err
            # Interrupted inside the transaction: rolled back. A signal that arrives after the
            # config write (a loaded machine) leaves the runner complete in both places.
            if not in_gitlab:
                assert "was deleted again in GitLab because the command was interrupted" in err
        else:
            # Finished before the signal arrived (0), or it arrived during interpreter shutdown,
            # after the command's own work (-2, Python's exit for a late KeyboardInterrupt).
            assert proc.returncode in (0, -signal.SIGINT), err
            assert in_gitlab, err  # complete in both places
    assert set(outcomes) <= {0, 130, -signal.SIGINT}, outcomes
    # How many runs the signal caught inside the transaction depends on the machine's load;
    # tests/unit/registration/test_leftovers.py drives the rollback path deterministically.


def test_verify_repair_after_killed_rotate_and_unregister(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    rng = random.Random(7)
    config = tmp_path / "config.toml"
    api = lab.api()
    for i in range(8):
        name = f"killed-{i}"
        assert run(*_register_args(name, config)).returncode == 0
        command = ("token", "rotate", name) if i % 2 == 0 else ("unregister", name)
        proc = subprocess.Popen(
            [RUNNERCTL, *command, "--config", str(config)],
            env=lab.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 2.5))
        proc.kill()
        proc.wait(timeout=30)
        repaired = run("verify", "--repair", "--config", str(config))
        assert repaired.returncode == 0, repaired.stderr
        entries = _entries(config)
        for entry in entries.values():
            assert api.verify(str(entry["token"])).valid, entry["name"]
        ours = sorted(r.id for r in api.list_runners(_all()) if r.description.startswith("killed-"))
        assert ours == sorted(e["id"] for e in entries.values())
        check = run("verify", "--config", str(config))
        assert check.returncode == 0, check.stderr
        assert "valid" in check.stdout


def _all() -> Any:
    from provisioner.gitlab.models import ListFilter

    return ListFilter()


def test_verify_exits_4_and_delete_drops_a_deleted_runner(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    assert run(*_register_args("vanished-1", config)).returncode == 0
    assert lab.api().delete_runner(int(_entries(config)["vanished-1"]["id"]))
    before = config.read_bytes()
    found = run("verify", "--config", str(config))
    assert found.returncode == 4
    assert "vanished-1" in found.stdout
    assert "gone" in found.stdout
    assert config.read_bytes() == before
    dropped = run("verify", "--delete", "--config", str(config))
    assert dropped.returncode == 0, dropped.stderr
    assert "deleted" in dropped.stdout
    assert _entries(config) == {}


@pytest.mark.slow
def test_register_killed_at_random_moments_converges(lab: Lab, run: Run, tmp_path: Path) -> None:
    """SIGKILL ``register`` 100 times; after each, a re-run leaves GitLab == config.toml.

    Every other kill lands at a random moment of the whole run; the others while the run's
    intent is journaled (plus a random few ms), where the window between create and rename is.
    """
    rng = random.Random(2026)
    config = tmp_path / "config.toml"
    journal = config.with_name(config.name + ".journal")
    api = lab.api()
    prefix = f"sigkill-{tmp_path.name[-6:]}-"

    def ours() -> list[int]:
        return sorted(r.id for r in api.list_runners(_all()) if r.description.startswith(prefix))

    killed_mid_create = 0
    for i in range(100):
        name = f"{prefix}{i % 7}"
        proc = subprocess.Popen(
            [RUNNERCTL, *_register_args(name, config)],
            env=lab.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if i % 2:
            # The journal holds the intent from before the create until the write: a kill
            # while it exists lands in that window whatever the machine's speed.
            while proc.poll() is None and not journal.exists():
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.01))
        else:
            time.sleep(rng.uniform(0.2, 3.0))
        proc.kill()
        proc.wait(timeout=30)
        killed_mid_create += journal.exists()
        again = run(*_register_args(name, config))
        assert again.returncode == 0, again.stderr
        in_file = sorted(e["id"] for e in _entries(config).values())
        assert ours() == in_file, f"after kill {i}"
        assert not journal.exists()
    assert killed_mid_create > 0  # some kills did land between the intent and the write
