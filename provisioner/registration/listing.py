"""``runners list``: the runners GitLab knows, in a scope or all the token's own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from provisioner.gitlab.models import ListFilter, Runner, RunnerStatus, RunnerType
from provisioner.registration.model import RunnerAPI
from provisioner.registration.scope import Scope


def list_runners(
    *,
    scope: Scope | None,
    status: RunnerStatus | None,
    tags: tuple[str, ...],
    gitlab: RunnerAPI,
    details: bool = True,
) -> tuple[Runner, ...]:
    """Runners GitLab knows in ``scope`` (all the token's own runners without one).

    List entries lack ``contacted_at``; with ``details`` each runner is read once more for it.
    """
    namespace_id: int | None = None
    runner_type: RunnerType | None = None
    if scope is not None:
        runner_type = scope.runner_type
        namespace_id = scope.numeric_id
        if scope.runner_type is not RunnerType.INSTANCE and namespace_id is None:
            assert scope.ref is not None
            resolve = (
                gitlab.resolve_group
                if scope.runner_type is RunnerType.GROUP
                else gitlab.resolve_project
            )
            namespace_id = resolve(scope.ref).id
    found = gitlab.list_runners(ListFilter(runner_type, namespace_id, status, tags))
    if not details:
        return found
    return tuple(_with_details(gitlab, found))


def _with_details(gitlab: RunnerAPI, runners: tuple[Runner, ...]) -> Iterator[Runner]:
    for runner in runners:
        full = gitlab.find_runner(runner.id)
        yield full if full is not None else replace(runner)
