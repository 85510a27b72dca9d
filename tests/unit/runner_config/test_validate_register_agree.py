"""Validation and the register path agree: every file `config validate` accepts can be updated
by registration (add, update, replace, switch executor, rotate, unregister) and the result is
still valid.

A seeded generator writes valid config.toml files in the shapes people and tools produce:
``[[runners]]`` sections and ``runners = [{...}]`` inline arrays, inline and dotted sub-tables,
sub-tables and unknown tables after the runners, comments, multi-line strings and arrays, keys
in another case, unknown keys, no trailing newline.
"""

from __future__ import annotations

import random
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.registration import Executor, ExecutorConfig, Scope, parse_scope
from provisioner.registration.service import RegisterRequest, register, rotate_token, unregister
from provisioner.runner_config import ConfigDocument, ConfigStore, RunnerRef, validate_text
from provisioner.runner_config.store import apply_change
from tests.unit.registration.fakes import BASE, FakeGitLab, make_api

SEED = 20261203
CASES = 120
OTHER_URL = "https://gitlab.other.example/"


def _toml_str(rng: random.Random, value: str) -> str:
    """A TOML string in one of its spellings."""
    if "'" not in value and rng.random() < 0.3:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(rng: random.Random) -> str:
    return rng.choice(["", "", "", "  # managed by hand", " # keep"])


def _array(rng: random.Random, items: list[str]) -> str:
    parts = [_toml_str(rng, i) for i in items]
    if rng.random() < 0.3 and parts:
        inner = "".join(
            f"\n    {p},  # item" if rng.random() < 0.3 else f"\n    {p}," for p in parts
        )
        return f"[{inner}\n  ]"
    return "[" + ", ".join(parts) + "]"


def _docker_inline(rng: random.Random) -> str:
    image = _toml_str(rng, rng.choice(["alpine:3.20", "python:3.11", "runnerctl/python:3.11"]))
    return f"{{ image = {image}, privileged = false, volumes = {_array(rng, ['/cache'])} }}"


class _Runner:
    """One generated runner: its key lines and its sub-tables (as header-less bodies)."""

    def __init__(self, rng: random.Random, index: int, *, inline: bool) -> None:
        self.rng = rng
        self.index = index
        self.inline = inline
        self.name = f"runner-{index}"
        self.executor = rng.choice(["shell", "docker", "kubernetes", "docker"])
        self.url = rng.choice([BASE, BASE + "/", OTHER_URL])
        self.keys: list[tuple[str, str]] = []
        self.tables: list[tuple[str, list[str]]] = []
        self.build()

    def build(self) -> None:  # noqa: PLR0912 (one branch per optional shape)
        rng = self.rng
        self.keys.append(("name", _toml_str(rng, self.name)))
        self.keys.append(("url", _toml_str(rng, self.url)))
        if rng.random() < 0.8:
            self.keys.append(("id", str(rng.choice([0, 900_000 + self.index]))))
        self.keys.append(("token", _toml_str(rng, f"glrt-fuzz{self.index:04d}abcdefghijkl")))
        if rng.random() < 0.6:
            self.keys.append(("token_obtained_at", "2026-05-12T09:02:51Z"))
            self.keys.append(("token_expires_at", "0001-01-01T00:00:00Z"))
        self.keys.append((rng.choice(["executor", "executor", "Executor"]), f'"{self.executor}"'))
        if rng.random() < 0.4:
            self.keys.append(("limit", str(rng.choice([0, 1, 4]))))
        if rng.random() < 0.3:
            self.keys.append(("environment", _array(rng, ["A=1", "PIP_CACHE_DIR=/cache/pip"])))
        if rng.random() < 0.2 and not self.inline:
            self.keys.append(("pre_build_script", '"""\necho one\necho "two"\n"""'))
        if rng.random() < 0.2:
            self.keys.append(("x_custom_key", '"kept"'))
        if self.executor == "shell" and rng.random() < 0.6:
            self.keys.append(("shell", '"bash"'))
        if self.executor == "docker":
            style = "inline" if self.inline else rng.choice(["table", "inline", "dotted"])
            if style == "inline":
                self.keys.append(("docker", _docker_inline(rng)))
            elif style == "dotted":
                self.keys.append(("docker.image", '"alpine:3.20"'))
                self.keys.append(("docker.volumes", _array(rng, ["/cache"])))
            else:
                body = ['image = "alpine:3.20"', "privileged = false"]
                if rng.random() < 0.5:
                    body.append(f"volumes = {_array(rng, ['/cache', '/srv:/srv:ro'])}")
                if rng.random() < 0.3:
                    body.append(f"allowed_images = {_array(rng, ['alpine:*'])}")
                self.tables.append(("runners.docker", body))
                if rng.random() < 0.3:
                    self.tables.append(("[runners.docker.services]", ['name = "postgres:16"']))
        if self.inline:
            if self.executor == "kubernetes":
                self.keys.append(("kubernetes", '{ namespace = "ci", image = "alpine:3.20" }'))
            if rng.random() < 0.4:
                self.keys.append(
                    ("cache", '{ Type = "s3", Shared = true, s3 = { BucketName = "b" } }')
                )
            if rng.random() < 0.3:
                self.keys.append(("feature_flags", "{ FF_USE_FASTZIP = true }"))
            return
        if self.executor == "kubernetes":
            body = ['namespace = "ci"', 'image = "alpine:3.20"']
            self.tables.append(("runners.kubernetes", body))
            if rng.random() < 0.4:
                self.tables.append(
                    (
                        "[runners.kubernetes.volumes.host_path]",
                        ['name = "cache"', 'mount_path = "/cache"', 'host_path = "/srv/cache"'],
                    )
                )
        if rng.random() < 0.4:
            self.tables.append(("runners.cache", ['Type = "s3"', "Shared = true"]))
            if rng.random() < 0.5:
                self.tables.append(("runners.cache.s3", ['ServerAddress = "s3.example.com"']))
        if rng.random() < 0.3:
            self.tables.append(("runners.feature_flags", ["FF_USE_FASTZIP = true"]))
        if rng.random() < 0.2:
            self.tables.append(("runners.custom_build_dir", ["enabled = true"]))

    def as_tables(self, indent: str) -> str:
        rng = self.rng
        lead = "" if rng.random() < 0.8 else "# runner\n"
        lines = [f"{lead}[[runners]]{_comment(rng)}"]
        lines += [f"{indent}{k} = {v}{_comment(rng)}" for k, v in self.keys]
        for header, body in self.tables:
            lines.append(f"{indent}[{header}]")
            lines += [f"{indent * 2}{line}" for line in body]
        return "\n".join(lines) + "\n"

    def as_inline(self) -> str:
        parts = [f"{k} = {v}" for k, v in self.keys if "\n" not in v]
        return "{ " + ", ".join(parts) + " }"


def generate(rng: random.Random) -> str:  # noqa: PLR0912 (one branch per optional shape)
    root: list[str] = []
    if rng.random() < 0.3:
        root.append("# config.toml written by hand")
    root.append(f"{rng.choice(['concurrent', 'concurrent', 'Concurrent'])} = {rng.randint(1, 8)}")
    if rng.random() < 0.7:
        root.append("check_interval = 0")
    if rng.random() < 0.4:
        root.append(f'log_level = "{rng.choice(["info", "debug", "warn"])}"')
    if rng.random() < 0.4:
        root.append('connection_max_age = "15m0s"')
    if rng.random() < 0.2:
        root.append("x_unknown_global = 1")
    session = rng.choice(["table-before", "table-after", "inline", "dotted", "none"])
    if session == "inline":
        root.append("session_server = { session_timeout = 1800 }")
    elif session == "dotted":
        root.append("session_server.session_timeout = 1800")
    inline = rng.random() < 0.25
    runners = [_Runner(rng, i, inline=inline) for i in range(rng.randint(0, 4))]
    inline = inline and bool(runners)
    if inline:
        items = ",\n  ".join(r.as_inline() for r in runners)
        root.append(f"runners = [\n  {items},\n]" if rng.random() < 0.5 else f"runners = [{items}]")
    elif not runners and rng.random() < 0.2:
        root.append("runners = []")
    text = "\n".join(root) + "\n"
    session_table = "\n[session_server]\n  session_timeout = 1800\n"
    if session == "table-before":
        text += session_table
    if not inline:
        indent = rng.choice(["  ", "", "    "])
        for runner in runners:
            text += rng.choice(["\n", "", "\n\n"]) + runner.as_tables(indent)
    if session == "table-after":
        text += session_table
    if rng.random() < 0.15:
        text += "\n[x_custom_table]\n  a = 1\n"
    if rng.random() < 0.2:
        text += "\n# trailing comment\n"
    if rng.random() < 0.15:
        text = text.rstrip("\n")
    return text


def valid_files(count: int) -> list[str]:
    rng = random.Random(SEED)
    files = [generate(rng) for _ in range(count)]
    accepted = [t for t in files if validate_text(t).valid]
    # The generator is meant to write valid files: if it stops doing so this test would prove
    # nothing, so say so instead of passing quietly.
    assert len(accepted) == len(files), [
        (t, validate_text(t).errors) for t in files if not validate_text(t).valid
    ][:1]
    return accepted


FILES = valid_files(CASES)


def _names(text: str) -> list[str]:
    return [str(r.get("name")) for r in tomllib.loads(text).get("runners", [])]


def _assert_still_valid(text: str, context: str) -> None:
    report = validate_text(text)
    assert report.valid, (context, text, [i.render("config.toml") for i in report.errors])


def test_generated_files_cover_the_shapes() -> None:
    joined = "\n".join(FILES)
    for shape in ("runners = [", "[[runners]]", "docker = {", "docker.image", "Executor", '"""'):
        assert shape in joined, shape
    assert sum(1 for t in FILES if "runners = [{" in t or "runners = [\n" in t) >= 5


@pytest.mark.parametrize("index", range(CASES))
def test_document_edits_of_a_valid_file_stay_valid(index: int) -> None:
    text = FILES[index]
    rng = random.Random(SEED + index)
    names = _names(text)
    document = ConfigDocument.parse(text)
    # Normalising keeps the meaning (``runners = []`` and no runners are the same to gitlab-runner).
    meaning = tomllib.loads(text)
    if meaning.get("runners") == []:
        del meaning["runners"]
    assert tomllib.loads(document.dumps()) == meaning

    def edit(doc: ConfigDocument) -> None:
        doc.add_runner(
            {
                "name": "added",
                "url": BASE,
                "id": 1,
                "token": "glrt-addedaddedadded0000",
                "token_obtained_at": datetime(2026, 6, 1, tzinfo=UTC),
                "executor": "docker",
                "docker": {"image": "alpine", "volumes": ["/cache"], "pull_policy": ["always"]},
                "cache": {"Type": "s3", "s3": {"BucketName": "b"}},
            }
        )
        for name in names:
            ref = RunnerRef(name=name)
            doc.update_runner(
                ref,
                {
                    "token": "glrt-rotatedrotated0000",
                    "token_obtained_at": datetime(2027, 1, 1, tzinfo=UTC),
                    "limit": rng.randint(0, 9),
                    "environment": ["A=2"],
                    "docker": rng.choice([None, {"image": "python:3.12", "privileged": False}]),
                    "kubernetes": rng.choice([None, {"namespace": "jobs"}]),
                },
            )
        if names and rng.random() < 0.5:
            doc.remove_runner(RunnerRef(name=rng.choice(names)))
        doc.set_global("concurrent", 4)

    change = apply_change(text, edit, source="config.toml")
    _assert_still_valid(change.new_text, "document edit")


def _request(name: str, executor: Executor, **kw: Any) -> RegisterRequest:
    return RegisterRequest(
        name=name,
        scope=Scope(parse_scope("instance").runner_type),
        gitlab_url=BASE,
        executor=ExecutorConfig(executor),
        tags=("py",),
        **kw,
    )


@pytest.mark.parametrize("index", range(0, CASES, 3))
def test_registration_of_a_valid_file_stays_valid(index: int, tmp_path: Path) -> None:
    text = FILES[index]
    rng = random.Random(SEED * 7 + index)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    store = ConfigStore(path)
    fake = FakeGitLab()
    ours = [n for n, r in zip(_names(text), tomllib.loads(text).get("runners", []), strict=True)
            if str(r.get("url", "")).rstrip("/") == BASE]  # fmt: skip
    # Re-register an existing runner (its token is unknown to this GitLab: replaced in place,
    # possibly with another executor), then add a new one, rotate it, and unregister one.
    target = rng.choice(ours) if ours else "fresh"
    register(
        _request(target, rng.choice(list(Executor)), limit=2), gitlab=make_api(fake), store=store
    )
    _assert_still_valid(path.read_text(), f"register {target}")
    register(_request("brand-new", rng.choice(list(Executor))), gitlab=make_api(fake), store=store)
    _assert_still_valid(path.read_text(), "register brand-new")
    rotate_token("brand-new", gitlab=make_api(fake), store=store)
    _assert_still_valid(path.read_text(), "rotate brand-new")
    unregister(
        name=rng.choice([target, "brand-new"]),
        runner_id=None,
        keep_server=False,
        gitlab=make_api(fake),
        store=store,
    )
    _assert_still_valid(path.read_text(), "unregister")
