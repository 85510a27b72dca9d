"""Config lint: misspelled kubernetes tables and keys (RC008), reserved keys with glrt- (RC009)."""

from __future__ import annotations

from provisioner.runner_config import ConfigDocument, lint_document

BASE = """concurrent = 1

[[runners]]
  name = "k8s"
  url = "https://gitlab.example.com"
  token = "{token}"
  executor = "kubernetes"
{extra}
"""


GLRT = "glrt-abcdefghijklmnopqrst"


def _findings(extra: str, token: str | None = None) -> list[tuple[str, str, str]]:
    doc = ConfigDocument.parse(BASE.format(token=token or GLRT, extra=extra))
    return [(f.rule, f.message, f.fix) for f in lint_document(doc) if f.rule in ("RC008", "RC009")]


def test_a_misspelled_kubernetes_table_is_caught_with_its_fix() -> None:
    found = _findings('  [runners.kuberentes]\n    namespace = "ci"\n    image = "alpine"\n')
    assert found == [
        (
            "RC008",
            "unknown key runners.kuberentes: gitlab-runner ignores it silently "
            "(did you mean runners.kubernetes?)",
            "Rename it to kubernetes.",
        )
    ]


def test_a_misspelled_key_inside_kubernetes_is_caught() -> None:
    found = _findings('  [runners.kubernetes]\n    namepsace = "ci"\n    allowed_images = ["a"]\n')
    assert [(rule, message) for rule, message, _fix in found] == [
        (
            "RC008",
            "unknown key runners.kubernetes.namepsace: gitlab-runner ignores it silently "
            "(did you mean runners.kubernetes.namespace?)",
        )
    ]


def test_reserved_keys_with_a_glrt_token_are_caught() -> None:
    found = _findings('  tags = ["k8s"]\n  locked = true\n  run_untagged = false\n')
    assert len(found) == 1
    rule, message, fix = found[0]
    assert rule == "RC009"
    assert message.startswith("tags, locked, run_untagged set in the runner section")
    assert "Runner configuration other than name and executor configuration is reserved" in message
    assert "runnerctl register --tag" in fix


def test_reserved_keys_with_a_legacy_token_are_left_alone() -> None:
    assert _findings('  tags = ["k8s"]\n', token="legacy-runner-token-0123") == []


def test_a_clean_kubernetes_runner_has_neither_finding() -> None:
    assert _findings('  [runners.kubernetes]\n    namespace = "ci"\n') == []
