"""`f` under `[run] launcher = "torchrun"` cycles the log through the ranks (issue 16 item 9):
the real engine on `local`, the stand-in launcher tests/fakes/fake-torchrun as `torchrun`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from devloop.core import events as ev
from tests.ui.test_behaviour import SIZE, Recorder, make_app, quit_app, until

pytestmark = pytest.mark.timeout(120)

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "fake-torchrun"


async def test_f_cycles_the_ranks(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKE, bin_dir / "torchrun")
    (bin_dir / "torchrun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "proj"
    root.mkdir()
    (root / "nb.py").write_text('import os\nfor i in range(3):\n    print("step", i, "rank", os.environ["RANK"])\n')
    (root / "devloop.toml").write_text('[project]\nname = "ddp"\nentry = "nb.py"\n\n'
                                       '[run]\nlauncher = "torchrun"\nnproc_per_node = 2\n')
    rec = Recorder()
    app = make_app(root, rec)
    async with app.run_test(size=SIZE) as pilot:
        await until("the pass", lambda: rec.of(ev.RunDone))
        await until("both ranks' lines", lambda: sum(
            line.text.startswith(("[r0] ", "[r1] ")) for line in app.store.all.lines) == 6)
        await pilot.press("f")
        assert app.filter_rank == 0
        shown = [line.text for line in app.log_view._source]
        assert shown == ["[r0] step 0 rank 0", "[r0] step 1 rank 0", "[r0] step 2 rank 0"]
        await pilot.press("f")
        assert app.filter_rank == 1
        assert all(line.text.startswith("[r1] ") for line in app.log_view._source)
        await pilot.press("f")
        assert app.filter_rank is None
        assert any(line.text.startswith("[r0] ") for line in app.log_view._source)
        await quit_app(pilot)
