"""Run records end to end on the `local` profile, with the real CLI and the real agent:
`.devloop/runs.jsonl`, `devloop runs`, `devloop run --junit` (validated against Jenkins'
junit-10.xsd, kept in tests/schemas), the GitHub step summary, and promote citing the green run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from devloop.core.snapshots import record_snapshot
from devloop.core.targets.base import Snapshot
from tests.clitools import devloop

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "junit-10.xsd"
DIGEST = "sha256:" + "0123456789abcdef" * 4
SECRET = "s3cr3t-token-value-8f2b"

# the middle cell fails at line 8 (the raise); the third never runs
BROKEN = textwrap.dedent("""\
    # %% load
    data = [1, 2, 3]
    print("loaded", len(data))

    # %% check
    import os
    print("checking")
    raise ValueError("bad data: " + os.environ.get("API_TOKEN", "none"))

    # %% report
    print("never")
    """)
FIXED = BROKEN.replace('raise ValueError("bad data: " + os.environ.get("API_TOKEN", "none"))',
                       'print("checked")')


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "devloop.toml").write_text('[project]\nname = "proj"\nentry = "nb.py"\n')
    (repo / "nb.py").write_text(BROKEN)
    (repo / ".gitignore").write_text(".devloop/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/proj.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def records(repo: Path) -> list[dict]:
    lines = (repo / ".devloop" / "runs.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_junit_of_a_failing_middle_cell_validates_with_one_failure_and_one_skipped(project: Path) -> None:
    res = devloop("run", "nb.py", "--junit", "reports/junit.xml", cwd=project)
    assert res.returncode == 1, res.stderr
    text = (project / "reports" / "junit.xml").read_text(encoding="utf-8")
    xmlschema.XMLSchema(str(SCHEMA)).validate(text)  # raises with the reason when invalid

    suite = ET.fromstring(text).find("testsuite")
    assert suite is not None and suite.get("name") == "nb.py"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("3", "1", "0", "1")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["00 load", "01 check", "02 report"]
    assert all(float(c.get("time")) >= 0 for c in cases)
    assert "loaded 3" in cases[0].findtext("system-out")
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("type") == "ValueError"
    assert failure.get("message").startswith("nb.py:8: bad data")
    assert "nb.py:8: ValueError" in failure.text and "Traceback" in failure.text
    assert "checking" in cases[1].findtext("system-out")
    assert cases[2].find("skipped") is not None and cases[2].find("failure") is None
    run_id = records(project)[-1]["run_id"]
    assert suite.get("id") == run_id


def test_a_script_is_one_testcase(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('epoch 1')\n")
    res = devloop("run", "train.py", "--junit", "j.xml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "j.xml").read_text()
    xmlschema.XMLSchema(str(SCHEMA)).validate(text)
    cases = ET.fromstring(text).find("testsuite").findall("testcase")
    assert [c.get("name") for c in cases] == ["train.py"]
    assert "epoch 1" in cases[0].findtext("system-out")


def test_github_step_summary_has_the_cells_errors_and_provenance_but_no_secret(project: Path, tmp_path: Path) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "API_TOKEN": SECRET}
    res = devloop("run", "nb.py", cwd=project, env=env)
    assert res.returncode == 1, res.stderr
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")  # appended, not replaced
    record = records(project)[-1]
    assert "failed" in text
    for row in ("| 0 | load | 1 | ✅ ok |", "| 1 | check | 5 | ❌ failed |", "| 2 | report | 10 | ⏭️ skipped |"):
        assert row in text
    assert "`nb.py:8`" in text and "ValueError" in text
    assert record["run_id"] in text and record["git"]["commit"] in text
    assert SECRET not in text and "bad data: ***" in text
    for value in {**os.environ, **env}.values():
        if len(value) >= 8 and value not in ("true", "false"):
            assert value not in text, "an environment value leaked into the step summary"


def test_no_step_summary_outside_github_actions(project: Path, tmp_path: Path) -> None:
    summary = tmp_path / "step-summary.md"
    res = devloop("run", "nb.py", cwd=project, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert res.returncode == 1
    assert not summary.exists()


KILLED_WRITER = textwrap.dedent("""\
    import os, signal, sys
    from pathlib import Path
    from devloop.core.runs import store

    real_write = os.write

    def write_half_then_die(fd, data):
        data = bytes(data)
        real_write(fd, data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)

    os.write = write_half_then_die
    store.append(Path(sys.argv[1]), {"run_id": "killed-mid-write", "cells": [], "note": "x" * 4000})
    """)


def test_runs_jsonl_survives_a_writer_killed_mid_write(project: Path) -> None:
    first = devloop("run", "nb.py", cwd=project)
    assert first.returncode == 1
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(project)], cwd=project,
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    log = project / ".devloop" / "runs.jsonl"
    assert not log.read_bytes().endswith(b"\n")  # the partial last line is there

    (project / "nb.py").write_text(FIXED)
    second = devloop("run", "nb.py", cwd=project)
    assert second.returncode == 0, second.stderr

    raw = log.read_bytes().split(b"\n")
    assert raw[-1] == b""
    parsed = records(project)
    assert [r["ok"] for r in parsed] == [False, True]  # the partial line is skipped, never fatal
    assert any(line.startswith(b'{"cells": [], "note": "xxx') and not line.endswith(b"}") for line in raw)

    listed = devloop("runs", cwd=project)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "WHEN", "PROFILE"]
    assert len(lines) == 3  # header + the two complete runs
    assert lines[1].startswith(parsed[1]["run_id"][:8]) and " ok " in lines[1]
    assert "failed (1)" in lines[2]

    as_json = devloop("runs", "--json", cwd=project)
    assert [json.loads(line)["run_id"] for line in as_json.stdout.splitlines()] == \
        [parsed[1]["run_id"], parsed[0]["run_id"]]

    shown = devloop("runs", "show", parsed[0]["run_id"][:6], cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert parsed[0]["run_id"] in shown.stdout and "nb.py:8: ValueError" in shown.stdout
    missing = devloop("runs", "show", "zzzz", cwd=project)
    assert missing.returncode == 2 and "no run 'zzzz'" in missing.stderr


def test_a_record_holds_what_ran_where(project: Path) -> None:
    res = devloop("run", "nb.py", cwd=project)
    assert res.returncode == 1
    (record,) = records(project)
    assert len(record["run_id"]) == 36 and record["profile"] == "local"
    assert record["target"]["kind"] == "local" and record["target"]["host"]
    assert record["git"] == {"commit": git(project, "rev-parse", "HEAD").strip(), "dirty": False, "diff_sha256": ""}
    assert record["file"] == "nb.py" and record["exit_code"] == 1 and record["ok"] is False
    assert [(c["index"], c["title"], c["line"], c["state"]) for c in record["cells"]] == \
        [(0, "load", 1, "ok"), (1, "check", 5, "failed"), (2, "report", 10, "skipped")]
    assert all(len(c["hash"]) == 64 and c["ms"] >= 0 for c in record["cells"])
    assert record["errors"][0]["line"] == 8 and record["start"] <= record["end"]
    assert "gpu" in record and "sync" in record and record["devloop_version"]


def pin_snapshot(repo: Path) -> None:
    """What `devloop snapshot` records on a container profile: the image promote pins."""
    record_snapshot(repo, Snapshot(image="registry.example.com/ml/proj:snap", image_id="sha256:" + "ab" * 32,
                                   created="2026-11-30T09:00:00+00:00",
                                   details={"repo_digest": "registry.example.com/ml/proj@" + DIGEST}),
                    profile="local")


def argo_run_id(repo: Path) -> str:
    text = (repo / "pipelines" / "proj.argo.yaml").read_text()
    (line,) = {ln.strip() for ln in text.splitlines() if ln.strip().startswith("devloop.dev/run-id:")}
    return line.split(":", 1)[1].strip().strip("'\"")


def test_promote_cites_the_green_run_and_require_green_refuses_before(project: Path) -> None:
    pin_snapshot(project)
    assert devloop("run", "nb.py", cwd=project).returncode == 1

    refused = devloop("promote", "--require-green", cwd=project)
    assert refused.returncode == 2
    assert "no green run of this code on this profile" in refused.stderr
    assert not (project / "pipelines").exists()
    warned = devloop("promote", cwd=project)  # without the flag: written, and said
    assert warned.returncode == 0, warned.stderr
    assert "no green run of this code on this profile" in warned.stderr
    assert argo_run_id(project) == ""

    (project / "nb.py").write_text(FIXED)  # the fix, not committed yet: dirty, its diff hashed
    assert devloop("run", "nb.py", cwd=project).returncode == 0
    green = records(project)[-1]
    assert green["git"]["dirty"] is True and green["git"]["diff_sha256"]
    cited = devloop("promote", "--require-green", cwd=project)
    assert cited.returncode == 0, cited.stderr
    assert f"run id {green['run_id']}" in cited.stdout
    assert argo_run_id(project) == green["run_id"]

    git(project, "commit", "-q", "-am", "fix")  # new commit: that green run was of other code
    again = devloop("promote", "--require-green", cwd=project)
    assert again.returncode == 2 and "no green run" in again.stderr
    assert devloop("run", "nb.py", cwd=project).returncode == 0
    committed = devloop("promote", "--require-green", "--commit", cwd=project)
    assert committed.returncode == 0, committed.stderr
    assert argo_run_id(project) == records(project)[-1]["run_id"]

    # --check: the run id is provenance, not substance -- a newer green run is no drift
    assert devloop("run", "nb.py", cwd=project).returncode == 0
    check = devloop("promote", "--check", cwd=project)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_run_handed_to_a_live_watch_is_recorded_there_and_reported_here(project: Path) -> None:
    from tests.clitools import Watch

    (project / "profiles").mkdir()
    (project / "profiles" / "mirror.yaml").write_text(f"kind: local\nworkdir: {project.parent / 'wd'}\n")
    w = Watch(project, "nb.py", "-p", "mirror", timeout=60)
    try:
        w.until(lambda e: e["event"] == "run_done")
        mine = w.until(lambda e: e["event"] == "run_recorded")[-1]["record"]
        assert mine["mode"] == "session" and mine["session_id"] and mine["cells"][1]["state"] == "failed"
        ran = devloop("run", "nb.py", "-p", "mirror", "--junit", "handed.xml", cwd=project, timeout=60)
        assert ran.returncode == 1, ran.stdout + ran.stderr
    finally:
        assert w.stop() == 0
        devloop("stop", "--all", cwd=project, timeout=60)
    handed = records(project)[-1]
    assert handed["session_id"] == mine["session_id"] and handed["run_id"] != mine["run_id"]
    text = (project / "handed.xml").read_text()
    xmlschema.XMLSchema(str(SCHEMA)).validate(text)
    suite = ET.fromstring(text).find("testsuite")
    assert suite.get("id") == handed["run_id"]
    states = [("failure" if c.find("failure") is not None else "skipped" if c.find("skipped") is not None
               else "ok") for c in suite.findall("testcase")]
    assert states == ["skipped", "failure", "skipped"]  # cell 0 kept ok in the session, 2 never ran
