"""Paths of the reference fixtures in ``../shared/reference`` (read by tests, never the product)."""

from __future__ import annotations

from pathlib import Path

SHARED_REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference"

CONFIG_REF = SHARED_REFERENCE / "gitlab-runner-config"
UPSTREAM_LINT = CONFIG_REF / "fixtures" / "upstream-lint"
REGISTER_EMULATED = sorted((CONFIG_REF / "fixtures" / "register-emulated").glob("*.toml"))
EXAMPLES = sorted((CONFIG_REF / "examples").glob("*.toml"))
# What `gitlab-runner lint` (v19.3.0) says about its own test configs, from
# shared/reference/notes/config_toml.md section 1.5: (valid?, the key or problem it names).
UPSTREAM_VERDICTS = {
    "valid.toml": (True, None),
    "bad_shell.toml": (False, "runners[0].shell"),
    "invalid_syntax.toml": (False, "syntax"),
    "misspelled_key.toml": (False, "runners[0].buids_dir"),
    "wrong_section.toml": (False, "runner"),
}
VALID_UPSTREAM = sorted(UPSTREAM_LINT / n for n, (ok, _) in UPSTREAM_VERDICTS.items() if ok)
# Every reference file that parses as TOML (invalid_syntax.toml does not).
PARSEABLE = (
    REGISTER_EMULATED
    + EXAMPLES
    + sorted(p for p in UPSTREAM_LINT.glob("*.toml") if p.name != "invalid_syntax.toml")
)


def ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p in paths]
