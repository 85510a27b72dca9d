"""The shipped catalogue: complete entries, real examples, grep-compatible patterns."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from provisioner.doctor.anchors import required_literals
from provisioner.doctor.catalogue import (
    Catalogue,
    CatalogueError,
    Category,
    load_catalogue,
    parse_catalogue,
)

CATALOGUE = load_catalogue()


def test_the_catalogue_grows_well_beyond_the_reference_sample(reference_dir: object) -> None:
    import json
    from pathlib import Path

    sample = json.loads(
        (Path(str(reference_dir)) / "failure-signatures" / "signatures.json").read_text()
    )
    ids = {s.id for s in CATALOGUE.signatures}
    assert len(ids) == len(CATALOGUE.signatures) >= 100
    assert {s["id"] for s in sample} <= ids  # every reference signature is kept
    counts = Counter(s.category for s in CATALOGUE.signatures)
    assert set(counts) == set(Category)
    assert min(counts.values()) >= 5


@pytest.mark.parametrize("signature", CATALOGUE.signatures, ids=lambda s: s.id)
def test_every_signature_is_complete_and_matches_its_examples(signature: object) -> None:
    from provisioner.doctor.catalogue import Signature

    assert isinstance(signature, Signature)
    assert signature.title
    assert signature.causes
    assert signature.fixes
    assert signature.examples
    assert all(s.startswith("https://") for s in signature.sources)
    for example in signature.examples:
        found = signature.pattern.search(example)
        assert found is not None
        # The prefilter looks for these literals: every match must contain one.
        assert any(a in found.group(0) for a in signature.anchors), signature.anchors


def test_patterns_are_grep_extended_regexps_that_match_the_same_examples() -> None:
    for signature in CATALOGUE.signatures:
        done = subprocess.run(
            ["grep", "-E", "-e", signature.pattern.pattern],
            input="\n".join(signature.examples) + "\n",
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (signature.id, done.stderr)
        assert len(done.stdout.splitlines()) == len(signature.examples), signature.id


def test_required_literals_of_alternations_groups_and_quantifiers() -> None:
    assert required_literals(r"fatal: reference is not a tree: ([0-9a-f]{7,40})") == [
        "fatal: reference is not a tree: "
    ]
    assert required_literals(r"(abc|defg)xyzzy+") == ["xyzzy"]
    assert required_literals(r"(Cannot allocate memory|java\.lang\.OutOfMemoryError)") == [
        "Cannot allocate memory",
        "java.lang.OutOfMemoryError",
    ]
    assert required_literals(r"[Nn]o space left") == ["o space left"]
    assert required_literals(r"a|\S+") == []  # a branch without a literal: no prefilter


def test_a_broken_entry_is_refused_with_its_id() -> None:
    entry = """
[[signature]]
id = "x"
category = "config"
title = "t"
pattern = 'needle here'
causes = ["c"]
fixes = ["f"]
sources = ["https://example.com"]
examples = ["no match"]
"""
    with pytest.raises(CatalogueError, match="catalogue entry x: pattern does not match"):
        parse_catalogue(entry)
    with pytest.raises(CatalogueError, match="unknown probes"):
        parse_catalogue(entry.replace("no match", "needle here") + 'probes = ["nope"]\n')
    with pytest.raises(CatalogueError, match="catalogue entry x"):
        parse_catalogue(entry.replace('"config"', '"weather"'))
    assert isinstance(parse_catalogue(entry.replace("no match", "needle here")), Catalogue)
