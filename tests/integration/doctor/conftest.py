"""doctor's real failures reuse the stand-in runner lab of tests/integration/sandbox_runner."""

from tests.integration.sandbox_runner.conftest import (  # noqa: F401 (pytest fixtures)
    job_image,
    lab,
    runner_of,
)
