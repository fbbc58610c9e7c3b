"""The app's promote dialog names the green run a promote would cite (issue 19): a real run
through the CLI on the local profile leaves the record, the dialog reads it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from textual.widgets import Label

from devloop.core.config import load_config
from devloop.core.promote import promote
from devloop.core.promote.cite import NO_GREEN, preview
from devloop.core.snapshots import record_snapshot
from devloop.core.targets.base import Snapshot
from devloop.ui.app import DevloopApp
from devloop.ui.widgets.dialogs import PromoteDialog
from tests.clitools import CELLS, devloop

pytestmark = pytest.mark.timeout(120)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull,
                       "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "devloop.toml").write_text('[project]\nname = "proj"\nentry = "nb.py"\n')
    (root / "nb.py").write_text(CELLS)
    (root / ".gitignore").write_text(".devloop/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", "https://github.com/acme/proj.git")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    record_snapshot(root, Snapshot(image="registry.example.com/proj:snap", image_id="sha256:" + "ab" * 32,
                                   created="2026-11-30T09:00:00+00:00",
                                   details={"repo_digest": "registry.example.com/proj@sha256:" + "01" * 32}),
                    profile="local")
    return root


async def open_dialog(app: DevloopApp, pilot) -> str:
    await pilot.press("p")
    for _ in range(50):
        await pilot.pause()
        if isinstance(app.screen, PromoteDialog):
            break
    assert isinstance(app.screen, PromoteDialog)
    return str(app.screen.query_one("#promote-cited", Label).render())


async def test_the_promote_dialog_shows_the_run_it_cites(repo: Path) -> None:
    config = load_config(repo)
    assert preview(config, "local").startswith(NO_GREEN)
    assert devloop("run", "nb.py", cwd=repo).returncode == 0
    run_id = json.loads((repo / ".devloop" / "runs.jsonl").read_text().splitlines()[-1])["run_id"]

    app = DevloopApp(config=config, profile="local", file="nb.py", promote=promote, promote_cite=preview)
    async with app.run_test(size=(120, 40)) as pilot:
        text = await open_dialog(app, pilot)
        assert text.startswith(f"cites green run {run_id[:8]}"), text
        await pilot.click("#promote-ok")
        for _ in range(200):
            await asyncio.sleep(0.05)
            if any(line.text.startswith("promoted") for line in app.store.all.lines):
                break
        promoted = [line.text for line in app.store.all.lines if line.text.startswith("promote")]
        assert promoted and f"run id {run_id}" in promoted[-1], promoted
