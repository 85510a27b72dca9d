"""The text view of a fleet plan, in the manner of ``terraform plan``.

Host blocks say what changes on each host (provisioning, config.toml entries); runner blocks
say what changes in GitLab (create, adopt, update, rotate, delete). Symbols: ``+`` add,
``~`` change, ``-`` destroy, ``±`` rotate a token. Runners the fleet does not own are listed as
left alone; unreachable hosts are listed with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.fleet.model import Action, ActionKind, FleetPlan

_RUNNER_KINDS = (
    ActionKind.ADOPT_RUNNER,
    ActionKind.CREATE_RUNNER,
    ActionKind.UPDATE_RUNNER,
    ActionKind.ROTATE_TOKEN,
    ActionKind.DELETE_RUNNER,
)
_VERB = {
    ActionKind.PROVISION_HOST: "provision",
    ActionKind.ADOPT_RUNNER: "adopt",
    ActionKind.CREATE_RUNNER: "create",
    ActionKind.UPDATE_RUNNER: "update",
    ActionKind.ROTATE_TOKEN: "rotate token",
    ActionKind.WRITE_ENTRY: "write entry",
    ActionKind.REMOVE_ENTRY: "remove entry",
    ActionKind.DELETE_RUNNER: "delete",
}


def symbol(action: Action) -> str:
    """``+`` add, ``~`` change, ``-`` destroy, ``±`` rotate."""
    kind = action.kind
    if kind is ActionKind.CREATE_RUNNER or (kind is ActionKind.WRITE_ENTRY and not action.changes):
        return "+"
    if kind in (ActionKind.DELETE_RUNNER, ActionKind.REMOVE_ENTRY):
        return "-"
    if kind is ActionKind.ROTATE_TOKEN:
        return "±"
    return "~"


def summary(result: FleetPlan) -> tuple[int, int, int]:
    """``(to add, to change, to destroy)``, counted as the symbols say."""
    marks = [symbol(a) for a in result.actions]
    return marks.count("+"), marks.count("~") + marks.count("±"), marks.count("-")


def render_plan(result: FleetPlan) -> str:
    """The whole plan as text (ends with the ``Plan:`` summary line)."""
    lines = [
        f"Fleet {result.fleet}: read GitLab in {result.api_requests} API request"
        f"{_s(result.api_requests)} and {result.ssh_sessions} host{_s(result.ssh_sessions)} "
        f"over SSH."
    ]
    hosts = _group(result.actions, by_host=True)
    for host, actions in hosts.items():
        lines += ["", f"host {host}"]
        for a in actions:
            where = f"runner {a.runner}" if a.runner else ""
            lines.append(f"  {symbol(a)} {_VERB[a.kind]}{' ' + where if where else ''}: {a.reason}")
            lines += _changes(a.changes)
    for runner, actions in _group(result.actions, by_host=False).items():
        lines += ["", f"runner {runner}"]
        for a in actions:
            rid = f" #{a.runner_id}" if a.runner_id is not None else ""
            on = f" on {', '.join(a.hosts)}" if a.hosts else ""
            lines.append(f"  {symbol(a)} {_VERB[a.kind]}{rid}{on}: {a.reason}")
            lines += _changes(a.changes)
    if result.unmanaged:
        lines += ["", "Left alone (not owned by this fleet):"]
        for u in result.unmanaged:
            rid = f"#{u.runner_id} " if u.runner_id is not None else ""
            where = f" on {u.host}" if u.host else ""
            lines.append(f"  {rid}{u.description!r}{where}: {u.reason}")
    if result.unreachable:
        lines += ["", "Unreachable (not planned):"]
        lines += [f"  {host}: {error}" for host, error in sorted(result.unreachable.items())]
    lines.append("")
    if not result.actions:
        lines.append("No changes. The fleet matches FLEET.toml.")
    else:
        add, change, destroy = summary(result)
        lines.append(f"Plan: {add} to add, {change} to change, {destroy} to destroy.")
    return "\n".join(lines)


def _group(actions: Iterable[Action], *, by_host: bool) -> dict[str, list[Action]]:
    groups: dict[str, list[Action]] = {}
    for a in actions:
        if by_host and a.kind not in _RUNNER_KINDS and a.host:
            groups.setdefault(a.host, []).append(a)
        elif not by_host and a.kind in _RUNNER_KINDS:
            groups.setdefault(a.runner or "?", []).append(a)
    return dict(sorted(groups.items()))


def _changes(changes: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in changes.items():
        if isinstance(value, Mapping) and set(value) == {"from", "to"}:
            out.append(f"      {key}: {_show(value['from'])} -> {_show(value['to'])}")
        else:
            out.append(f"      {key}: {_show(value)}")
    return out


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _s(n: int) -> str:
    return "" if n == 1 else "s"
