"""``--on-change CMD``: run the user's command once per status change.

The command line is the user's own, split once into argv (``shlex``), and run without a shell;
the change travels in the environment only, so nothing from GitLab (a project path, a ref) is
ever parsed as shell code or options.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence

from provisioner.monitor.model import Change

log = logging.getLogger(__name__)

HOOK_TIMEOUT = 30.0
# The token runnerctl itself uses is not the hook's business.
SECRET_VARIABLES = frozenset({"GITLAB_TOKEN", "CI_JOB_TOKEN", "COSIGN_PASSWORD"})


def change_environment(change: Change, group: str) -> dict[str, str]:
    """The variables a hook sees for ``change``."""
    return {
        "RUNNERCTL_GROUP": group,
        "RUNNERCTL_PROJECT": change.project,
        "RUNNERCTL_REF": change.ref or "",
        "RUNNERCTL_OLD_STATUS": change.old.value if change.old is not None else "",
        "RUNNERCTL_STATUS": change.new.value if change.new is not None else "",
        "RUNNERCTL_PIPELINE_ID": str(change.pipeline_id or ""),
        "RUNNERCTL_PIPELINE_URL": change.web_url,
    }


def run_hook(
    argv: Sequence[str],
    change: Change,
    *,
    group: str,
    base_env: Mapping[str, str] | None = None,
    timeout: float = HOOK_TIMEOUT,
) -> int | None:
    """Run ``argv`` for one change; its exit status (``None`` if it could not run in time).

    A failing hook is logged, never fatal: the view goes on. ``GITLAB_TOKEN`` and other
    secrets of runnerctl's own environment are not passed on.
    """
    base = os.environ if base_env is None else base_env
    env = {k: v for k, v in base.items() if k not in SECRET_VARIABLES}
    env.update(change_environment(change, group))
    try:
        done = subprocess.run(
            list(argv), env=env, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("--on-change command failed for %s: %s", change.project, exc)
        return None
    if done.returncode != 0:
        log.warning("--on-change command exited %d for %s", done.returncode, change.project)
    return done.returncode
