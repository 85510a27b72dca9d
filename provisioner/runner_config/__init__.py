"""gitlab-runner's config.toml: typed model, round-tripping edits, validation, security lint,
semantic diff and a store that writes atomically under a lock.

Typical use by other domains (registration, token rotation, the stand-in runner)::

    store = ConfigStore(settings.default_config_path())
    store.update(lambda doc: doc.add_runner({"name": "ci-1", "url": url, "token": token,
                                              "executor": "shell"}), create=True)
    store.update(lambda doc: doc.update_runner(RunnerRef(id=42), {"token": new,
                                               "token_obtained_at": now}))
    config = build_model(store.load().plain())
"""

from provisioner.runner_config.diff import ConfigDiff, KeyChange, RunnerDiff, diff_documents
from provisioner.runner_config.document import (
    RUNNER_OWNED_KEYS,
    ConfigDocument,
    ConfigSyntaxError,
    Location,
    RunnerNotFoundError,
    RunnerRef,
)
from provisioner.runner_config.lint import Finding, Severity, at_or_above, lint_document
from provisioner.runner_config.model import (
    CacheSettings,
    CustomBuildDir,
    DockerSettings,
    GlobalSettings,
    HostPathVolume,
    KubernetesSettings,
    Runner,
    RunnerConfig,
    SessionServer,
    build_model,
    to_jsonable,
)
from provisioner.runner_config.store import (
    ConfigStore,
    UpdateResult,
    load_config,
    read_config_text,
)
from provisioner.runner_config.validate import (
    Issue,
    IssueSeverity,
    ValidationReport,
    validate_text,
)

__all__ = [
    "RUNNER_OWNED_KEYS",
    "CacheSettings",
    "ConfigDiff",
    "ConfigDocument",
    "ConfigStore",
    "ConfigSyntaxError",
    "CustomBuildDir",
    "DockerSettings",
    "Finding",
    "GlobalSettings",
    "HostPathVolume",
    "Issue",
    "IssueSeverity",
    "KeyChange",
    "KubernetesSettings",
    "Location",
    "Runner",
    "RunnerConfig",
    "RunnerDiff",
    "RunnerNotFoundError",
    "RunnerRef",
    "SessionServer",
    "Severity",
    "UpdateResult",
    "ValidationReport",
    "at_or_above",
    "build_model",
    "diff_documents",
    "lint_document",
    "load_config",
    "read_config_text",
    "to_jsonable",
    "validate_text",
]
