"""Connection settings: precedence of options, python-gitlab sections and the environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from provisioner.errors import UsageError
from provisioner.gitlab.connection import check_token, resolve_connection
from provisioner.secrets import contains_secret
from tests.unit.registration.fakes import PAT

OTHER = "glpat-other0000000000000000"
SECTION_TOKEN = "glpat-fromconfig000000000"


def _config(tmp_path: Path, *, default: str | None = "lab", token: bool = True) -> Path:
    cfg = tmp_path / "python-gitlab.cfg"
    text = f"[global]\ndefault = {default}\n\n" if default else ""
    text += "[lab]\nurl = https://lab.example\n"
    if token:
        text += f"private_token = {SECTION_TOKEN}\n"
    text += "\n[urlonly]\nurl = https://urlonly.example\n"
    cfg.write_text(text)
    return cfg


def test_url_and_token_from_environment() -> None:
    settings = resolve_connection(env={"GITLAB_URL": "https://gl.example/", "GITLAB_TOKEN": PAT})
    assert settings.url == "https://gl.example"
    assert settings.api_url == "https://gl.example/api/v4"
    assert settings.token == PAT
    assert PAT not in repr(settings)


def test_ci_server_url_is_the_fallback_and_option_wins() -> None:
    env = {"CI_SERVER_URL": "https://ci.example", "GITLAB_TOKEN": PAT}
    assert resolve_connection(env=env).url == "https://ci.example"
    assert resolve_connection(url="https://opt.example", env=env).url == "https://opt.example"


def test_token_file_wins_over_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("glpat-fromfile0000000000\n")
    settings = resolve_connection(
        url="https://gl.example", token_file=token_file, env={"GITLAB_TOKEN": PAT}
    )
    assert settings.token == "glpat-fromfile0000000000"
    assert "token file" in settings.auth_source


def test_python_gitlab_config_section(tmp_path: Path) -> None:
    cfg = tmp_path / "python-gitlab.cfg"
    cfg.write_text(
        "[global]\ndefault = lab\n\n[lab]\nurl = https://lab.example\n"
        "private_token = glpat-fromconfig000000000\n"
    )
    settings = resolve_connection(config_section="lab", config_file=cfg, env={})
    assert settings.url == "https://lab.example"
    assert settings.token == "glpat-fromconfig000000000"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"env": {"GITLAB_TOKEN": PAT}}, "No GitLab URL"),
        ({"url": "https://gl.example", "env": {}}, "No GitLab access token"),
        ({"url": "ftp://gl.example", "env": {"GITLAB_TOKEN": PAT}}, "not an http(s) URL"),
        (
            {"url": "https://u:glpat-inurl000000000@gl.example", "env": {"GITLAB_TOKEN": PAT}},
            "must not carry credentials",
        ),
        (
            {
                "url": "https://gl.example",
                "insecure": True,
                "ca_bundle": Path("/etc/hostname"),
                "env": {"GITLAB_TOKEN": PAT},
            },
            "contradict",
        ),
        (
            {
                "url": "https://gl.example",
                "ca_bundle": Path("/nonexistent.pem"),
                "env": {"GITLAB_TOKEN": PAT},
            },
            "does not exist",
        ),
        (
            {"url": "https://gl.example", "token_file": Path("/nonexistent-token"), "env": {}},
            "Cannot read the token file",
        ),
    ],
)
def test_bad_connection_input_is_a_usage_error(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_connection(**kwargs)  # type: ignore[arg-type]
    assert needle in info.value.message
    assert info.value.exit_code == 2
    assert info.value.hint
    assert not contains_secret(info.value.message)


# -- precedence ---------------------------------------------------------------------------------


def test_section_beats_the_environment_for_url_and_token(tmp_path: Path) -> None:
    # Issue 12: the environment's token went to the section's URL, and CI_SERVER_URL won.
    env = {"GITLAB_TOKEN": OTHER, "CI_SERVER_URL": "https://ci.example"}
    settings = resolve_connection(config_section="lab", config_file=_config(tmp_path), env=env)
    assert (settings.url, settings.token) == ("https://lab.example", SECTION_TOKEN)
    assert settings.auth_source == "python-gitlab config section [lab]"


def test_section_url_with_environment_token_is_refused_naming_both(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with pytest.raises(UsageError) as info:
        resolve_connection(config_section="urlonly", config_file=cfg, env={"GITLAB_TOKEN": OTHER})
    assert "python-gitlab config section [urlonly]" in info.value.message
    assert "GITLAB_TOKEN" in info.value.message
    assert info.value.exit_code == 2
    assert OTHER not in info.value.message + (info.value.hint or "")


def test_environment_url_with_section_token_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "tokenonly.cfg"
    cfg.write_text(f"[tok]\nurl =\nprivate_token = {SECTION_TOKEN}\n")
    with pytest.raises(UsageError) as info:
        resolve_connection(
            config_section="tok", config_file=cfg, env={"GITLAB_URL": "https://env.example"}
        )
    assert "GITLAB_URL" in info.value.message
    assert "[tok]" in info.value.message


def test_explicit_options_beat_the_section(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(PAT + "\n")
    settings = resolve_connection(
        url="https://opt.example", token_file=token_file, config_section="lab", config_file=cfg
    )
    assert (settings.url, settings.token) == ("https://opt.example", PAT)


def test_an_explicit_half_combines_with_the_other_half_from_anywhere(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(PAT)
    env = {"GITLAB_URL": "https://env.example", "GITLAB_TOKEN": OTHER}
    settings = resolve_connection(token_file=token_file, env=env)
    assert (settings.url, settings.token) == ("https://env.example", PAT)
    settings = resolve_connection(
        url="https://opt.example", config_section="lab", config_file=_config(tmp_path), env=env
    )
    assert (settings.url, settings.token) == ("https://opt.example", SECTION_TOKEN)


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"GITLAB_URL": "https://a.example", "GITLAB_HOST": "b.example"}, "https://a.example"),
        ({"GITLAB_HOST": "b.example", "CI_SERVER_URL": "https://c.example"}, "https://b.example"),
        ({"GITLAB_HOST": "http://b.example:8080"}, "http://b.example:8080"),
        ({"CI_SERVER_URL": "https://c.example"}, "https://c.example"),
    ],
)
def test_environment_url_order(env: dict[str, str], url: str) -> None:
    assert resolve_connection(env={**env, "GITLAB_TOKEN": PAT}).url == url


def test_global_default_section_when_nothing_else_is_given(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    settings = resolve_connection(env={"PYTHON_GITLAB_CFG": str(cfg)})
    assert (settings.url, settings.token) == ("https://lab.example", SECTION_TOKEN)
    assert "[global] default" in settings.auth_source
    # From HOME too, as python-gitlab reads it.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".python-gitlab.cfg").write_text(cfg.read_text())
    assert resolve_connection(env={"HOME": str(home)}).url == "https://lab.example"


def test_global_default_section_is_not_used_once_the_environment_says_something(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path)
    env = {"PYTHON_GITLAB_CFG": str(cfg), "GITLAB_URL": "https://env.example"}
    with pytest.raises(UsageError, match="No GitLab access token"):
        resolve_connection(env=env)
    settings = resolve_connection(env={**env, "GITLAB_TOKEN": PAT})
    assert (settings.url, settings.token) == ("https://env.example", PAT)


def test_no_default_section_and_nothing_else_is_no_url(tmp_path: Path) -> None:
    cfg = _config(tmp_path, default=None)
    with pytest.raises(UsageError, match="No GitLab URL"):
        resolve_connection(env={"PYTHON_GITLAB_CFG": str(cfg)})


@pytest.mark.parametrize("suffix", ["/api/v4", "/api/v4/", "/gitlab/api/v4"])
def test_api_v4_suffix_is_normalised_with_a_log(
    suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="provisioner.gitlab.connection"):
        settings = resolve_connection(
            env={"GITLAB_URL": "https://gl.example" + suffix, "GITLAB_TOKEN": PAT}
        )
    expected = "https://gl.example" + ("/gitlab" if suffix.startswith("/gitlab") else "")
    assert settings.url == expected
    assert settings.api_url == expected + "/api/v4"
    assert any("/api/v4" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


# -- the token rule -----------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_one_trailing_newline_is_stripped(tmp_path: Path, ending: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes((PAT + ending).encode())
    assert resolve_connection(url="https://gl.example", token_file=token_file).token == PAT
    env = {"GITLAB_URL": "https://gl.example", "GITLAB_TOKEN": PAT + ending}
    assert resolve_connection(env=env).token == PAT


@pytest.mark.parametrize(
    "raw",
    [
        PAT + "\nx\n",  # the reproduction
        PAT + "\n\n",
        " " + PAT,
        PAT + " ",
        PAT[:10] + "\t" + PAT[10:],
        PAT + "\r",
        PAT[:10] + "\x00" + PAT[10:],
        PAT[:10] + "\x1b" + PAT[10:],
    ],
)
def test_other_whitespace_or_control_characters_are_a_usage_error(tmp_path: Path, raw: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(raw.encode())
    for kwargs in (
        {"url": "https://gl.example", "token_file": token_file, "env": {}},
        {"env": {"GITLAB_URL": "https://gl.example", "GITLAB_TOKEN": raw}},
    ):
        with pytest.raises(UsageError) as info:
            resolve_connection(**kwargs)  # type: ignore[arg-type]
        text = info.value.message + (info.value.hint or "")
        assert info.value.exit_code == 2
        assert info.value.hint
        assert PAT[6:] not in text
        assert not contains_secret(text)


def test_an_unused_bad_environment_token_does_not_matter(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(PAT)
    env = {"GITLAB_TOKEN": "glpat-bad\nvalue"}
    assert resolve_connection(url="https://gl.example", token_file=token_file, env=env).token == PAT


def test_non_utf8_or_directory_token_file_is_a_usage_error(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"glpat-\xff\xfe000000000000")
    with pytest.raises(UsageError, match="not UTF-8"):
        resolve_connection(url="https://gl.example", token_file=token_file, env={})
    with pytest.raises(UsageError, match="not a regular file"):
        resolve_connection(url="https://gl.example", token_file=tmp_path, env={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        resolve_connection(url="https://gl.example", token_file=tmp_path / "empty", env={})


def test_check_token_names_the_source_not_the_value() -> None:
    with pytest.raises(UsageError) as info:
        check_token(PAT + "\nsecond-line", "GITLAB_TOKEN")
    assert "GITLAB_TOKEN" in info.value.message
    assert "line break" in info.value.message
    assert "second-line" not in info.value.message
