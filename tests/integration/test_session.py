"""The Session API the front ends call, on the real local target with a real kernel."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from pathlib import Path


from devloop.core import events as ev
from devloop.core.config import load_config
from devloop.core.session import Session


class Recorder:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    def started(self) -> list[int]:
        return [e.cell for e in self.of(ev.CellStart)]

    def text(self) -> str:
        return "".join(e.text for e in self.of(ev.Output))

    def clear(self) -> None:
        self.events.clear()

    async def until_run_done(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until a pass ended; the caller asserts what ran."""
        for _ in range(int(timeout / 0.05)):
            if self.of(ev.RunDone):
                return
            await asyncio.sleep(0.05)


async def make(tmp_path: Path, source: str, toml: str = "") -> tuple[Session, Recorder, Path]:
    if toml:
        (tmp_path / "devloop.toml").write_text(toml)
    f = tmp_path / "nb.py"
    f.write_text(textwrap.dedent(source))
    config = load_config(tmp_path)
    rec = Recorder()
    s = Session(config, config.profile(None), f, rec)
    await s.start()
    return s, rec, f


REACTIVE = """\
    # %% a
    a = 1
    # %% b
    b = 10
    # %% uses a
    print("a+1 =", a + 1)
    # %% uses b
    print("b+1 =", b + 1)
    """


async def test_reactive_policy_reruns_only_dependents(tmp_path: Path) -> None:
    s, rec, f = await make(tmp_path, REACTIVE, '[run]\nrerun = "reactive"\n')
    try:
        await s.run_all()
        assert rec.started() == [0, 1, 2, 3]
        rec.clear()
        f.write_text(textwrap.dedent(REACTIVE).replace("a = 1", "a = 5"))
        await s.on_changes({"nb.py"})
        assert rec.started() == [0, 2]
        assert "a+1 = 6" in rec.text() and "b+1" not in rec.text()
    finally:
        await s.close()


async def test_linear_rerun_of_a_selected_cell_runs_it_and_what_follows(tmp_path: Path) -> None:
    s, rec, f = await make(tmp_path, REACTIVE)
    try:
        await s.run_all()
        rec.clear()
        await s.rerun_cell(1)
        assert rec.started() == [1, 2, 3]
    finally:
        await s.close()


async def test_interrupt_stops_a_running_cell_and_the_kernel_survives(tmp_path: Path) -> None:
    s, rec, f = await make(tmp_path, """\
        # %%
        x = 7
        # %%
        import time
        print("start", flush=True)
        time.sleep(600)
        """)
    try:
        task = asyncio.create_task(s.run_all())
        for _ in range(200):
            if "start" in rec.text():
                break
            await asyncio.sleep(0.05)
        await s.interrupt()
        done = await asyncio.wait_for(task, 10)
        assert done is not None and not done.ok
        assert [e.type for e in rec.of(ev.CellError)] == ["KeyboardInterrupt"]
        rec.clear()
        f.write_text("# %%\nx = 7\n# %%\nprint('x is still', x)\n")
        await s.on_changes({"nb.py"})
        assert rec.started() == [1]
        assert "x is still 7" in rec.text()
    finally:
        await s.close()


async def test_restart_kernel_marks_everything_stale_and_reruns_all(tmp_path: Path) -> None:
    s, rec, f = await make(tmp_path, REACTIVE)
    try:
        await s.run_all()
        pid1 = rec.of(ev.KernelReady)[0].pid
        rec.clear()
        await s.restart_kernel()
        assert {e.state for e in rec.of(ev.CellState)} == {"stale"}
        assert rec.of(ev.KernelReady)[0].pid != pid1
        rec.clear()
        await s.run_changed()
        assert rec.started() == [0, 1, 2, 3]
    finally:
        await s.close()


async def test_edited_helper_module_is_reimported_and_its_importers_rerun(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    s, rec, f = await make(tmp_path, """\
        # %% slow
        data = list(range(3))
        # %% uses helper
        import helper
        print("value", helper.VALUE)
        # %% plot
        print("plot", len(data))
        """)
    try:
        await s.run_all()
        rec.clear()
        (tmp_path / "helper.py").write_text("VALUE = 2\n")
        await s.on_changes({"helper.py"})
        assert rec.started() == [1, 2]
        assert "value 2" in rec.text()
    finally:
        await s.close()


async def test_a_save_to_an_earlier_cell_interrupts_the_stale_pass(tmp_path: Path) -> None:
    src = "# %%\nn = 1\n# %%\nimport time\nprint('n', n, flush=True)\ntime.sleep(600)\n"
    s, rec, f = await make(tmp_path, src)
    try:
        first = asyncio.create_task(s.run_all())
        for _ in range(200):
            if "n 1" in rec.text():
                break
            await asyncio.sleep(0.05)
        f.write_text(src.replace("n = 1", "n = 2").replace("time.sleep(600)", "pass"))
        result = await asyncio.wait_for(s.on_changes({"nb.py"}), 20)
        await asyncio.wait_for(first, 5)
        assert result is not None and result.ok
        assert "n 2" in rec.text()
    finally:
        await s.close()


async def test_setup_runs_when_a_dependency_file_changes(tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    proj = tmp_path / "proj"
    (proj / "profiles").mkdir(parents=True)
    (proj / "profiles" / "mirror.yaml").write_text(
        f"kind: local\nworkdir: {remote}\nsetup: echo installing $(cat requirements.txt)\n")
    (proj / "requirements.txt").write_text("numpy==1.0\n")
    f = proj / "nb.py"
    f.write_text("# %%\nprint('hi')\n")
    config = load_config(proj)
    rec = Recorder()
    s = Session(config, config.profile("mirror"), f, rec)
    await s.start()
    try:
        rec.clear()
        (proj / "requirements.txt").write_text("numpy==2.0\n")
        await s.on_changes({"requirements.txt"})
        assert "installing numpy==2.0" in rec.text()
        assert [e.state for e in rec.of(ev.TargetState)][:1] == ["setup"]
    finally:
        await s.close()


@contextlib.asynccontextmanager
async def watched(tmp_path: Path, source: str):
    """A started session watching the project (its first pass not run yet); closed after."""
    s, rec, f = await make(tmp_path, source)
    stop = asyncio.Event()
    watcher = asyncio.create_task(s.watch(stop))
    try:
        await asyncio.sleep(0.2)  # the watcher is armed
        yield s, rec, f
    finally:
        stop.set()
        watcher.cancel()
        await s.close()


async def test_watch_off_remembers_saves_until_turned_on(tmp_path: Path) -> None:
    async with watched(tmp_path, REACTIVE) as (s, rec, f):
        await s.run_all()
        await asyncio.sleep(0.3)
        s.set_watching(False)
        rec.clear()
        f.write_text(textwrap.dedent(REACTIVE).replace('"b+1 ="', '"b plus one ="'))
        await asyncio.sleep(1.0)
        assert rec.started() == []
        s.set_watching(True)
        await rec.until_run_done()
        assert rec.started() == [3]


async def test_a_kernel_killed_while_idle_makes_the_next_save_rerun_from_the_top(tmp_path: Path) -> None:
    """The state of cells 0..n died with the kernel; a save to the last cell must not run it alone."""
    import os
    import signal

    s, rec, f = await make(tmp_path, REACTIVE)
    try:
        await s.run_all()
        pid = rec.of(ev.KernelReady)[-1].pid
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not s.kernel.alive:
                break
            await asyncio.sleep(0.05)
        rec.clear()
        f.write_text(textwrap.dedent(REACTIVE).replace('"b+1 ="', '"b plus 1 ="'))
        done = await s.on_changes({"nb.py"})
        assert done is not None and done.ok, rec.of(ev.CellError)
        assert rec.started() == [0, 1, 2, 3]
        assert "b plus 1 = 11" in rec.text()
    finally:
        await s.close()


async def test_files_a_failing_cell_writes_into_the_project_do_not_loop_it(tmp_path: Path) -> None:
    """A cell that writes results.csv and then fails must not be rerun by its own output (that
    would loop for ever); the file is still synced. A later save of the cell does rerun it."""
    source = """\
        # %% ok
        x = 1
        # %% writes then fails
        open("results.csv", "w").write("a,b\\n")
        raise ValueError("bad")
        """
    async with watched(tmp_path, source) as (s, rec, f):
        await s.run_all()
        await asyncio.sleep(1.5)  # the watcher saw results.csv by now
        assert rec.started() == [0, 1]
        rec.clear()
        f.write_text(textwrap.dedent(source).replace("bad", "still bad"))
        await rec.until_run_done()
        assert rec.started() == [1]


async def test_a_script_writing_its_results_into_the_project_runs_once(tmp_path: Path) -> None:
    async with watched(tmp_path, "import time\nopen('metrics.json', 'w').write('{}')\ntime.sleep(0.3)\n"
                                  "open('final.txt', 'w').write('done')\n") as (s, rec, f):
        await s.run_all()
        await asyncio.sleep(1.5)
        assert rec.started() == [0]


async def test_a_data_file_saved_later_reruns_the_cell_that_failed_on_it(tmp_path: Path) -> None:
    """Outside a run, a saved data file is the user's edit: the cell that failed without it reruns."""
    source = """\
        # %% load
        rows = open("data.txt").read().split()
        print("rows", len(rows))
        """
    async with watched(tmp_path, source) as (s, rec, f):
        assert not (await s.run_all()).ok
        await asyncio.sleep(1.2)  # past the grace period after the run
        rec.clear()
        (tmp_path / "data.txt").write_text("a b c\n")
        await rec.until_run_done()
        assert rec.started() == [0] and "rows 3" in rec.text()


class BrokenOncePass(Session):
    """Fault injection: a devloop bug in the first pass (no real input is known to make one)."""

    broken = True

    async def _pass(self, indices, reason):  # noqa: ANN001 - Session's own
        if self.broken:
            self.broken = False
            raise TypeError("a bug in devloop")
        return await super()._pass(indices, reason)


async def test_a_devloop_error_in_a_pass_is_said_and_the_next_pass_runs(tmp_path: Path) -> None:
    (tmp_path / "nb.py").write_text("# %% a\nprint('ran a')\n")
    config = load_config(tmp_path)
    rec = Recorder()
    s = BrokenOncePass(config, config.profile(None), tmp_path / "nb.py", rec)
    await s.start()
    try:
        done = await s.run_all()  # ends (failed) instead of leaving the front end waiting
        assert done is not None and not done.ok and done.exit_code == 1
        (said,) = [e for e in rec.of(ev.TargetState) if e.state == "error"]
        assert "TypeError: a bug in devloop" in said.message and "-v" in said.message
        rec.clear()
        done = await s.run_all()
        assert done.ok and "ran a" in rec.text()
    finally:
        await s.close()
