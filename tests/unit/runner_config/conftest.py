"""Fixtures for the runner_config tests."""

from __future__ import annotations

import pytest

from tests.unit.runner_config.refs import CONFIG_REF


@pytest.fixture
def docker_text() -> str:
    return (CONFIG_REF / "examples" / "docker.config.toml").read_text(encoding="utf-8")


@pytest.fixture
def shell_text() -> str:
    return (CONFIG_REF / "examples" / "shell.config.toml").read_text(encoding="utf-8")
