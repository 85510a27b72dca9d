"""Getting the job's sources with real git, as gitlab-runner's ``get_sources`` stage does.

``git init``, ``git remote add origin <url>``, ``git fetch origin <refspecs> --depth N --prune
--quiet``, ``git checkout -f -q <sha>``, ``git clean -ffdx``. The job token never appears in the
argv of any process: the remote URL carries no credentials and git gets them, only after the
server's 401 challenge, from a credential helper that reads an environment variable of the git
process. git's own stderr goes to the job log (masked).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from provisioner.sandbox_runner.job import Job
from provisioner.sandbox_runner.process import ProcessOutcome, StopCheck, run_process
from provisioner.sandbox_runner.protocol import PROTOCOL_VERSION
from provisioner.sandbox_runner.trace import JobTrace

TOKEN_ENV = "RUNNERCTL_GIT_JOB_TOKEN"  # noqa: S105 - a variable name, not a secret
# Runs as `sh -c '<helper> get'`: the argv holds this text, never the token itself.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; echo username=gitlab-ci-token; '
    f'echo "password=${{{TOKEN_ENV}}}"; }}; f'
)
_USERINFO_RE = re.compile(r"^[^@/]*@")


def strip_credentials(url: str) -> str:
    """``http://gitlab-ci-token:tok@host/p.git`` -> ``http://host/p.git``."""
    parts = urlsplit(url)
    netloc = _USERINFO_RE.sub("", parts.netloc)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def clone_url_for(job: Job, clone_url: str | None) -> str:
    """The URL git fetches from: ``clone_url`` from config.toml replaces the host part."""
    if clone_url:
        return f"{strip_credentials(clone_url).rstrip('/')}/{job.project_path}.git"
    return strip_credentials(job.git.repo_url)


def git_env(base: Mapping[str, str], token: str) -> dict[str, str]:
    """The environment of every git process: no prompts, no user/system config, our helper."""
    env = dict(base)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_COUNT": "4",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper",
            "GIT_CONFIG_VALUE_1": CREDENTIAL_HELPER,
            "GIT_CONFIG_KEY_2": "init.defaultBranch",
            "GIT_CONFIG_VALUE_2": "main",
            # With `--user`, the build dir belongs to the job's user after the first job; the
            # runner's own fetch into it must not stop at git's "dubious ownership" check.
            "GIT_CONFIG_KEY_3": "safe.directory",
            "GIT_CONFIG_VALUE_3": "*",
            TOKEN_ENV: token,
        }
    )
    return env


def fetch_sources(
    job: Job,
    *,
    host_dir: Path,
    shown_dir: str,
    clone_url: str | None,
    base_env: Mapping[str, str],
    trace: JobTrace,
    timeout: float,
    should_stop: StopCheck,
    umask: int = -1,
) -> ProcessOutcome:
    """Fetch and check out ``job``'s commit into ``host_dir``; the first failing git's outcome."""
    strategy = (job.variable("GIT_STRATEGY") or "fetch").lower()
    if strategy == "none":
        trace.line("Skipping Git repository setup")
        host_dir.mkdir(parents=True, exist_ok=True)
        return ProcessOutcome(0)
    env = git_env(base_env, job.token)
    url = clone_url_for(job, clone_url)
    trace.masker.add(job.token)

    def write(text: str) -> None:
        trace.write(text.replace(str(host_dir), shown_dir))

    def git(*args: str, cwd: Path = host_dir) -> ProcessOutcome:
        return run_process(
            ["git", *args],
            cwd=cwd,
            env=env,
            write=write,
            timeout=timeout,
            should_stop=should_stop,
            umask=umask,
        )

    if job.git.depth > 0:
        trace.line(f"Fetching changes with git depth set to {job.git.depth}...")
    else:
        trace.line("Fetching changes...")
    fresh = strategy == "clone" or not (host_dir / ".git").is_dir()
    if fresh and host_dir.exists():
        import shutil

        shutil.rmtree(host_dir, ignore_errors=True)
    host_dir.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str, ...]] = [("init", str(host_dir))]
    if fresh:
        steps.append(("remote", "add", "origin", url))
    else:
        steps.append(("remote", "set-url", "origin", url))
    for argv in steps:
        outcome = git(*argv)
        if outcome.exit_code != 0 or outcome.stopped or outcome.timed_out:
            return outcome
    trace.line("Created fresh repository." if fresh else "Reusing existing repository.")
    fetch = [
        "-c",
        f"http.userAgent=gitlab-runner {PROTOCOL_VERSION} linux/amd64",
        "fetch",
        "origin",
        "--no-recurse-submodules",
        *job.git.refspecs,
    ]
    if job.git.depth > 0:
        fetch += ["--depth", str(job.git.depth)]
    fetch += ["--prune", "--quiet"]
    outcome = git(*fetch)
    if outcome.exit_code != 0 or outcome.stopped or outcome.timed_out:
        return outcome
    ref_kind = "tag" if job.git.ref_type == "tag" else "ref"
    trace.line(f"Checking out {job.git.sha[:8]} as detached HEAD ({ref_kind} is {job.git.ref})...")
    outcome = git("-c", "advice.detachedHead=false", "checkout", "-f", "-q", job.git.sha)
    if outcome.exit_code != 0 or outcome.stopped or outcome.timed_out:
        return outcome
    flags = (job.variable("GIT_CLEAN_FLAGS") or "-ffdx").split()
    if flags != ["none"]:
        outcome = git("clean", *flags)
        if outcome.exit_code != 0:
            return outcome
    trace.line("Skipping Git submodules setup")
    return ProcessOutcome(0)
