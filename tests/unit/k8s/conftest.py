"""A config.toml holding kubernetes runners exactly as ``runnerctl register`` writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.registration.executors import (
    Executor,
    ExecutorConfig,
    KubernetesOptions,
    executor_settings,
)
from provisioner.runner_config import ConfigDocument

TOKEN = "glrt-k8sUnitTestToken0123"
SERVICES_TOKEN = "glrt-k8sServicesToken4567"
URL = "https://gitlab.example.com"


def kube_entry(name: str, token: str, **options: Any) -> dict[str, Any]:
    """The ``[[runners]]`` entry register writes for a kubernetes runner."""
    settings = executor_settings(
        ExecutorConfig(Executor.KUBERNETES, kubernetes=KubernetesOptions(**options))
    )
    return {"name": name, "url": URL, "id": 41, "token": token, **settings}


@pytest.fixture
def document() -> ConfigDocument:
    """Two kubernetes runners (one allowing services) and a shell runner."""
    doc = ConfigDocument.empty()
    doc.set_global("concurrent", 6)
    doc.set_global("check_interval", 5)
    doc.add_runner(kube_entry("k8s-plain", TOKEN, namespace="ci-jobs"))
    services = kube_entry("k8s-services", SERVICES_TOKEN, allowed_services=("postgres:16",))
    services["id"] = 42
    doc.add_runner(services)
    doc.add_runner(
        {"name": "shell-1", "url": URL, "id": 43, "token": "glrt-shell", "executor": "shell"}
    )
    return doc


@pytest.fixture
def config_file(tmp_path: Path, document: ConfigDocument) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(document.dumps(), encoding="utf-8")
    path.chmod(0o600)
    return path
