"""The spellings users of ``gitlab-runner register | unregister`` reach for, against the sandbox.

``--url``, ``--description``, ``--tag-list a,b`` and ``--non-interactive`` on ``register``;
``--all-runners`` on ``unregister``. Each runs the real CLI in its own process; GitLab's side is
checked through our adapter.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tests.integration.registration.conftest import Lab, Run, runners_named

pytestmark = pytest.mark.sandbox


def test_register_takes_gitlab_runners_spellings(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    env = lab.env()
    del env["GITLAB_URL"]  # the URL comes from --url alone
    result = run(
        "register",
        "--non-interactive",
        "--url",
        lab.url,
        "--executor",
        "shell",
        "--scope",
        "instance",
        "--description",
        "spelled-like-gitlab-runner",
        "--tag-list",
        "linux, shell",
        "--tag",
        "extra",
        "--config",
        str(config),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Created runner 'spelled-like-gitlab-runner'" in result.stdout
    assert "tags: extra, linux, shell" in result.stdout
    (entry,) = tomllib.loads(config.read_text())["runners"]
    assert entry["name"] == "spelled-like-gitlab-runner"
    assert entry["url"] == lab.url
    (listed,) = runners_named(lab, "spelled-like-gitlab-runner")
    runner = lab.api().find_runner(listed.id)
    assert sorted(runner.tag_list) == ["extra", "linux", "shell"]


def test_unregister_all_runners_deletes_every_entry_in_gitlab(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    names = ("all-1", "all-2", "all-3")
    for name in names:
        made = run(
            "register", "-e", "shell", "-s", "instance", "-n", name, "-t", "x", "-c", str(config)
        )
        assert made.returncode == 0, made.stderr
    ids = [int(r["id"]) for r in tomllib.loads(config.read_text())["runners"]]
    # An entry of another GitLab instance is kept: the user's token does not speak for it.
    with config.open("a") as fh:
        fh.write(
            '\n[[runners]]\nname = "elsewhere"\nurl = "https://gitlab.other.example"\n'
            'id = 424242\ntoken = "glrt-elsewhere-0000000000000"\nexecutor = "shell"\n'
        )

    result = run("-o", "json", "unregister", "--all-runners", "--config", str(config))

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [r["name"] for r in doc["removed"]] == list(names)
    assert all(r["deleted_in_gitlab"] for r in doc["removed"])
    assert doc["skipped"] == [
        "Runner 'elsewhere' belongs to https://gitlab.other.example, not "
        f"{lab.url}: kept; run again with --gitlab-url https://gitlab.other.example."
    ]
    assert "Warning: Runner 'elsewhere' belongs to" in result.stderr
    left = tomllib.loads(config.read_text())["runners"]
    assert [r["name"] for r in left] == ["elsewhere"]
    api = lab.api()
    assert [api.find_runner(i) for i in ids] == [None, None, None]


def test_unregister_all_runners_excludes_a_name(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    made = run(
        "register", "-e", "shell", "-s", "instance", "-n", "excl-1", "-t", "x", "-c", str(config)
    )
    assert made.returncode == 0, made.stderr
    before = config.read_bytes()
    result = run("unregister", "excl-1", "--all-runners", "--config", str(config))
    assert result.returncode == 2
    assert "Error: Name the runner to remove: NAME or --id ID, or --all-runners" in result.stderr
    assert "Hint: " in result.stderr
    assert config.read_bytes() == before


def test_token_rotate_by_id_when_the_name_is_ambiguous(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    made = run(
        "register", "-e", "shell", "-s", "instance", "-n", "twin", "-t", "x", "-c", str(config)
    )
    assert made.returncode == 0, made.stderr
    (entry,) = tomllib.loads(config.read_text())["runners"]
    # The same name on another GitLab instance, as one config.toml may hold.
    with config.open("a") as fh:
        fh.write(
            '\n[[runners]]\nname = "twin"\nurl = "https://gitlab.other.example"\n'
            'id = 424242\ntoken = "glrt-elsewhere-0000000000000"\nexecutor = "shell"\n'
        )
    before = config.read_bytes()

    ambiguous = run("token", "rotate", "twin", "--config", str(config))

    assert ambiguous.returncode == 3
    assert f"Error: 2 runners with name 'twin' in {config}." in ambiguous.stderr
    assert "Hint: Name the runner by --id instead." in ambiguous.stderr
    assert config.read_bytes() == before

    result = run("-o", "json", "token", "rotate", "--id", str(entry["id"]), "--config", str(config))

    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["name"], doc["runner_id"]) == ("twin", entry["id"])
    assert doc["new_token_verified"] is True
    rotated, other = tomllib.loads(config.read_text())["runners"]
    assert rotated["token"] != entry["token"]
    assert lab.api().verify(rotated["token"]).valid
    assert other["token"] == "glrt-elsewhere-0000000000000"  # the other instance's is untouched

    both = run("token", "rotate", "twin", "--id", str(entry["id"]), "--config", str(config))
    assert both.returncode == 2
    assert "Error: Name the runner to rotate: NAME or --id ID (one of them)." in both.stderr


def test_unregister_all_runners_keep_server_leaves_gitlab_alone(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    for name in ("keep-1", "keep-2"):
        made = run(
            "register", "-e", "shell", "-s", "instance", "-n", name, "-t", "x", "-c", str(config)
        )
        assert made.returncode == 0, made.stderr
    ids = [int(r["id"]) for r in tomllib.loads(config.read_text())["runners"]]
    env = lab.env()
    del env["GITLAB_TOKEN"]  # --keep-server needs no GitLab at all

    result = run("unregister", "--all-runners", "--keep-server", "--config", str(config), env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Runner 'keep-{n}' (id {i}) removed from {config}"
        for n, i in zip((1, 2), ids, strict=True)
    ]
    assert "runners" not in tomllib.loads(config.read_text())
    api = lab.api()
    assert all(api.find_runner(i) is not None for i in ids)
