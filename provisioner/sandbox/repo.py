"""Bare git repositories of sandbox projects, changed with git plumbing (no work trees)."""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store

ZERO_SHA = "0" * 40


class RepoError(Exception):
    """A commit request GitLab would refuse (the message is GitLab's wording)."""


def repo_dir(store: Store, project: Row) -> Path:
    return store.repos_root / f"{project['id']}.git"


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    if extra:
        env.update(extra)
    return env


def git(
    path: Path,
    *args: str,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        ["git", f"--git-dir={path}", *args],
        input=stdin,
        capture_output=True,
        env=_env(env),
        check=False,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise RepoError(proc.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")
    return proc


def init(path: Path, default_branch: str) -> None:
    """``git init --bare`` with HEAD on the default branch (or clones warn about HEAD)."""
    if (path / "HEAD").exists():
        return
    from provisioner.sandbox import git_http

    git_http.init_bare_repo(path)
    git(path, "symbolic-ref", "HEAD", f"refs/heads/{default_branch}")
    git(path, "config", "http.receivepack", "true")
    git(path, "config", "uploadpack.allowAnySHA1InWant", "true")


PUSH_SPOOL = "sandbox-pushes"
POST_RECEIVE_HOOK = (
    """#!/bin/sh
# runnerctl sandbox: record every pushed ref, and whether -o ci.skip was given, so that the
# sandbox can create GitLab's push pipelines once the push is complete.
skip=0
i=0
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
  eval "opt=\\${GIT_PUSH_OPTION_$i}"
  if [ "$opt" = "ci.skip" ]; then skip=1; fi
  i=$((i + 1))
done
while read -r old new ref; do
  printf '%s %s %s %s\\n' "$old" "$new" "$ref" "$skip"
done >> "$GIT_DIR/"""
    + PUSH_SPOOL
    + """"
"""
)


@dataclass(frozen=True)
class PushedRef:
    """One ref a ``git push`` updated, as the post-receive hook saw it."""

    old: str
    new: str
    ref: str
    ci_skip: bool


def ensure_push_hook(path: Path) -> None:
    """Install the post-receive hook and advertise push options (``git push -o ci.skip``)."""
    hook = path / "hooks" / "post-receive"
    if hook.is_file() and hook.read_text() == POST_RECEIVE_HOOK:
        return
    git(path, "config", "receive.advertisePushOptions", "true")
    hook.parent.mkdir(exist_ok=True)
    tmp = hook.with_name("post-receive.tmp")
    tmp.write_text(POST_RECEIVE_HOOK)
    tmp.chmod(0o755)
    tmp.replace(hook)


def take_pushes(path: Path) -> list[PushedRef]:
    """The refs pushed since the last call (the hook's spool, consumed)."""
    spool = path / PUSH_SPOOL
    taken = path / (PUSH_SPOOL + ".taken")
    try:
        spool.replace(taken)
    except FileNotFoundError:
        return []
    out = []
    for line in taken.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append(PushedRef(parts[0], parts[1], parts[2], parts[3] == "1"))
    taken.unlink()
    return out


def has_commits(path: Path) -> bool:
    # Read the ref store directly: a git subprocess per GET /projects/:id is too slow.
    heads = path / "refs" / "heads"
    if heads.is_dir() and any(p.is_file() for p in heads.rglob("*")):
        return True
    packed = path / "packed-refs"
    return packed.is_file() and " refs/heads/" in packed.read_text(errors="replace")


def resolve(path: Path, ref: str) -> tuple[str, str] | None:
    """(sha, ref kind ``branch``/``tag``/``sha``) for a branch, tag or commit id."""
    if not path.exists():
        return None
    for full, kind in ((f"refs/heads/{ref}", "branch"), (f"refs/tags/{ref}", "tag"), (ref, "sha")):
        proc = git(path, "rev-parse", "--verify", "-q", f"{full}^{{commit}}", check=False)
        if proc.returncode == 0:
            return proc.stdout.decode().strip(), kind
    return None


def read_blob(path: Path, sha: str, file_path: str) -> bytes | None:
    proc = git(path, "cat-file", "blob", f"{sha}:{file_path}", check=False)
    return proc.stdout if proc.returncode == 0 else None


def blob_entry(path: Path, sha: str, file_path: str) -> tuple[str, str] | None:
    """(mode, blob id) of a file at a commit."""
    proc = git(path, "ls-tree", sha, "--", file_path, check=False)
    line = proc.stdout.decode().strip()
    if proc.returncode != 0 or not line:
        return None
    meta, _ = line.split("\t", 1)
    mode, kind, blob = meta.split()
    return (mode, blob) if kind == "blob" else None


def last_commit_for(path: Path, sha: str, file_path: str) -> str:
    proc = git(path, "log", "-1", "--format=%H", sha, "--", file_path, check=False)
    return proc.stdout.decode().strip() or sha


def update_ref(path: Path, ref: str, sha: str) -> None:
    git(path, "update-ref", ref, sha)


def branches(path: Path) -> list[tuple[str, str]]:
    proc = git(
        path, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads", check=False
    )
    return [tuple(line.split()) for line in proc.stdout.decode().splitlines() if line]  # type: ignore[misc]


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    authored_date: str
    committer_name: str
    committer_email: str
    committed_date: str
    message: str


def _iso(ts: str) -> str:
    moment = datetime.fromtimestamp(int(ts), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def commit_info(path: Path, sha: str) -> CommitInfo:
    fmt = "%H%x00%P%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B"
    out = git(path, "show", "-s", f"--format={fmt}", sha).stdout.decode()
    parts = out.split("\x00", 8)
    return CommitInfo(
        sha=parts[0],
        parents=tuple(parts[1].split()),
        author_name=parts[2],
        author_email=parts[3],
        authored_date=_iso(parts[4]),
        committer_name=parts[5],
        committer_email=parts[6],
        committed_date=_iso(parts[7]),
        message=parts[8].rstrip("\n"),
    )


class _Index:
    """A temporary index on which GitLab's commit actions are applied."""

    def __init__(self, path: Path, index_file: Path) -> None:
        self.path = path
        # ls-files refuses to run without a work tree, even on the index alone.
        self.env = {"GIT_INDEX_FILE": str(index_file), "GIT_WORK_TREE": str(index_file.parent)}
        self.additions = 0
        self.deletions = 0

    def run(self, *args: str) -> str:
        return git(self.path, *args, env=self.env).stdout.decode()

    def entry(self, file_path: str) -> tuple[str, str] | None:
        line = self.run("ls-files", "-s", "--", file_path).strip()
        if not line:
            return None
        mode, blob = line.split()[:2]
        return mode, blob

    def put(self, mode: str, blob: str, file_path: str) -> None:
        self.run("update-index", "--add", "--cacheinfo", f"{mode},{blob},{file_path}")

    def remove(self, file_path: str) -> None:
        self.run("update-index", "--force-remove", "--", file_path)

    def write_blob(self, action: Mapping[str, Any]) -> str:
        raw = str(action.get("content") or "")
        data = base64.b64decode(raw) if action.get("encoding") == "base64" else raw.encode()
        self.additions += data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        return git(self.path, "hash-object", "-w", "--stdin", stdin=data).stdout.decode().strip()

    def apply(self, action: Mapping[str, Any]) -> None:
        kind = str(action.get("action", ""))
        file_path = str(action.get("file_path") or "").strip("/")
        if not file_path:
            raise RepoError("file_path is missing")
        current = self.entry(file_path)
        mode = "100755" if action.get("execute_filemode") else "100644"
        if kind == "create":
            if current is not None:
                raise RepoError("A file with this name already exists")
            self.put(mode, self.write_blob(action), file_path)
        elif kind == "update":
            if current is None:
                raise RepoError("A file with this name doesn't exist")
            if action.get("content") is None:
                raise RepoError("content is missing")
            self.put(current[0], self.write_blob(action), file_path)
        elif kind == "move":
            previous = str(action.get("previous_path") or "").strip("/")
            old = self.entry(previous) if previous else None
            if old is None:
                raise RepoError("A file with this name doesn't exist")
            if current is not None:
                raise RepoError("A file with this name already exists")
            self.remove(previous)
            blob = old[1] if action.get("content") is None else self.write_blob(action)
            self.put(old[0], blob, file_path)
        elif kind in ("delete", "chmod"):
            if current is None:
                raise RepoError("A file with this name doesn't exist")
            if kind == "delete":
                self.remove(file_path)
                self.deletions += 1
            else:
                self.put(mode, current[1], file_path)
        else:
            raise RepoError("actions[action] does not have a valid value")


def create_commit(
    path: Path,
    *,
    branch: str,
    start_sha: str | None,
    actions: Sequence[Mapping[str, Any]],
    message: str,
    author_name: str,
    author_email: str,
) -> tuple[str, dict[str, int]]:
    """Apply GitLab commit ``actions`` on ``start_sha`` and move ``branch``; return (sha, stats)."""
    with tempfile.TemporaryDirectory(prefix="sandbox-index-") as tmp:
        index = _Index(path, Path(tmp) / "index")
        if start_sha:
            index.run("read-tree", start_sha)
        else:
            index.run("read-tree", "--empty")
        for action in actions:
            if not isinstance(action, Mapping):
                raise RepoError("actions is invalid")
            index.apply(action)
        tree = index.run("write-tree").strip()
    ident = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    args = ["commit-tree", tree, "-m", message]
    if start_sha:
        args[2:2] = ["-p", start_sha]
    sha = git(path, *args, env=ident).stdout.decode().strip()
    old = resolve(path, branch)
    git(path, "update-ref", f"refs/heads/{branch}", sha, old[0] if old else ZERO_SHA)
    stats = {
        "additions": index.additions,
        "deletions": index.deletions,
        "total": index.additions + index.deletions,
    }
    return sha, stats


def log(
    path: Path,
    ref: str,
    *,
    file_path: str | None = None,
    limit: int = 1000,
    all_refs: bool = False,
) -> list[str]:
    """Commit ids reachable from ``ref`` (or from every branch and tag), newest first."""
    args = ["rev-list", f"--max-count={limit}", *(["--branches", "--tags"] if all_refs else [ref])]
    if file_path:
        args += ["--", file_path]
    proc = git(path, *args, check=False)
    return proc.stdout.decode().split() if proc.returncode == 0 else []


@dataclass(frozen=True)
class TreeEntry:
    id: str
    name: str
    type: str
    path: str
    mode: str


def tree(path: Path, sha: str, sub_path: str = "", *, recursive: bool = False) -> list[TreeEntry]:
    args = ["ls-tree"]
    if recursive:
        args += ["-r", "-t"]
    spec = f"{sha}:{sub_path.strip('/')}" if sub_path.strip("/") else sha
    proc = git(path, *args, spec, check=False)
    if proc.returncode != 0:
        return []
    out = []
    prefix = sub_path.strip("/") + "/" if sub_path.strip("/") else ""
    for line in proc.stdout.decode().splitlines():
        meta, name = line.split("\t", 1)
        mode, kind, obj = meta.split()
        out.append(TreeEntry(obj, name.rsplit("/", 1)[-1], kind, prefix + name, mode))
    return out


def tags(path: Path) -> list[tuple[str, str, str]]:
    """(name, commit sha, message) of every tag."""
    proc = git(
        path,
        "for-each-ref",
        "--format=%(refname:short)%00%(*objectname)%00%(objectname)%00%(contents:subject)",
        "refs/tags",
        check=False,
    )
    out = []
    for line in proc.stdout.decode().splitlines():
        name, peeled, obj, subject = line.split("\x00")
        out.append((name, peeled or obj, subject if peeled else ""))
    return out


def create_tag(
    path: Path, name: str, sha: str, message: str | None, tagger: tuple[str, str]
) -> None:
    if message:
        env = {"GIT_COMMITTER_NAME": tagger[0], "GIT_COMMITTER_EMAIL": tagger[1]}
        git(path, "tag", "-a", name, sha, "-m", message, env=env)
    else:
        git(path, "update-ref", f"refs/tags/{name}", sha, ZERO_SHA)


def delete_ref(path: Path, ref: str) -> None:
    git(path, "update-ref", "-d", ref)
