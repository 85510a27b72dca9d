"""The total error boundary: every command family, an injected failure, no secret leaks.

Each case makes the domain function a command calls raise an exception whose message carries
a secret this run read (a GitLab token from the environment or a token file, a runner token
from config.toml, a sudo password, a cosign password). The secrets have no GitLab prefix, so
only the run's own redactor, which learned them, can mask them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

import pytest

from provisioner.cli.context import AppContext, Factories
from tests.conftest import Cli

GITLAB_TOKEN = "Zq7plainGitLabToken0815"
FILE_TOKEN = "Yx4plainTokenFromAFile4711"
RUNNER_TOKEN = "Wv2plainRunnerToken9999"
SUDO_PASSWORD = "Uu8plainSudoPassword123"
COSIGN_PASSWORD = "Tt6plainCosignPassword42"
SANDBOX_TOKEN = "Ss3plainSandboxRootToken77"
SECRETS = (GITLAB_TOKEN, FILE_TOKEN, RUNNER_TOKEN, SUDO_PASSWORD, COSIGN_PASSWORD, SANDBOX_TOKEN)


def _raiser(exc_type: type[Exception], secret: str) -> Callable[..., NoReturn]:
    def fail(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise exc_type(f"boom while holding {secret!r} and {secret}")

    return fail


def _fake_app() -> AppContext:
    """Clients that never touch the network or a daemon."""
    fake_gitlab = SimpleNamespace(settings=SimpleNamespace(url="https://gitlab.example"))
    return AppContext(
        factories=Factories(
            gitlab=lambda _settings: fake_gitlab,  # type: ignore[arg-type,return-value]
            docker=lambda: SimpleNamespace(server_version="27.0"),  # type: ignore[arg-type,return-value]
            ssh=lambda _target, _options: SimpleNamespace(),  # type: ignore[arg-type,return-value]
        )
    )


@pytest.fixture
def files(tmp_path: Path) -> SimpleNamespace:
    config = tmp_path / "config.toml"
    config.write_text(
        'concurrent = 1\n\n[[runners]]\n  name = "r1"\n  url = "https://gitlab.example/"\n'
        f'  token = "{RUNNER_TOKEN}"\n  executor = "shell"\n'
    )
    token_file = tmp_path / "token"
    token_file.write_text(FILE_TOKEN + "\n")
    password = tmp_path / "sudo"
    password.write_text(SUDO_PASSWORD + "\n")
    return SimpleNamespace(
        config=config, token_file=token_file, password=password, tmp=tmp_path / "demo"
    )


def _demo_fails(*_args: Any, pieces: Any, **_kwargs: Any) -> NoReturn:
    pieces.on_secret(SANDBOX_TOKEN)  # the sandbox root token the demo read
    raise RuntimeError(f"sandbox said {SANDBOX_TOKEN!r}")


# (family, argv, module path, attribute, replacement, secret)
CASES: list[tuple[str, list[str], str, str, Callable[..., Any], str]] = [
    (
        "config",
        ["config", "show", "-c", "{config}"],
        "provisioner.runner_config",
        "build_model",
        _raiser(ValueError, RUNNER_TOKEN),
        RUNNER_TOKEN,
    ),
    (
        "image",
        ["image", "push", "runnerctl/python:3.11", "127.0.0.1:5000"],
        "provisioner.images",
        "push_image",
        _raiser(OSError, COSIGN_PASSWORD),
        COSIGN_PASSWORD,
    ),
    (
        "register",
        ["register", "-e", "shell", "-s", "instance", "-c", "{config}"],
        "provisioner.registration.service",
        "register",
        _raiser(RuntimeError, GITLAB_TOKEN),
        GITLAB_TOKEN,
    ),
    (
        "unregister",
        ["unregister", "r1", "-c", "{config}", "--token-file", "{token_file}"],
        "provisioner.registration.service",
        "unregister",
        _raiser(ValueError, FILE_TOKEN),
        FILE_TOKEN,
    ),
    (
        "runners",
        ["runners", "list", "--token-file", "{token_file}"],
        "provisioner.registration.service",
        "list_runners",
        _raiser(ValueError, FILE_TOKEN),
        FILE_TOKEN,
    ),
    (
        "token",
        ["token", "rotate", "r1", "-c", "{config}"],
        "provisioner.registration.service",
        "rotate_token",
        _raiser(RuntimeError, GITLAB_TOKEN),
        GITLAB_TOKEN,
    ),
    (
        "sandbox",
        ["sandbox", "runner", "--config", "{config}", "--once"],
        "provisioner.sandbox_runner",
        "start_background",
        _raiser(OSError, RUNNER_TOKEN),
        RUNNER_TOKEN,
    ),
    (
        "host",
        ["host", "check", "ops@vm1", "--become-password-file", "{password}"],
        "provisioner.hosts.preflight",
        "preflight",
        _raiser(RuntimeError, SUDO_PASSWORD),
        SUDO_PASSWORD,
    ),
    (
        "host provision",
        ["host", "provision", "ops@vm1", "--config-file", "{config}"],
        "provisioner.hosts.provision",
        "provision",
        _raiser(RuntimeError, RUNNER_TOKEN),
        RUNNER_TOKEN,
    ),
    (
        "k8s",
        ["k8s", "values", "--runner", "r1", "-c", "{config}"],
        "provisioner.k8s.values",
        "write_for_document",
        _raiser(RuntimeError, RUNNER_TOKEN),
        RUNNER_TOKEN,
    ),
    (
        "demo",
        ["demo", "--data-dir", "{tmp}"],
        "provisioner.demo",
        "run_demo",
        _demo_fails,
        SANDBOX_TOKEN,
    ),
    (
        "smoke",
        ["smoke", "--tag", "t"],
        "provisioner.smoke",
        "run_smoke",
        _raiser(RuntimeError, GITLAB_TOKEN),
        GITLAB_TOKEN,
    ),
]


Case = tuple[str, list[str], str, str, Callable[..., Any], str]


@pytest.mark.parametrize("mode", ["plain", "debug", "json"])
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_every_family_masks_an_injected_failure(
    cli: Cli,
    files: SimpleNamespace,
    monkeypatch: pytest.MonkeyPatch,
    case: Case,
    mode: str,
) -> None:
    family, argv, module, attribute, replacement, secret = case
    import importlib

    monkeypatch.setattr(importlib.import_module(module), attribute, replacement)
    args = [
        a.format(
            config=files.config, token_file=files.token_file, password=files.password, tmp=files.tmp
        )
        for a in argv
    ]
    extra = {"plain": [], "debug": ["--debug"], "json": ["--output", "json"]}[mode]
    env = {
        "GITLAB_URL": "https://gitlab.example",
        "GITLAB_TOKEN": GITLAB_TOKEN,
        "COSIGN_PASSWORD": COSIGN_PASSWORD,
    }
    code, out, err = cli(*args, *extra, env=env, app=_fake_app())

    assert code == 1, (family, out, err)
    error_line = next(line for line in err.splitlines() if line.startswith("Error: "))
    assert "[MASKED]" in error_line, error_line
    assert err.endswith("Hint: this is a bug: run again with --debug and report it\n")
    assert secret in SECRETS
    for value in SECRETS:
        assert value not in out, (family, value)
        assert value not in err, (family, value)
    if mode == "debug":
        assert "Traceback (most recent call last)" in err
    else:
        assert "Traceback" not in err
    if mode == "json":
        assert json.loads(out) == {
            "error": {
                "message": error_line.removeprefix("Error: "),
                "hint": "this is a bug: run again with --debug and report it",
                "exit_code": 1,
            }
        }
    else:
        assert out == ""


def test_a_token_file_with_a_newline_never_leaks(cli: Cli, tmp_path: Path) -> None:
    """The reported reproduction: the HTTP library quotes the token in its own error."""
    token_file = tmp_path / "t"
    token_file.write_text(f"{FILE_TOKEN}\nx\n")

    def header_error(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise ValueError(f"Invalid header value {token_file.read_bytes()!r}")

    app = _fake_app()
    app.factories.gitlab = lambda settings: SimpleNamespace(  # type: ignore[assignment,return-value]
        list_runners=header_error, settings=settings
    )
    for extra in ([], ["--debug"], ["-o", "json"]):
        code, out, err = cli(
            "runners",
            "list",
            "--token-file",
            str(token_file),
            *extra,
            env={"GITLAB_URL": "https://gitlab.example"},
            app=app,
        )
        assert code == 2, err  # the connection refuses such a token before any request
        assert "line break" in err
        assert "\nHint: " in err
        assert FILE_TOKEN not in out + err


def test_a_python_gitlab_config_token_is_masked_even_when_resolution_fails(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitlab.cfg"
    config.write_text(f"[work]\nurl = https://gitlab.example\nprivate_token = {GITLAB_TOKEN}\n")

    def fail(**_kwargs: Any) -> NoReturn:
        raise RuntimeError(f"could not use token {GITLAB_TOKEN}")

    monkeypatch.setattr("provisioner.gitlab.connection.resolve_connection", fail)
    code, out, err = cli(
        "runners", "list", "--gitlab-config-section", "work", "--gitlab-config-file", str(config),
        app=_fake_app(),
    )  # fmt: skip
    assert code == 1
    assert out == ""
    assert "Error: unexpected RuntimeError: could not use token [MASKED]\n" in err
    assert GITLAB_TOKEN not in err
