"""JUnit XML of one run record: what every CI (GitLab, Jenkins, GitHub test-report actions)
shows as a test report.

The shape follows Jenkins' `junit-10.xsd` (the xunit plugin's schema; a copy with its source
and licence is kept in tests/schemas/ and the tests validate against it): a `testsuites` root
holding one `testsuite` per file, one `testcase` per code cell named `NN title` (NN: the
cell's index, as devloop's output numbers cells) with its `time` in seconds. A failed cell has
a `<failure>` with the error type, `file:line: message`, and the traceback as its text; the
cells not run after it are `<skipped>`. The cell's output is its `system-out`, cleaned (no
terminal escapes, no characters XML cannot hold) and trimmed to its end. A script (a file
without `# %%`) is one testcase.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any, Mapping

OUTPUT_KEEP = 64 * 1024  # characters of a cell's output kept in system-out (its end)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean_text(text: str, keep: int = OUTPUT_KEEP) -> str:
    """Text as a CI page shows it: escapes dropped, a line redrawn with \\r shows its last
    state, characters XML 1.0 cannot carry removed, only the last `keep` characters kept."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    if "\r" in text:
        text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    text = _NOT_XML.sub("", text)
    if len(text) > keep:
        cut = len(text) - keep
        text = f"[... {cut} characters trimmed ...]\n" + text[cut:]
    return text


def _seconds(ms: Any) -> str:
    try:
        value = max(0.0, float(ms or 0.0)) / 1000.0
    except (TypeError, ValueError):
        value = 0.0
    return f"{value:.3f}"


def case_name(cell: Mapping[str, Any], script: bool = False) -> str:
    """`NN title` (`NN line L` for an untitled cell; a script's testcase is its file)."""
    if script:
        return str(cell.get("title") or "script")
    title = str(cell.get("title") or "").strip() or f"line {cell.get('line', '?')}"
    return f"{int(cell.get('index', 0)):02d} {title}"


def junit_xml(record: Mapping[str, Any], outputs: Mapping[int, str] | None = None) -> str:
    """The JUnit XML text (UTF-8, with declaration) for one run record; `outputs` maps a cell
    index to its output text (stdout and stderr as they came)."""
    outputs = outputs or {}
    file = str(record.get("file") or "run")
    script = bool(record.get("script"))
    errors_by_cell: dict[int, list[Mapping[str, Any]]] = {}
    for err in record.get("errors") or ():
        errors_by_cell.setdefault(int(err.get("cell", -1)), []).append(err)
    cells = list(record.get("cells") or ())
    failed_names = [case_name(c, script) for c in cells if c.get("state") == "failed"]

    root = ET.Element("testsuites", name="devloop")
    suite = ET.SubElement(root, "testsuite", name=file)
    props = ET.SubElement(suite, "properties")
    git = record.get("git") or {}
    image = record.get("image") or {}
    for name, value in (("devloop.run_id", record.get("run_id")), ("devloop.profile", record.get("profile")),
                        ("devloop.target", (record.get("target") or {}).get("kind")),
                        ("devloop.git_commit", git.get("commit")),
                        ("devloop.dirty", "true" if git.get("dirty") else "false"),
                        ("devloop.image_digest", image.get("digest")),
                        ("devloop.version", record.get("devloop_version"))):
        ET.SubElement(props, "property", name=name, value=_NOT_XML.sub("", str(value or "")))
    failures = skipped = 0
    total_ms = 0.0
    for cell in cells:
        index = int(cell.get("index", 0))
        state = cell.get("state")
        total_ms += float(cell.get("ms") or 0.0)
        case = ET.SubElement(suite, "testcase", name=clean_text(case_name(cell, script), 500),
                             classname=file, time=_seconds(cell.get("ms")))
        if state in ("failed", "interrupted", "detached"):
            failures += 1
            errs = errors_by_cell.get(index) or [{}]
            err = errs[-1]
            where = f"{err.get('file') or file}:{err.get('line') or cell.get('line', 1)}"
            etype = str(err.get("type") or ("Interrupted" if state != "failed" else "Failed"))
            if state != "failed":
                fallback = "the run ended while the cell ran"
            elif script:
                fallback = f"the script exited with code {record.get('exit_code')}"
            else:
                fallback = "the cell failed"
            message = str(err.get("message") or fallback)
            body = f"{where}: {etype}: {message}\n"
            if err.get("traceback"):
                body += "\n" + str(err["traceback"])
            failure = ET.SubElement(case, "failure", type=clean_text(etype, 500),
                                    message=clean_text(f"{where}: {message}", 2000))
            failure.text = clean_text(body)
        elif state not in ("ok",):
            skipped += 1
            why = {"skipped": ("not run: an earlier cell failed"
                               + (f" ({failed_names[0]})" if failed_names else "")),
                   "unchanged": "not rerun: unchanged and ok in the session",
                   }.get(str(state), "not run in this pass")
            ET.SubElement(case, "skipped", message=why)
        out = outputs.get(index)
        if out:
            ET.SubElement(case, "system-out").text = clean_text(out)
    seconds = _seconds(record.get("ms") if record.get("ms") is not None else total_ms)
    suite.set("tests", str(len(cells)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", seconds)
    if record.get("start"):
        suite.set("timestamp", str(record["start"]).replace("Z", ""))
    host = (record.get("target") or {}).get("host")
    if host:
        suite.set("hostname", str(host))
    suite.set("id", str(record.get("run_id") or ""))
    suite.set("file", file)
    root.set("tests", str(len(cells)))
    root.set("failures", str(failures))
    root.set("errors", "0")
    root.set("time", seconds)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


class OutputCollector:
    """A listener keeping each cell's output of the current pass (its end, bounded), for the
    JUnit report. A new pass (`plan` / a script start) starts afresh."""

    def __init__(self, keep: int = OUTPUT_KEEP) -> None:
        self.keep = keep
        self._pieces: dict[int, list[str]] = {}
        self._size: dict[int, int] = {}

    def __call__(self, event: Any) -> None:
        from devloop.core import events as ev

        if isinstance(event, ev.CellsPlanned):
            self._pieces.clear()
            self._size.clear()
        elif isinstance(event, ev.Output) and event.cell >= 0:
            pieces = self._pieces.setdefault(event.cell, [])
            pieces.append(event.text)
            size = self._size.get(event.cell, 0) + len(event.text)
            if size > 2 * self.keep:  # bound memory: join and keep the end (plus a marker)
                text = "".join(pieces)
                pieces[:] = [f"[... {len(text) - self.keep} characters trimmed ...]\n", text[-self.keep:]]
                size = sum(map(len, pieces))
            self._size[event.cell] = size

    def outputs(self) -> dict[int, str]:
        return {cell: "".join(pieces) for cell, pieces in self._pieces.items()}
