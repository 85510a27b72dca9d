"""FLEET.toml: good files load into a Fleet, every rule reports FILE:LINE:COL, exit 2."""

from __future__ import annotations

import json
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from provisioner.fleet.load import (
    FleetFileError,
    check_file,
    check_text,
    load_fleet,
    schema,
    shipped_schema,
)
from provisioner.gitlab.models import AccessLevel, RunnerType
from tests.conftest import Cli

GOOD = """\
[fleet]
name = "prod"
gitlab_url = "https://gitlab.example.com/"
ssh_user = "ops"

[fleet.defaults]
executor = "docker"
maximum_timeout = 3600
token_rotation = { before_expiry = "7d" }

[[hosts]]
name = "vm-a"
address = "10.0.0.5"
roles = ["docker", "python"]

[[hosts]]
name = "vm-b"
address = "10.0.0.6:2222"
user = "admin"
vars = { docker_daemon_options = { storage-driver = "vfs" } }

[[runners]]
name = "build"
hosts = ["vm-a", "vm-b"]
tags = ["linux", "docker", "linux"]
[runners.config]
limit = 2
[runners.docker]
image = "runnerctl/python:3.12"

[[runners]]
name = "deploy"
host = "vm-a"
executor = "shell"
scope = "group:ops/ci"
paused = true
access_level = "ref_protected"
token_rotation = { every = "30d" }
"""


def _issues(text: str) -> list[str]:
    report = check_text(text)
    assert report.fleet is None
    return [i.render(report.source) for i in report.issues]


def test_good_file_loads_with_defaults_merged() -> None:
    report = check_text(GOOD)
    assert report.issues == ()
    fleet = report.fleet
    assert fleet is not None
    assert (fleet.name, fleet.gitlab_url) == ("prod", "https://gitlab.example.com")
    a, b = fleet.hosts
    assert (a.address, a.port, a.user, a.roles) == (
        "10.0.0.5",
        22,
        "ops",
        ("docker", "python"),
    )
    assert b.roles is None  # not given: every optional role
    assert (b.address, b.port, b.user) == ("10.0.0.6", 2222, "admin")
    assert b.vars == {"docker_daemon_options": {"storage-driver": "vfs"}}
    assert a.config_path == "/etc/gitlab-runner/config.toml"
    build = fleet.runner("build")
    assert build.hosts == ("vm-a", "vm-b")
    assert build.executor == "docker"
    assert build.tags == ("linux", "docker")
    assert build.scope.runner_type is RunnerType.INSTANCE
    assert build.maximum_timeout == 3600
    assert build.token_rotation is not None
    assert build.token_rotation.before_expiry == timedelta(days=7)
    assert build.entry == {"limit": 2, "docker": {"image": "runnerctl/python:3.12"}}
    deploy = fleet.runner("deploy")
    assert (deploy.executor, str(deploy.scope), deploy.paused) == ("shell", "group:ops/ci", True)
    assert deploy.access_level is AccessLevel.REF_PROTECTED
    assert deploy.token_rotation is not None
    assert (deploy.token_rotation.every, deploy.token_rotation.before_expiry) == (
        timedelta(days=30),
        None,
    )
    assert deploy.entry == {}


def test_vars_file_is_merged_under_host_vars(tmp_path: Path) -> None:
    (tmp_path / "vars.yml").write_text("a: 1\nb: 2\n")
    text = GOOD.replace('ssh_user = "ops"', 'ssh_user = "ops"\nvars_file = "vars.yml"')
    text = text.replace("vars = { docker", "vars = { b = 3, docker")
    path = tmp_path / "FLEET.toml"
    path.write_text(text)
    fleet = load_fleet(path)
    assert fleet.host("vm-a").vars == {"a": 1, "b": 2}
    assert fleet.host("vm-b").vars["b"] == 3
    assert fleet.source == str(path)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'name = "prod"',
            'name = "Prod!"',
            "FLEET.toml:2:1: fleet.name: String should match pattern",
        ),
        (
            'gitlab_url = "https://gitlab.example.com/"\n',
            "",
            "FLEET.toml:1:1: fleet.gitlab_url: required key missing",
        ),
        (
            'executor = "shell"',
            'executor = "ssh"',
            "FLEET.toml:34:1: runners[1].executor: Input should be 'shell', 'docker' or 'kub",
        ),
        (
            "paused = true",
            'paused = "yes"',
            "FLEET.toml:36:1: runners[1].paused: Input should be a valid boolean",
        ),
        ("paused = true", "colour = 1", "FLEET.toml:36:1: unknown key 'colour' in runners[1]"),
        (
            'before_expiry = "7d"',
            'before_expiry = "7 days"',
            "FLEET.toml:9:1: fleet.defaults.token_rotation.before_expiry: String should match",
        ),
        (
            "maximum_timeout = 3600",
            "maximum_timeout = 60",
            "FLEET.toml:8:1: fleet.defaults.maximum_timeout: Input should be greater than",
        ),
        (
            'address = "10.0.0.5"',
            "address = 5",
            "FLEET.toml:13:1: hosts[0].address: Input should be a valid string",
        ),
    ],
)
def test_structural_errors_have_positions(old: str, new: str, expected: str) -> None:
    issues = _issues(GOOD.replace(old, new, 1))
    assert any(i.startswith(expected) for i in issues), issues


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('host = "vm-a"', 'host = "vm-z"', "FLEET.toml:33:1: runner 'deploy': unknown host 'vm-z'"),
        (
            'hosts = ["vm-a", "vm-b"]',
            'hosts = ["vm-a", "vm-a"]',
            "FLEET.toml:24:1: runner 'build': host 'vm-a' listed twice",
        ),
        (
            'host = "vm-a"',
            'host = "vm-a"\nhosts = ["vm-b"]',
            "FLEET.toml:31:1: runner 'deploy': give either host or hosts",
        ),
        (
            'name = "deploy"',
            'name = "build"',
            "FLEET.toml:32:1: runner 'build' is defined twice (first: runners[0])",
        ),
        (
            'name = "vm-b"',
            'name = "vm-a"',
            "FLEET.toml:17:1: host 'vm-a' is defined twice (first: hosts[0])",
        ),
        (
            'address = "10.0.0.6:2222"',
            'address = "10.0.0.5"',
            "FLEET.toml:18:1: host 'vm-b' has the address of host 'vm-a' (10.0.0.5)",
        ),
        (
            'address = "10.0.0.6:2222"',
            'address = "10.0.0.6:99999"',
            "FLEET.toml:18:1: hosts[1].address: '10.0.0.6:99999' is not host or host:port",
        ),
        (
            'scope = "group:ops/ci"',
            'scope = "team:ops"',
            "FLEET.toml:35:1: runner 'deploy': Unknown scope 'team:ops'.",
        ),
        (
            'scope = "group:ops/ci"',
            'scope = "project:app"',
            "FLEET.toml:35:1: runner 'deploy': Project scope 'project:app' needs the full path",
        ),
        (
            'ssh_user = "ops"\n',
            "",
            "FLEET.toml:10:1: host 'vm-a' has no user: set hosts[0].user or fleet.ssh_user",
        ),
        (
            'executor = "docker"\n',
            "",
            "FLEET.toml:21:1: runner 'build': executor missing (shell, docker, kubernetes)",
        ),
        (
            'executor = "shell"',
            'executor = "shell"\n[runners.docker]\nimage = "x"',
            "FLEET.toml:35:1: runner 'deploy': a [runners.docker] table with executor 'shell'",
        ),
        (
            'ssh_user = "ops"',
            'ssh_user = "ops"\nvars_file = "missing.yml"',
            "FLEET.toml:5:1: fleet.vars_file: cannot read missing.yml",
        ),
    ],
)
def test_semantic_errors_have_positions(old: str, new: str, expected: str) -> None:
    issues = _issues(GOOD.replace(old, new, 1))
    assert any(i.startswith(expected) for i in issues), issues


def test_syntax_error_has_position() -> None:
    assert _issues(GOOD.replace('name = "vm-a"', 'name = "vm-a'))[0].startswith("FLEET.toml:12:")


def test_load_raises_usage_error_listing_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "FLEET.toml"
    path.write_text(
        GOOD.replace('host = "vm-a"', 'host = "vm-z"').replace("paused = true", "x = 1")
    )
    with pytest.raises(FleetFileError) as info:
        load_fleet(path)
    assert info.value.exit_code == 2
    assert f"{path}:36:1: unknown key 'x' in runners[1]" in info.value.message
    assert info.value.hint is not None
    assert "fleet validate" in info.value.hint


def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(FleetFileError, match="Cannot read"):
        check_file(tmp_path / "absent.toml")


# ---- the shipped JSON Schema


def test_shipped_schema_is_the_models_schema() -> None:
    assert shipped_schema() == json.loads(json.dumps(schema()))


def _schema_accepts(text: str) -> bool:
    try:
        jsonschema.validate(tomllib.loads(text), shipped_schema())
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("old", "new", "valid"),
    [
        ("", "", True),
        ('executor = "shell"', 'executor = "ssh"', False),
        ("paused = true", "colour = 1", False),
        ("maximum_timeout = 3600", "maximum_timeout = 60", False),
        ('before_expiry = "7d"', 'before_expiry = "7 days"', False),
        ('name = "prod"', 'name = "Prod!"', False),
        ("paused = true", "paused = false", True),
    ],
)
def test_schema_and_loader_agree(old: str, new: str, valid: bool) -> None:
    text = GOOD.replace(old, new, 1) if old else GOOD
    assert _schema_accepts(text) is valid
    assert check_text(text).valid is valid


def test_docs_example_is_valid(tmp_path: Path) -> None:
    """The full example of docs/fleet.md is valid for the schema and the loader."""
    docs = Path(__file__).parents[3] / "docs" / "fleet.md"
    text = docs.read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    data: Any = tomllib.loads(example)
    jsonschema.validate(data, shipped_schema())
    (tmp_path / "vars.yml").write_text("x: 1\n")
    path = tmp_path / "FLEET.toml"
    path.write_text(example)
    assert check_file(path).issues == ()


# ---- the command


def test_validate_command_good(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "FLEET.toml"
    path.write_text(GOOD)
    code, out, _ = cli("fleet", "validate", str(path))
    assert code == 0
    assert out == f"valid: {path}: fleet prod, 2 hosts, 2 runners\n"


def test_validate_command_bad_text_and_json(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "FLEET.toml"
    text = GOOD.replace('host = "vm-a"', 'host = "vm-z"')
    path.write_text(text)
    before = path.stat().st_mtime_ns
    code, out, _ = cli("fleet", "validate", str(path))
    assert code == 2
    assert out == (f"{path}:33:1: runner 'deploy': unknown host 'vm-z'\ninvalid: {path}: 1 error\n")
    code, out, _ = cli("fleet", "validate", str(path), "-o", "json")
    assert code == 2
    assert json.loads(out) == {
        "path": str(path),
        "valid": False,
        "errors": [
            {
                "path": "runners[1].host",
                "message": "runner 'deploy': unknown host 'vm-z'",
                "line": 33,
                "column": 1,
            }
        ],
        "fleet": None,
        "hosts": None,
        "runners": None,
    }
    assert path.read_text() == text
    assert path.stat().st_mtime_ns == before


# ---- --env overlays

OVERLAY = """
[env.staging.fleet]
name = "staging"
gitlab_url = "https://gitlab-staging.example.com"

[env.staging.fleet.defaults]
maximum_timeout = 1800

[env.staging.hosts.vm-b]
address = "10.1.0.6"

[env.staging.runners.deploy]
paused = false
tags = ["staging"]
"""


def test_env_overlay_merges_over_the_file() -> None:
    plain = check_text(GOOD + OVERLAY)
    assert plain.fleet is not None
    assert plain.fleet.name == "prod"  # without --env the overlay is only checked
    report = check_text(GOOD + OVERLAY, env="staging")
    fleet = report.fleet
    assert fleet is not None, report.issues
    assert (fleet.name, fleet.gitlab_url) == ("staging", "https://gitlab-staging.example.com")
    assert fleet.host("vm-b").address == "10.1.0.6"
    assert fleet.host("vm-b").vars == {"docker_daemon_options": {"storage-driver": "vfs"}}
    deploy = fleet.runner("deploy")
    assert (deploy.paused, deploy.tags, deploy.maximum_timeout) == (False, ("staging",), 1800)
    assert deploy.token_rotation == fleet.runner("deploy").token_rotation


def test_env_errors_point_into_the_overlay() -> None:
    lines = (GOOD + OVERLAY).count("\n")
    bad = (
        GOOD
        + OVERLAY.replace("paused = false", 'paused = "no"')
        + "[env.staging.runners.nope]\nx = 1\n"
    )
    report = check_text(bad, env="staging")
    assert [i.render(report.source) for i in report.issues] == [
        f"FLEET.toml:{lines + 1}:1: env.staging.runners.nope: no runner 'nope' in the file"
    ]
    report = check_text(GOOD + OVERLAY.replace("paused = false", 'paused = "no"'), env="staging")
    assert [i.render(report.source) for i in report.issues] == [
        f"FLEET.toml:{lines - 1}:1: env.staging.runners.deploy.paused: "
        "Input should be a valid boolean"
    ]
    report = check_text(GOOD + OVERLAY, env="prod")
    assert [i.message for i in report.issues] == [
        "--env prod: no [env.prod] table in the file (known: staging)"
    ]


def test_validate_command_with_env(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "FLEET.toml"
    path.write_text(GOOD + OVERLAY)
    code, out, _ = cli("fleet", "validate", str(path), "--env", "staging")
    assert (code, out) == (0, f"valid: {path}: fleet staging, 2 hosts, 2 runners\n")


def test_roles_are_the_optional_playbook_roles_and_a_docker_runner_needs_docker(
    tmp_path: Path,
) -> None:
    from provisioner.fleet.load import check_file

    unknown = GOOD.replace('roles = ["docker", "python"]', 'roles = ["gitlab_runner"]')
    path = tmp_path / "FLEET.toml"
    path.write_text(unknown)
    report = check_file(path)
    assert not report.valid
    line = GOOD.splitlines().index('roles = ["docker", "python"]') + 1
    assert [i.render("F") for i in report.issues] == [
        f"F:{line}:1: hosts[0].roles[0]: Input should be 'docker', 'python' or 'cosign'"
    ]

    no_docker = GOOD.replace('roles = ["docker", "python"]', "roles = []")
    path.write_text(no_docker)
    report = check_file(path)
    assert not report.valid
    messages = [i.message for i in report.issues]
    assert any(
        "docker executor on host 'vm-a', whose roles leave out docker" in m for m in messages
    )


def test_the_inventory_limits_the_optional_roles_only_when_roles_are_given(
    tmp_path: Path,
) -> None:
    import json

    from provisioner.fleet.model import HostSpec
    from provisioner.fleet.remote import write_inventory
    from provisioner.ssh import SSHOptions

    hosts = [
        HostSpec(name="vm-a", address="10.0.0.5", user="ops", roles=()),
        HostSpec(name="vm-b", address="10.0.0.6", user="ops", roles=("cosign",)),
        HostSpec(name="vm-c", address="10.0.0.7", user="ops"),
    ]
    inventory = json.loads(write_inventory(tmp_path, hosts, SSHOptions()).read_text())["all"]
    assert inventory["hosts"]["vm-a"]["runnerctl_roles"] == []
    assert inventory["hosts"]["vm-b"]["runnerctl_roles"] == ["cosign"]
    assert "runnerctl_roles" not in inventory["hosts"]["vm-c"]
