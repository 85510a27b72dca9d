"""Facts about the place a job runs, gathered by one standard-library script.

doctor runs this file's source with ``python3 -`` where the job ran: on the runner host (locally
or over SSH) and, for the docker executor, inside a throwaway container on the runner's network.
It reads its request from the ``REQUEST`` line below (rewritten before it is sent; it never
holds a token) and prints one JSON document of facts. It must stay importable by itself: no
imports from runnerctl.
"""

import _ssl
import getpass
import grp
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime
from typing import Any

REQUEST: dict = {}  # type: ignore[type-arg]  # replaced by the caller


def _dns(host: str) -> dict[str, Any]:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "addresses": sorted({i[4][0] for i in infos})}


def _tcp(host: str, port: int) -> dict[str, Any]:
    try:
        with socket.create_connection((host, port), timeout=5):
            return {"ok": True}
    except OSError as exc:
        return {"ok": False, "error": str(exc)}


def _peer_cert(host: str, port: int) -> dict[str, Any]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(ssl.DER_cert_to_PEM_cert(der or b""))
    try:
        decoded = _ssl._test_decode_cert(handle.name)  # type: ignore[attr-defined]
    finally:
        os.unlink(handle.name)
    issuer = ", ".join("=".join(part) for rdn in decoded.get("issuer", ()) for part in rdn)
    return {"issuer": issuer, "not_after": decoded.get("notAfter", "")}


def _tls(host: str, port: int, ca_file: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"ca_file": ca_file or "system store"}
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
        with (
            socket.create_connection((host, port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            result["ok"] = True
            return result
    except (OSError, ssl.SSLError) as exc:
        result.update(ok=False, error=str(exc))
    try:
        result.update(_peer_cert(host, port))
    except (OSError, ssl.SSLError, ValueError) as exc:
        result["cert_error"] = str(exc)
    return result


def _endpoints() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for key in ("url", "clone_url"):
        value = REQUEST.get(key)
        if not value:
            continue
        parts = urllib.parse.urlsplit(value)
        default = 443 if parts.scheme == "https" else 80
        found[key] = {
            "host": parts.hostname or "",
            "port": parts.port or default,
            "scheme": parts.scheme,
        }
    return found


def _dir(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    info: dict[str, Any] = {"path": path, "exists": os.path.isdir(path)}
    probe = path if info["exists"] else os.path.dirname(path.rstrip("/")) or "/"
    try:
        st = os.stat(probe)
        vfs = os.statvfs(probe)
    except OSError as exc:
        info["error"] = str(exc)
        return info
    info.update(
        owner_uid=st.st_uid,
        owner=_user_name(st.st_uid),
        mode=oct(st.st_mode & 0o7777),
        writable=os.access(probe, os.W_OK),
        free_bytes=vfs.f_bavail * vfs.f_frsize,
        free_inodes=vfs.f_favail,
    )
    return info


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _git() -> dict[str, Any]:
    try:
        version = subprocess.run(
            ["git", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        safe = subprocess.run(
            ["git", "config", "--global", "--get-all", "safe.directory"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError as exc:
        return {"error": str(exc)}
    return {"version": version, "safe_directory": safe.stdout.split()}


def _user_can(user: str, st: os.stat_result) -> bool | None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    if entry.pw_uid in {0, st.st_uid}:
        return True
    groups = {g.gr_gid for g in grp.getgrall() if user in g.gr_mem} | {entry.pw_gid}
    return st.st_gid in groups and bool(st.st_mode & 0o060 == 0o060)


def _docker_socket(path: str) -> dict[str, Any]:
    info: dict[str, Any] = {"path": path, "exists": os.path.exists(path)}
    if not info["exists"]:
        return info
    st = os.stat(path)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    users = {getpass.getuser()} | set(REQUEST.get("users", ()))
    info.update(
        mode=oct(st.st_mode & 0o777),
        owner=_user_name(st.st_uid),
        group=group,
        usable={u: _user_can(u, st) for u in sorted(users)},
    )
    return info


def _selinux() -> str | None:
    try:
        with open("/sys/fs/selinux/enforce", encoding="ascii") as handle:
            return "enforcing" if handle.read().strip() == "1" else "permissive"
    except OSError:
        return None


def _clock(url: str | None) -> dict[str, Any] | None:
    if not url:
        return None
    # Only the Date header is read: no verification, so a missing tls-ca-file cannot stop it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if not url.startswith(("http://", "https://")):
        return {"error": f"not an http(s) URL: {url}"}
    request = urllib.request.Request(url.rstrip("/") + "/api/v4/version", method="HEAD")  # noqa: S310 (scheme checked above)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            date = response.headers.get("Date")
    except urllib.error.HTTPError as exc:
        date = exc.headers.get("Date")
    except OSError as exc:
        return {"error": str(exc)}
    if not date:
        return {"error": "no Date header"}
    return {
        "date": date,
        "skew_seconds": round(time.time() - parsedate_to_datetime(date).timestamp(), 1),
    }


def _proxy() -> dict[str, str]:
    seen: dict[str, str] = {}
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        value = os.environ.get(name)
        if value:
            parts = urllib.parse.urlsplit(value)
            if parts.password:
                value = value.replace(parts.password, "[MASKED]")
            seen[name] = value
    return seen


def _journal(request: dict[str, Any]) -> dict[str, Any]:
    """The runner's own log: the last lines of its systemd unit's journal."""
    unit = request.get("unit", "gitlab-runner.service")
    if shutil.which("journalctl") is None:
        return {"skipped": "journalctl is not installed (no systemd journal to read)"}
    if shutil.which("systemctl") is not None:
        shown = subprocess.run(
            ["systemctl", "show", "--property=LoadState", "--value", unit],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if shown.returncode != 0:
            reason = (shown.stderr.strip() or f"exit {shown.returncode}").splitlines()[0]
            return {"skipped": f"systemd cannot be asked about {unit}: {reason}"}
        state = shown.stdout.strip()
        if state in {"not-found", "masked"}:
            return {"skipped": f"the unit {unit} does not exist on this host ({state})"}
    command = ["journalctl", f"--unit={unit}", "-n", str(request.get("lines", 200))]
    command += ["--no-pager", "--output=short-iso"]
    command += [f"--{key}={request[key]}" for key in ("since", "until") if request.get(key)]
    # The journal of a system unit is readable by root and the adm/systemd-journal groups.
    attempts = [command]
    if os.geteuid() != 0 and shutil.which("sudo") is not None:
        attempts.insert(0, ["sudo", "-n", *command])
    error = ""
    for attempt in attempts:
        done = subprocess.run(attempt, capture_output=True, text=True, timeout=30, check=False)
        limited = "insufficient permissions" in done.stderr or "not seeing messages" in done.stderr
        if done.returncode == 0 and not limited:
            lines = [ln for ln in done.stdout.splitlines() if not ln.startswith("-- ")]
            return {"command": " ".join(command), "unit": unit, "lines": lines}
        error = (done.stderr.strip() or f"exit {done.returncode}").splitlines()[0]
    return {"skipped": f"cannot read the journal of {unit}: {error}"}


def main() -> None:
    endpoints = _endpoints()
    facts: dict[str, Any] = {
        "where": REQUEST.get("where", "host"),
        "user": getpass.getuser(),
        "endpoints": {},
        "proxy": _proxy(),
        "selinux": _selinux(),
        "git": _git(),
    }
    for key, ep in endpoints.items():
        entry = {"host": ep["host"], "port": ep["port"], "dns": _dns(ep["host"])}
        if entry["dns"]["ok"]:
            entry["tcp"] = _tcp(ep["host"], ep["port"])
            if ep["scheme"] == "https" and entry["tcp"]["ok"]:
                entry["tls"] = _tls(ep["host"], ep["port"], REQUEST.get("ca_file"))
        facts["endpoints"][key] = entry
    facts["dirs"] = {k: _dir(v) for k, v in REQUEST.get("dirs", {}).items()}
    facts["docker_socket"] = _docker_socket(REQUEST.get("socket", "/var/run/docker.sock"))
    facts["clock"] = _clock(REQUEST.get("url"))
    if REQUEST.get("journal"):
        facts["journal"] = _journal(REQUEST["journal"])
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
