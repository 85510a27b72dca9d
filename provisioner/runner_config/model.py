"""A typed, read-only view of config.toml (frozen dataclasses).

The tomlkit document stays the source of truth (see :mod:`.document`); this model is what the
rest of runnerctl reads. Keys are resolved the way gitlab-runner resolves them (exact name, then
case-insensitive), values of the wrong type read as unset, and every key the model has no field
for is kept in ``extra`` so nothing is lost when it is shown or compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime, time
from typing import Any

from provisioner.runner_config.schema import canonicalize
from provisioner.secrets import MASK, redact

# Keys whose values are credentials, wherever they appear.
SECRET_KEYS = frozenset(
    {
        "token",
        "bearer_token",
        "AccessKey",
        "SecretKey",
        "SessionToken",
        "PrivateKey",
        "AccountKey",
        "password",
        "sentry_dsn",
    }
)


@dataclass(frozen=True)
class SessionServer:
    """``[session_server]``: the interactive web terminal endpoint."""

    listen_address: str | None = None
    advertise_address: str | None = None
    session_timeout: int | None = None


@dataclass(frozen=True)
class GlobalSettings:
    """The root table of config.toml."""

    concurrent: int | None = None
    check_interval: int | None = None
    log_level: str | None = None
    log_format: str | None = None
    shutdown_timeout: int | None = None
    listen_address: str | None = None
    connection_max_age: str | int | None = None
    session_server: SessionServer | None = None


@dataclass(frozen=True)
class DockerSettings:
    """``[runners.docker]``."""

    host: str | None = None
    tls_verify: bool | None = None
    tls_cert_path: str | None = None
    image: str | None = None
    privileged: bool | None = None
    services_privileged: bool | None = None
    volumes: tuple[str, ...] = ()
    pull_policy: tuple[str, ...] = ()
    allowed_images: tuple[str, ...] | None = None
    allowed_services: tuple[str, ...] | None = None
    allowed_pull_policies: tuple[str, ...] | None = None
    allowed_privileged_images: tuple[str, ...] | None = None
    network_mode: str | None = None
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    user: str | None = None
    helper_image: str | None = None
    disable_cache: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostPathVolume:
    """``[[runners.kubernetes.volumes.host_path]]``."""

    name: str | None = None
    host_path: str | None = None
    mount_path: str | None = None
    read_only: bool | None = None


@dataclass(frozen=True)
class KubernetesSettings:
    """``[runners.kubernetes]``."""

    host: str | None = None
    namespace: str | None = None
    image: str | None = None
    privileged: bool | None = None
    pull_policy: tuple[str, ...] = ()
    allowed_images: tuple[str, ...] | None = None
    allowed_services: tuple[str, ...] | None = None
    allowed_pull_policies: tuple[str, ...] | None = None
    service_account: str | None = None
    bearer_token: str | None = None
    bearer_token_overwrite_allowed: bool | None = None
    host_path_volumes: tuple[HostPathVolume, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CacheSettings:
    """``[runners.cache]`` (gitlab-runner spells these keys in PascalCase)."""

    type: str | None = None
    path: str | None = None
    shared: bool | None = None
    max_uploaded_archive_size: int | None = None
    s3: Mapping[str, Any] | None = None
    gcs: Mapping[str, Any] | None = None
    azure: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomBuildDir:
    """``[runners.custom_build_dir]``."""

    enabled: bool | None = None


@dataclass(frozen=True)
class Runner:
    """One ``[[runners]]`` entry, with the shell executor's settings at its top level."""

    name: str | None = None
    url: str | None = None
    id: int | None = None
    token: str | None = None
    token_obtained_at: datetime | None = None
    token_expires_at: datetime | None = None
    executor: str | None = None
    shell: str | None = None
    builds_dir: str | None = None
    cache_dir: str | None = None
    clone_url: str | None = None
    environment: tuple[str, ...] = ()
    limit: int | None = None
    request_concurrency: int | None = None
    output_limit: int | None = None
    pre_get_sources_script: str | None = None
    pre_build_script: str | None = None
    post_build_script: str | None = None
    docker: DockerSettings | None = None
    kubernetes: KubernetesSettings | None = None
    cache: CacheSettings | None = None
    custom_build_dir: CustomBuildDir | None = None
    feature_flags: Mapping[str, bool] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How to name this runner to a person: its name, else its id, else its URL."""
        if self.name:
            return self.name
        if self.id:
            return f"id {self.id}"
        return self.url or "(unnamed)"


@dataclass(frozen=True)
class RunnerConfig:
    """The whole file: global settings and the runners, in file order."""

    settings: GlobalSettings
    runners: tuple[Runner, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- building


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return str(value) if isinstance(value, str) else None


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    return value if isinstance(value, bool) else None


def _strs(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _opt_strs(data: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    return _strs(data, key) if key in data else None


def _table(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return value if isinstance(value, dict) else None


def _datetime(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _extra(data: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in known}


def _docker(data: dict[str, Any]) -> DockerSettings:
    kwargs: dict[str, Any] = {
        "host": _str(data, "host"),
        "tls_verify": _bool(data, "tls_verify"),
        "tls_cert_path": _str(data, "tls_cert_path"),
        "image": _str(data, "image"),
        "privileged": _bool(data, "privileged"),
        "services_privileged": _bool(data, "services_privileged"),
        "volumes": _strs(data, "volumes"),
        "pull_policy": _strs(data, "pull_policy"),
        "allowed_images": _opt_strs(data, "allowed_images"),
        "allowed_services": _opt_strs(data, "allowed_services"),
        "allowed_pull_policies": _opt_strs(data, "allowed_pull_policies"),
        "allowed_privileged_images": _opt_strs(data, "allowed_privileged_images"),
        "network_mode": _str(data, "network_mode"),
        "cap_add": _strs(data, "cap_add"),
        "security_opt": _strs(data, "security_opt"),
        "devices": _strs(data, "devices"),
        "user": _str(data, "user"),
        "helper_image": _str(data, "helper_image"),
        "disable_cache": _bool(data, "disable_cache"),
    }
    return DockerSettings(**kwargs, extra=_extra(data, set(kwargs)))


def _kubernetes(data: dict[str, Any]) -> KubernetesSettings:
    volumes = _table(data, "volumes") or {}
    host_paths = volumes.get("host_path")
    kwargs: dict[str, Any] = {
        "host": _str(data, "host"),
        "namespace": _str(data, "namespace"),
        "image": _str(data, "image"),
        "privileged": _bool(data, "privileged"),
        "pull_policy": _strs(data, "pull_policy"),
        "allowed_images": _opt_strs(data, "allowed_images"),
        "allowed_services": _opt_strs(data, "allowed_services"),
        "allowed_pull_policies": _opt_strs(data, "allowed_pull_policies"),
        "service_account": _str(data, "service_account"),
        "bearer_token": _str(data, "bearer_token"),
        "bearer_token_overwrite_allowed": _bool(data, "bearer_token_overwrite_allowed"),
        "host_path_volumes": tuple(
            HostPathVolume(
                name=_str(v, "name"),
                host_path=_str(v, "host_path"),
                mount_path=_str(v, "mount_path"),
                read_only=_bool(v, "read_only"),
            )
            for v in (host_paths if isinstance(host_paths, list) else [])
            if isinstance(v, dict)
        ),
    }
    return KubernetesSettings(**kwargs, extra=_extra(data, set(kwargs)))


def _cache(data: dict[str, Any]) -> CacheSettings:
    known = {"Type", "Path", "Shared", "MaxUploadedArchiveSize", "s3", "gcs", "azure"}
    return CacheSettings(
        type=_str(data, "Type"),
        path=_str(data, "Path"),
        shared=_bool(data, "Shared"),
        max_uploaded_archive_size=_int(data, "MaxUploadedArchiveSize"),
        s3=_table(data, "s3"),
        gcs=_table(data, "gcs"),
        azure=_table(data, "azure"),
        extra=_extra(data, known),
    )


def _runner(data: dict[str, Any]) -> Runner:
    docker = _table(data, "docker")
    kubernetes = _table(data, "kubernetes")
    cache = _table(data, "cache")
    custom = _table(data, "custom_build_dir")
    flags = _table(data, "feature_flags") or {}
    kwargs: dict[str, Any] = {
        "name": _str(data, "name"),
        "url": _str(data, "url"),
        "id": _int(data, "id"),
        "token": _str(data, "token"),
        "token_obtained_at": _datetime(data, "token_obtained_at"),
        "token_expires_at": _datetime(data, "token_expires_at"),
        "executor": _str(data, "executor"),
        "shell": _str(data, "shell"),
        "builds_dir": _str(data, "builds_dir"),
        "cache_dir": _str(data, "cache_dir"),
        "clone_url": _str(data, "clone_url"),
        "environment": _strs(data, "environment"),
        "limit": _int(data, "limit"),
        "request_concurrency": _int(data, "request_concurrency"),
        "output_limit": _int(data, "output_limit"),
        "pre_get_sources_script": _str(data, "pre_get_sources_script"),
        "pre_build_script": _str(data, "pre_build_script"),
        "post_build_script": _str(data, "post_build_script"),
        "docker": _docker(docker) if docker is not None else None,
        "kubernetes": _kubernetes(kubernetes) if kubernetes is not None else None,
        "cache": _cache(cache) if cache is not None else None,
        "custom_build_dir": CustomBuildDir(_bool(custom, "enabled"))
        if custom is not None
        else None,
        "feature_flags": {k: v for k, v in flags.items() if isinstance(v, bool)},
    }
    return Runner(**kwargs, extra=_extra(data, set(kwargs)))


def build_model(plain: dict[str, Any]) -> RunnerConfig:
    """Build the typed model from the document's plain values (see ``ConfigDocument.plain``)."""
    data, _renames = canonicalize(plain)
    session = _table(data, "session_server")
    settings = GlobalSettings(
        concurrent=_int(data, "concurrent"),
        check_interval=_int(data, "check_interval"),
        log_level=_str(data, "log_level"),
        log_format=_str(data, "log_format"),
        shutdown_timeout=_int(data, "shutdown_timeout"),
        listen_address=_str(data, "listen_address"),
        connection_max_age=data.get("connection_max_age")
        if isinstance(data.get("connection_max_age"), str | int)
        else None,
        session_server=SessionServer(
            listen_address=_str(session, "listen_address"),
            advertise_address=_str(session, "advertise_address"),
            session_timeout=_int(session, "session_timeout"),
        )
        if session is not None
        else None,
    )
    runners = data.get("runners")
    built = (
        tuple(_runner(r) for r in runners if isinstance(r, dict))
        if isinstance(runners, list)
        else ()
    )
    known = {f.name for f in fields(GlobalSettings)} | {"runners"}
    return RunnerConfig(settings=settings, runners=built, extra=_extra(data, known))


# --------------------------------------------------------------------------- JSON


def to_jsonable(value: Any, *, mask_secrets: bool = True) -> Any:
    """Plain JSON values for a model object; credentials are replaced by ``[MASKED]``."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _mask(f.name, getattr(value, f.name), mask_secrets) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _mask(str(k), v, mask_secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, mask_secrets=mask_secrets) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and mask_secrets:
        return redact(value)
    return value


def _mask(key: str, value: Any, mask_secrets: bool) -> Any:
    if mask_secrets and key in SECRET_KEYS and isinstance(value, str) and value:
        return MASK
    if mask_secrets and key == "environment" and isinstance(value, list | tuple):
        return [mask_environment_entry(v) if isinstance(v, str) else v for v in value]
    return to_jsonable(value, mask_secrets=mask_secrets)


_SECRETISH = ("TOKEN", "PASSWORD", "SECRET", "PRIVATE_KEY", "ACCESS_KEY", "API_KEY", "CREDENTIAL")


def is_secret_env_name(name: str) -> bool:
    """True for an environment variable name that conventionally holds a credential."""
    upper = name.upper()
    return any(marker in upper for marker in _SECRETISH)


def mask_environment_entry(entry: str) -> str:
    """``NAME=value`` with the value masked when the name or the value looks secret."""
    name, sep, value = entry.partition("=")
    if sep and value and (is_secret_env_name(name) or redact(value) != value):
        return f"{name}={MASK}"
    return redact(entry)
