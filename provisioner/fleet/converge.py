"""``fleet apply`` end to end: lock, observe, plan (or check a saved plan), apply.

The lock is taken before anything is read, so the state a plan rests on cannot be changed by a
second apply between the observation and the writes. A saved plan (``--plan-file``) is applied
only when the state observed now is the one it was made from (same digest); otherwise the apply
is refused (exit 13) and nothing is changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from provisioner.errors import UsageError
from provisioner.events import NULL_REPORTER, Reporter
from provisioner.fleet.apply import (
    ActionFinished,
    ApplyResult,
    ApplySettings,
    FleetGitLab,
    FleetHosts,
    apply,
)
from provisioner.fleet.lock import FleetRefusedError, fleet_lock
from provisioner.fleet.model import PLAN_FORMAT, Fleet, FleetPlan, Observed

ObserveFn = Callable[[Fleet], Observed]
PlanFn = Callable[[Fleet, Observed, Sequence[str], datetime], FleetPlan]


@dataclass(frozen=True)
class Converged:
    """The plan that was applied and how each of its actions came out."""

    plan: FleetPlan
    result: ApplyResult


def converge(
    fleet: Fleet,
    *,
    observe: ObserveFn,
    make_plan: PlanFn,
    gitlab: FleetGitLab,
    hosts: FleetHosts,
    plan_file: Path | None = None,
    adopt: Sequence[str] = (),
    settings: ApplySettings | None = None,
    lock_dir: Path | None = None,
    report: Reporter[ActionFinished] = NULL_REPORTER,
    approve: Callable[[FleetPlan], bool] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Converged:
    """Hold the fleet's lock, observe, plan (or check ``plan_file``) and apply.

    ``approve`` (when given) is asked with the plan before anything is changed; a no ends the
    run without a change.

    Raises:
        FleetRefusedError: another apply holds the lock, or the saved plan is stale (exit 13).
        UsageError: the plan file is unreadable or belongs to another fleet, or the plan
            was not approved (exit 2).
    """
    saved = read_plan(plan_file) if plan_file is not None else None
    if saved is not None and saved.fleet != fleet.name:
        raise UsageError(
            f"{plan_file} is a plan of fleet {saved.fleet!r}, not {fleet.name!r}.",
            hint="Pass the plan file written by `runnerctl fleet plan` for this FLEET.toml.",
        )
    base = settings or ApplySettings()
    with fleet_lock(fleet.name, lock_dir):
        observed = observe(fleet)
        if saved is not None:
            if observed.digest() != saved.state_digest:
                raise FleetRefusedError(
                    f"The state of fleet {fleet.name!r} changed since {plan_file} was made; "
                    "nothing was applied.",
                    hint="Run `runnerctl fleet plan --out PLAN.json` again, review it, and "
                    "apply the new plan.",
                )
            plan, since = saved, saved.created_at
        else:
            plan = make_plan(fleet, observed, adopt, now())
            since = observed.observed_at
        if approve is not None and plan.actions and not approve(plan):
            raise UsageError(
                "Apply cancelled; nothing was changed.",
                hint="Pass --auto-approve to apply without asking.",
            )
        result = apply(
            fleet,
            plan,
            observed,
            gitlab=gitlab,
            hosts=hosts,
            settings=ApplySettings(
                parallel=base.parallel,
                reconnect_timeout=base.reconnect_timeout,
                poll_interval=base.poll_interval,
                unmodified_since=base.unmodified_since or since,
            ),
            report=report,
            now=now,
        )
    return Converged(plan, result)


def read_plan(path: Path) -> FleetPlan:
    """A plan file (``fleet plan --out``), or a :class:`UsageError` saying what is wrong."""
    hint = "Write it with `runnerctl fleet plan FLEET.toml --out PLAN.json`."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", hint=hint) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{path} is not a fleet plan (not JSON)", hint=hint) from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise UsageError(f"{path} is not a fleet plan of format {PLAN_FORMAT}", hint=hint)
    try:
        return FleetPlan.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: malformed fleet plan ({exc})", hint=hint) from None
