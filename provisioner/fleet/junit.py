"""JUnit XML for a ``fleet apply``: one ``<testcase>`` per action (classname ``fleet.<kind>``)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from provisioner.fleet.apply import ActionStatus, ApplyResult
from provisioner.fsutil import atomic_write


def junit_xml(result: ApplyResult) -> str:
    """The JUnit document for ``result``; an unreachable host is a failed case of its own."""
    suite = ET.Element("testsuite", name=f"runnerctl fleet apply {result.fleet}")
    failures = skipped = 0
    for outcome in result.results:
        action = outcome.action
        case = ET.SubElement(
            suite, "testcase", classname=f"fleet.{action.kind.value}", name=action.key
        )
        if outcome.status is ActionStatus.FAILED:
            ET.SubElement(case, "failure", message=outcome.detail or "failed").text = action.reason
            failures += 1
        elif outcome.status is ActionStatus.SKIPPED:
            ET.SubElement(case, "skipped", message=outcome.detail or "skipped")
            skipped += 1
        else:
            ET.SubElement(case, "system-out").text = action.reason
    for host, error in sorted(result.unreachable.items()):
        case = ET.SubElement(suite, "testcase", classname="fleet.host", name=f"reach:{host}")
        ET.SubElement(case, "failure", message=f"host {host} unreachable: {error}")
        failures += 1
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{result.seconds:.2f}")
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: ApplyResult, path: Path) -> None:
    """Write the JUnit file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, junit_xml(result), mode=0o644)
