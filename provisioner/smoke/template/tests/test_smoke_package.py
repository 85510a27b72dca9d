import pytest

from runnerctl_smoke import normalize_name, parse_version, sha256_hex


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Smoke_Pkg", "smoke-pkg"), ("a.b-c__d", "a-b-c-d"), ("  x  ", "x")],
)
def test_normalize_name_follows_pep_503(raw, expected):
    assert normalize_name(raw) == expected


def test_normalize_name_refuses_empty():
    with pytest.raises(ValueError, match="empty"):
        normalize_name("  ")


def test_dev_release_sorts_before_final_and_by_number():
    assert parse_version("0.1.0.dev2") < parse_version("0.1.0.dev10") < parse_version("0.1.0")
    assert parse_version("1.0.0") > parse_version("0.9.9")


def test_parse_version_refuses_garbage():
    with pytest.raises(ValueError, match="not a smoke version"):
        parse_version("1.0-beta")


def test_sha256_hex_known_vector():
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
