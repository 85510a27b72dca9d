"""JUnit: one testcase per stage and per check; the failing one is named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree as ET  # our own output, not untrusted data

from provisioner.smoke.junit import junit_xml, write_junit
from provisioner.smoke.service import (
    STAGES,
    CheckOutcome,
    SmokeResult,
    SmokeStatus,
    StageOutcome,
)


def _result(status: SmokeStatus, stages: dict[str, str], checks=()) -> SmokeResult:  # type: ignore[no-untyped-def]
    return SmokeResult(
        status=status,
        project="root/p",
        project_url="u",
        pipeline_id=1,
        pipeline_url="u",
        package_name="p",
        version="0.1.0.dev1",
        stages=tuple(StageOutcome(n, s, 1.5, (n,)) for n, s in stages.items()),
        checks=tuple(checks),
        elapsed=9.0,
        time_to_green=None,
        message="Pipeline #1 failed: job 'verify' (verify) failed.",
        trace_tail="Error: invalid signature",
    )


def test_failed_verify_is_the_only_failure_and_later_stages_are_skipped() -> None:
    stages = dict.fromkeys(STAGES, "skipped")
    stages.update(test="success", build="success", sign="success", verify="failed")
    suite = ET.fromstring(junit_xml(_result(SmokeStatus.FAILED, stages)))  # noqa: S314
    failed = [c.get("name") for c in suite if c.find("failure") is not None]
    assert failed == ["verify"]
    failure = suite.find("testcase[@name='verify']/failure")
    assert failure is not None
    assert failure.text == "Error: invalid signature"
    assert suite.find("testcase[@name='publish']/skipped") is not None
    assert suite.get("failures") == "1"
    assert suite.get("tests") == str(len(STAGES) + 3)


def test_passed_run_has_a_testcase_per_check(tmp_path: Path) -> None:
    checks = [CheckOutcome("pypi registry", True, "ok"), CheckOutcome("tamper", False, "bad")]
    result = _result(SmokeStatus.FAILED, dict.fromkeys(STAGES, "success"), checks)
    target = tmp_path / "out" / "smoke.xml"
    write_junit(result, target)
    suite = ET.parse(target).getroot()  # noqa: S314
    assert [c.get("name") for c in suite if c.get("classname") == "smoke.check"] == [
        "pypi registry",
        "tamper",
    ]
    assert suite.get("failures") == "1"
    assert list(target.parent.iterdir()) == [target]


def test_control_characters_of_a_job_log_do_not_break_the_xml() -> None:
    stages = dict.fromkeys(STAGES, "skipped")
    stages["verify"] = "failed"
    result = replace(_result(SmokeStatus.FAILED, stages), trace_tail="\x1b[31;1mERROR\x07 x")
    suite = ET.fromstring(junit_xml(result))  # noqa: S314
    failure = suite.find("testcase[@name='verify']/failure")
    assert failure is not None
    assert failure.text == "[31;1mERROR x"
