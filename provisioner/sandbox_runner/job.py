"""The job a runner received: the JobResponse of ``POST /jobs/request``, as frozen dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variable:
    """One job variable (``spec.Variable``)."""

    key: str
    value: str
    public: bool = True
    masked: bool = False
    file: bool = False
    raw: bool = False


@dataclass(frozen=True)
class Step:
    """``script`` or ``after_script``: commands, timeout, when."""

    name: str
    script: tuple[str, ...]
    timeout: int
    when: str = "on_success"
    allow_failure: bool = False


@dataclass(frozen=True)
class ArtifactSpec:
    """One ``artifacts[]`` entry: the archive or a report."""

    name: str
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    untracked: bool = False
    when: str = "on_success"
    artifact_type: str = "archive"
    artifact_format: str = "zip"
    expire_in: str | None = None


@dataclass(frozen=True)
class Dependency:
    """A job whose artifacts this job downloads before its script."""

    id: int
    name: str
    token: str
    has_artifacts: bool


@dataclass(frozen=True)
class GitInfo:
    """``git_info``: where and what to fetch."""

    repo_url: str
    ref: str
    sha: str
    ref_type: str
    refspecs: tuple[str, ...]
    depth: int


@dataclass(frozen=True)
class Job:
    """Everything the runner needs to run one job."""

    id: int
    token: str
    name: str
    stage: str
    project_id: int
    project_path: str
    git: GitInfo
    timeout: int
    variables: tuple[Variable, ...]
    steps: tuple[Step, ...]
    image: str | None
    image_entrypoint: tuple[str, ...] | None
    image_pull_policy: tuple[str, ...]
    artifacts: tuple[ArtifactSpec, ...]
    dependencies: tuple[Dependency, ...]
    failure_reasons: frozenset[str]
    token_mask_prefixes: tuple[str, ...]
    services: tuple[str, ...] = ()

    def variable(self, key: str) -> str | None:
        """The last value of ``key`` (later definitions win, as in GitLab)."""
        found = None
        for var in self.variables:
            if var.key == key:
                found = var.value
        return found

    def step(self, name: str) -> Step | None:
        """The step called ``name``, if the job has one."""
        return next((s for s in self.steps if s.name == name), None)

    @property
    def masked_values(self) -> tuple[str, ...]:
        """Values to hide in the trace."""
        return tuple(v.value for v in self.variables if v.masked and v.value)


def _strs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value if v is not None)
    return ()


def _project_path(payload: Mapping[str, Any], variables: tuple[Variable, ...]) -> str:
    info = payload.get("job_info") or {}
    if info.get("project_full_path"):
        return str(info["project_full_path"])
    for var in variables:
        if var.key == "CI_PROJECT_PATH":
            return var.value
    return f"project-{info.get('project_id', 0)}"


def parse_job(payload: Mapping[str, Any]) -> Job:
    """Decode a JobResponse (unknown keys are ignored, as the Go decoder does)."""
    variables = tuple(
        Variable(
            key=str(v.get("key", "")),
            value="" if v.get("value") is None else str(v.get("value")),
            public=bool(v.get("public", True)),
            masked=bool(v.get("masked", False)),
            file=bool(v.get("file", False)),
            raw=bool(v.get("raw", False)),
        )
        for v in payload.get("variables") or []
        if isinstance(v, dict) and v.get("key")
    )
    runner_info = payload.get("runner_info") or {}
    timeout = int(runner_info.get("timeout") or 3600)
    steps = tuple(
        Step(
            name=str(s.get("name", "script")),
            script=_strs(s.get("script")),
            timeout=int(s.get("timeout") or timeout),
            when=str(s.get("when") or "on_success"),
            allow_failure=bool(s.get("allow_failure", False)),
        )
        for s in payload.get("steps") or []
        if isinstance(s, dict)
    )
    git = payload.get("git_info") or {}
    image = payload.get("image") or None
    entry = image.get("entrypoint") if isinstance(image, dict) else None
    policy = image.get("pull_policy") if isinstance(image, dict) else None
    artifacts = tuple(
        ArtifactSpec(
            name=str(a.get("name") or ""),
            paths=_strs(a.get("paths")),
            exclude=_strs(a.get("exclude")),
            untracked=bool(a.get("untracked", False)),
            when=str(a.get("when") or "on_success"),
            artifact_type=str(a.get("artifact_type") or "archive"),
            artifact_format=str(a.get("artifact_format") or "zip"),
            expire_in=str(a["expire_in"]) if a.get("expire_in") else None,
        )
        for a in payload.get("artifacts") or []
        if isinstance(a, dict)
    )
    deps = tuple(
        Dependency(
            id=int(d["id"]),
            name=str(d.get("name", "")),
            token=str(d.get("token") or payload.get("token") or ""),
            has_artifacts=bool(d.get("artifacts_file")),
        )
        for d in payload.get("dependencies") or []
        if isinstance(d, dict) and "id" in d
    )
    features = payload.get("features") or {}
    info = payload.get("job_info") or {}
    return Job(
        id=int(payload["id"]),
        token=str(payload["token"]),
        name=str(info.get("name", "")),
        stage=str(info.get("stage", "")),
        project_id=int(info.get("project_id") or 0),
        project_path=_project_path(payload, variables),
        git=GitInfo(
            repo_url=str(git.get("repo_url", "")),
            ref=str(git.get("ref", "")),
            sha=str(git.get("sha", "")),
            ref_type=str(git.get("ref_type", "branch")),
            refspecs=_strs(git.get("refspecs")),
            depth=int(git.get("depth") or 0),
        ),
        timeout=timeout,
        variables=variables,
        steps=steps,
        image=str(image["name"]) if isinstance(image, dict) and image.get("name") else None,
        image_entrypoint=_strs(entry) if entry else None,
        image_pull_policy=_strs(policy),
        artifacts=artifacts,
        dependencies=deps,
        failure_reasons=frozenset(_strs(features.get("failure_reasons"))),
        token_mask_prefixes=_strs(features.get("token_mask_prefixes")),
        services=tuple(
            str(s.get("name")) for s in payload.get("services") or [] if isinstance(s, dict)
        ),
    )
