"""End to end on the test cluster through the real CLI and Session: `devloop run` on the
`kubernetes` profile gives the same events as on `local`, `devloop watch` reruns the edited cell
and leaves no pod behind after Ctrl-C, a GPU request fails fast with the scheduler's reason, and
a pod deleted from outside mid-session is recreated, resynced and reported."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from devloop.core import events as ev
from devloop.core.config import load_config
from devloop.core.session import Session
from tests.clitools import RELAYED_CELLS as CELLS
from tests.clitools import Watch, events, observable, outputs
from tests.clitools import devloop as _devloop
from tests.integration.kube.conftest import kube_profile_yaml, pods_of

pytestmark = pytest.mark.kube


def devloop(*args: str, cwd: Path, timeout: float = 180):
    return _devloop(*args, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("source, name, code", [
    (CELLS, "nb.py", 0),
    ("# %%\nx = 1\n# %% boom\ny = 2\nz = y / 0\n# %%\nprint('never')\n", "bad.py", 1),
    ("import sys\nprint('hello from script')\nsys.exit(3)\n", "script.py", 3),
])
def test_run_on_kubernetes_gives_the_same_events_as_local(kube_project: Path, core_api, source: str,
                                                          name: str, code: int) -> None:
    (kube_project / name).write_text(source)
    local = devloop("run", name, "--json", cwd=kube_project)
    remote = devloop("run", name, "--profile", "kube", "--json", cwd=kube_project)
    assert local.returncode == code, local.stderr
    assert remote.returncode == code, remote.stderr
    assert observable(events(remote.stdout)) == observable(events(local.stdout))
    ready = [e for e in events(remote.stdout) if e["event"] == "target" and e["state"] == "ready"]
    assert ready and ready[0]["kind"] == "kubernetes"
    project = load_config(kube_project).project.name
    assert pods_of(core_api, project) == []  # deleted on exit


def test_gpu_request_fails_fast_through_the_cli(kube_project: Path) -> None:
    (kube_project / "profiles" / "kube-gpu.yaml").write_text(kube_profile_yaml(gpus=1))
    (kube_project / "nb.py").write_text(CELLS)
    res = devloop("run", "nb.py", "--profile", "kube-gpu", "--json", cwd=kube_project, timeout=90)
    assert res.returncode != 0
    assert "Insufficient nvidia.com/gpu" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr


def test_watch_reruns_the_edited_cell_and_ctrl_c_deletes_the_pod(kube_project: Path, core_api) -> None:
    nb = kube_project / "nb.py"
    nb.write_text(CELLS)
    project = load_config(kube_project).project.name
    w = Watch(kube_project, "nb.py", "--profile", "kube", timeout=120)
    try:
        first = w.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in first if e["event"] == "cell_start"] == [0, 1, 2]
        assert len(pods_of(core_api, project)) == 1
        time.sleep(0.3)
        nb.write_text(CELLS.replace('print("total", sum(doubled))', 'print("sum is", sum(doubled))'))
        second = w.until(lambda e: e["event"] == "run_done")
        assert [e["cell"] for e in second if e["event"] == "cell_start"] == [2]
        assert outputs(second) == "sum is 12\n"
    finally:
        w.proc.send_signal(signal.SIGINT)
        code = w.proc.wait(timeout=60)
    assert code == 0
    assert pods_of(core_api, project) == []


async def test_pod_deleted_mid_session_is_recreated_resynced_and_reported(kube_project: Path, core_api) -> None:
    nb = kube_project / "nb.py"
    nb.write_text(CELLS)
    (kube_project / "helper.py").write_text("VALUE = 41\n")
    config = load_config(kube_project)
    seen: list[ev.Event] = []
    session = Session(config, config.profile("kube"), nb, seen.append)
    try:
        first = await session.start()
        await session.run_all()
        core_api.delete_namespaced_pod(first.id, "default", grace_period_seconds=0)
        seen.clear()
        nb.write_text(CELLS + "\n# %% helper\nimport helper\nprint('helper', helper.VALUE + 1)\n")
        done = await session.on_changes({"nb.py"})
        assert done is not None and done.ok, [e for e in seen if isinstance(e, (ev.TargetState, ev.CellError))]
        states = [e.state for e in seen if isinstance(e, ev.TargetState)]
        assert "reconnecting" in states and "ready" in states
        text = "".join(e.text for e in seen if isinstance(e, ev.Output))
        assert "helper 42" in text  # the untouched helper.py was resynced into the new pod
        # the new pod's kernel lacked the earlier cells' state, so they reran before the new one
        assert [e.cell for e in seen if isinstance(e, ev.CellStart)] == [0, 1, 2, 3]
        assert "loaded 3" in text and "doubled [2, 4, 6]" in text
        assert session.info is not None and session.info.id != first.id
        assert [p.metadata.name for p in pods_of(core_api, config.project.name)] == [session.info.id]
    finally:
        await session.close()
    assert pods_of(core_api, config.project.name) == []
