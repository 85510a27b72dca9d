"""JUnit XML for a smoke run: one testcase per pipeline stage and per independent check."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree as ET

from provisioner.fsutil import atomic_write
from provisioner.smoke.service import STAGES, SmokeResult, SmokeStatus

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def junit_xml(result: SmokeResult) -> str:
    """The JUnit document for ``result``."""
    suite = ET.Element("testsuite", name="runnerctl smoke")
    failures = skipped = 0
    seen = {s.name: s for s in result.stages}
    for stage in (*STAGES, *(s for s in seen if s not in STAGES)):
        outcome = seen.get(stage)
        case = ET.SubElement(
            suite,
            "testcase",
            classname="smoke.stage",
            name=stage,
            time=f"{(outcome.seconds or 0.0) if outcome else 0.0:.2f}",
        )
        if outcome is None or outcome.status in ("skipped", "canceled", "manual"):
            status = outcome.status if outcome else "not in the pipeline"
            ET.SubElement(case, "skipped", message=f"stage {stage}: {status}")
            skipped += 1
        elif outcome.status == "failed":
            failure = ET.SubElement(
                case, "failure", message=f"stage {stage} failed: {result.message}"
            )
            failure.text = _xml_safe(result.trace_tail)
            failures += 1
        elif outcome.status != "success":
            message = f"stage {stage} {outcome.status}: {result.message}"
            ET.SubElement(case, "failure", message=message)
            failures += 1
    if result.status is SmokeStatus.PASSED or result.checks:
        for check in result.checks:
            case = ET.SubElement(suite, "testcase", classname="smoke.check", name=check.name)
            if not check.passed:
                ET.SubElement(case, "failure", message=f"check {check.name}: {check.detail}")
                failures += 1
            else:
                ET.SubElement(case, "system-out").text = check.detail
    else:
        for name in ("pypi registry", "generic registry", "local verification"):
            case = ET.SubElement(suite, "testcase", classname="smoke.check", name=name)
            ET.SubElement(case, "skipped", message="not run: the pipeline did not pass")
            skipped += 1
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{result.elapsed:.2f}")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _xml_safe(text: str) -> str:
    # XML 1.0 allows no control characters but tab, newline and carriage return.
    return _CONTROL.sub("", text)


def write_junit(result: SmokeResult, path: Path) -> None:
    """Write the JUnit file atomically (temp file in the same directory, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, junit_xml(result), mode=0o644)
