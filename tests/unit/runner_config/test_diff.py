"""Semantic diff of two config files."""

from __future__ import annotations

from provisioner.runner_config import ConfigDocument, KeyChange, RunnerDiff, diff_documents
from provisioner.secrets import MASK

A = """\
concurrent = 1
[[runners]]
  name = "one"
  url = "https://h/"
  id = 1
  token = "glrt-one-aaaaaaaaaaaa"
  executor = "docker"
  [runners.docker]
    image = "alpine"
[[runners]]
  name = "two"
  url = "https://h/"
  id = 2
  token = "glrt-two-aaaaaaaaaaaa"
  executor = "shell"
"""


def diff(a: str, b: str):  # type: ignore[no-untyped-def]
    return diff_documents(ConfigDocument.parse(a), ConfigDocument.parse(b))


def test_formatting_and_comments_are_not_differences() -> None:
    b = "# a comment\n" + A.replace('image = "alpine"', "image   =   'alpine'   # same")
    assert diff(A, b).empty


def test_case_variant_keys_are_the_same_key() -> None:
    assert diff(A, A.replace('executor = "shell"', 'Executor = "shell"')).empty


def test_added_removed_and_changed_runners() -> None:
    b = A.replace('name = "two"', 'name = "three"').replace("id = 2", "id = 3")
    b = b.replace('image = "alpine"', 'image = "debian"').replace(
        "concurrent = 1", "concurrent = 2"
    )
    result = diff(A, b)
    assert result.global_changes == (KeyChange("concurrent", 1, 2),)
    assert result.added == ("three",)
    assert result.removed == ("two",)
    assert result.changed == (RunnerDiff("one", (KeyChange("docker.image", "alpine", "debian"),)),)


def test_tokens_are_masked_in_changes() -> None:
    b = A.replace("glrt-one-aaaaaaaaaaaa", "glrt-one-bbbbbbbbbbbb")
    result = diff(A, b)
    assert result.changed == (RunnerDiff("one", (KeyChange("token", MASK, MASK),)),)


def test_keys_added_and_removed_inside_a_runner() -> None:
    b = A.replace('  executor = "shell"\n', "  limit = 4\n").replace(
        '    image = "alpine"\n', '    image = "alpine"\n    privileged = true\n'
    )
    result = diff(A, b)
    assert result.changed == (
        RunnerDiff("one", (KeyChange("docker.privileged", None, True),)),
        RunnerDiff("two", (KeyChange("executor", "shell", None), KeyChange("limit", None, 4))),
    )


def test_runner_that_got_an_id_pairs_by_name() -> None:
    a = A.replace("  id = 2\n", "")
    result = diff(a, A)
    assert result.added == ()
    assert result.removed == ()
    assert result.changed == (RunnerDiff("two", (KeyChange("id", None, 2),)),)


def test_same_name_different_ids_are_told_apart() -> None:
    a = ConfigDocument.parse(
        'concurrent = 1\n\n[[runners]]\n  name = "web"\n  url = "https://g/"\n  id = 7\n'
        '  token = "glrt-aaaaaaaaaaaaaaaaaaaa"\n  executor = "shell"\n'
    )
    b = ConfigDocument.parse(
        'concurrent = 1\n\n[[runners]]\n  name = "web"\n  url = "https://g/"\n  id = 9\n'
        '  token = "glrt-bbbbbbbbbbbbbbbbbbbb"\n  executor = "shell"\n'
    )
    result = diff_documents(a, b)
    assert result.added == ("web (id 9)",)
    assert result.removed == ("web (id 7)",)
