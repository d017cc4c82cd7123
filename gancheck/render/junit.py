"""JUnit XML for CI systems: one test case per gate, so a crossed gate shows up as a failed test.

The document satisfies both schemas CI systems read: the Apache Ant JUnit schema (strict:
``testsuites > testsuite`` with ``package``/``id``/``timestamp``/``hostname``/``time``,
``properties`` first, at most one ``failure`` per test case, ``system-out``/``system-err``
last) and the Jenkins xUnit plugin's, which GitHub Actions reporters, GitLab and Azure
Pipelines also accept.
"""

from __future__ import annotations

import datetime as _dt
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from gancheck.errors import GancheckError

# XML 1.0 forbids most control characters even when escaped; messages may quote file contents.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value) -> str:
    return _INVALID_XML.sub("?", str(value))


def gate_cases(results: list[dict]) -> list[dict]:
    """Test cases from :func:`gancheck.analysis.gates.evaluate` results (``audit --fail-if``)."""
    from gancheck.analysis.gates import describe

    return [{"name": r["gate"], "failed": r["failed"], "message": describe(r)} for r in results]


def junit_xml(suite: str, cases: list[dict], properties: dict | None = None, output: str = "") -> str:
    """The JUnit document as a string.

    suite: the test suite's name (e.g. ``gancheck.audit``); cases: dicts with ``name``, ``failed``
    and ``message`` (and optional ``time`` in seconds); properties: name -> value pairs recorded
    in the suite (run directory, generator, figures); output: text for ``system-out``.
    """
    failures = sum(bool(c["failed"]) for c in cases)
    total_time = sum(float(c.get("time", 0.0)) for c in cases)
    root = ET.Element("testsuites", {"name": _text(suite), "tests": str(len(cases)), "failures": str(failures), "errors": "0",
                                     "time": f"{total_time:.3f}"})
    el = ET.SubElement(root, "testsuite", {
        "name": _text(suite), "package": _text(suite), "id": "0", "tests": str(len(cases)), "failures": str(failures),
        "errors": "0", "skipped": "0", "time": f"{total_time:.3f}",
        "timestamp": _dt.datetime.now().replace(microsecond=0).isoformat(),  # the Ant schema forbids a zone suffix
        "hostname": _text(socket.gethostname() or "localhost"),
    })
    props = ET.SubElement(el, "properties")
    for name, value in (properties or {}).items():
        ET.SubElement(props, "property", {"name": _text(name), "value": _text(value)})
    for case in cases:
        tc = ET.SubElement(el, "testcase", {"name": _text(case["name"]), "classname": _text(suite), "time": f"{float(case.get('time', 0.0)):.3f}"})
        if case["failed"]:
            failure = ET.SubElement(tc, "failure", {"message": _text(case["message"]), "type": "GateFailed"})
            failure.text = _text(case["message"])
    ET.SubElement(el, "system-out").text = _text(output)
    ET.SubElement(el, "system-err").text = ""
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, suite: str, cases: list[dict], properties: dict | None = None, output: str = "") -> Path:
    """Write :func:`junit_xml` to ``path`` (parent folders are created)."""
    from gancheck.files import atomic_write

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, junit_xml(suite, cases, properties, output))
    except OSError as exc:
        raise GancheckError(f"cannot write the JUnit file {path} ({exc.strerror}); choose a writable --junit path") from None
    return path
