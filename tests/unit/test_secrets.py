"""The one redaction filter: every token shape we know is masked, nothing else is touched."""

from __future__ import annotations

import io
import logging

import pytest

from provisioner.secrets import MASK, RedactingFilter, Redactor, contains_secret, redact

RUNNER_TOKEN = "glrt-t1_AbCdEfGhIjKlMnOpQrSt"
PAT = "glpat-ZyXwVuTsRqPoNmLkJiHg"
JOB_TOKEN = "glcbt-64_abcdefABCDEF0123456789xy"
REGISTRATION = "GR1348941aBcDeFgHiJkLmNoPqRs"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token = {RUNNER_TOKEN}", f"token = glrt-{MASK}"),
        (f'token = "{RUNNER_TOKEN}"', f'token = "glrt-{MASK}"'),
        (f"using {PAT} now", f"using glpat-{MASK} now"),
        (f"job token {JOB_TOKEN}.", f"job token glcbt-{MASK}."),
        (f"--registration-token {REGISTRATION}", f"--registration-token GR1348941{MASK}"),
        ("COSIGN_PASSWORD=hunter2hunter2", f"COSIGN_PASSWORD={MASK}"),
        ('{"COSIGN_PASSWORD": "s3cr3t-pass"}', f'{{"COSIGN_PASSWORD": "{MASK}"}}'),
        ("PRIVATE-TOKEN: abcdefgh12345678", f"PRIVATE-TOKEN: {MASK}"),
        ("Authorization: Bearer abcdefgh12345678", f"Authorization: Bearer {MASK}"),
        (
            "https://gitlab-ci-token:s3cretjobtok@gitlab.example.com/g/p.git",
            f"https://gitlab-ci-token:{MASK}@gitlab.example.com/g/p.git",
        ),
        (
            "git clone http://root:pw12@127.0.0.1:8929/a/b.git",
            f"git clone http://root:{MASK}@127.0.0.1:8929/a/b.git",
        ),
    ],
)
def test_redact_masks_every_token_shape(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert contains_secret(text)
    assert not contains_secret(redact(text))


@pytest.mark.parametrize(
    "text",
    [
        "runner glrt-short is fine",  # too short to be a token
        "https://gitlab.example.com/api/v4/runners",
        "ssh://git@gitlab.example.com/group/project.git",
        "executor = docker, tags = [python, glrt]",
        "the GR1348941 prefix alone",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text
    assert not contains_secret(text)


def test_redactor_masks_registered_literals() -> None:
    redactor = Redactor()
    redactor.add("correct horse battery staple")
    redactor.add(None)
    redactor.add("")
    assert redactor("pw is correct horse battery staple!") == f"pw is {MASK}!"


def _capture_logger(redactor: Redactor | None = None) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger(f"test.secrets.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_logging_filter_masks_arguments_and_exceptions() -> None:
    logger, stream = _capture_logger()
    logger.info("registered runner with token %s", RUNNER_TOKEN)
    try:
        raise ValueError(f"bad token {PAT}")
    except ValueError:
        logger.exception("failed")
    output = stream.getvalue()
    assert RUNNER_TOKEN not in output
    assert PAT not in output
    assert f"glrt-{MASK}" in output
    assert f"ValueError: bad token glpat-{MASK}" in output


def test_logging_filter_masks_literals_of_the_run() -> None:
    redactor = Redactor(["my-cosign-password"])
    logger, stream = _capture_logger(redactor)
    logger.warning("password was %r", "my-cosign-password")
    assert "my-cosign-password" not in stream.getvalue()
    assert MASK in stream.getvalue()
