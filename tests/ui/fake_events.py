"""Fixed event sequences for the snapshot tests: what a session would emit, with no target and no
clock. Every number is a literal, so the screens render the same on every run."""

from __future__ import annotations

from devloop.core import events as ev

GiB = 2**30

CELLS = (
    {"cell": 0, "title": "imports", "line": 1},
    {"cell": 1, "title": "load data", "line": 6},
    {"cell": 2, "title": "model", "line": 18},
    {"cell": 3, "title": "train", "line": 30},
    {"cell": 4, "title": "plot", "line": 52},
)


def start() -> list[ev.Event]:
    return [
        ev.TargetState("starting", "starting the docker target", "docker-gpu", "docker"),
        ev.FileParsed("train.py", False, CELLS),
        ev.SyncDone(files=42, bytes=1_843_200, deleted=0, ms=212.0),
        ev.KernelReady(pid=41, python="3.11.9", cwd="/workspace"),
        ev.TargetState("ready", "docker 3f2a9c1d", "docker-gpu", "docker"),
    ]


def streaming() -> list[ev.Event]:
    events = start() + [ev.CellsPlanned((0, 1, 2, 3, 4), "run all")]
    for cell, ms in ((0, 812.0), (1, 10_420.5), (2, 95.2)):
        events += [ev.CellState(cell, "running"), ev.CellStart(cell, CELLS[cell]["line"], CELLS[cell]["title"])]
        if cell == 1:
            events.append(ev.Output(1, "stdout", "loading shards 1..8\nrows: 1,204,331\n"))
        events += [ev.CellDone(cell, True, ms), ev.CellState(cell, "ok")]
    events += [ev.CellState(4, "pending"), ev.CellState(3, "running"), ev.CellStart(3, 30, "train")]
    for epoch in range(1, 15):
        loss = 2.5 / epoch
        events.append(ev.Output(3, "stdout", f"epoch {epoch:>2}  loss \x1b[32m{loss:.4f}\x1b[0m  "
                                             f"lr 3e-4  \x1b[2m{epoch * 412} samples/s\x1b[0m\n"))
        if epoch == 6:
            events.append(ev.Output(3, "stderr", "\x1b[33mUserWarning: grad norm 14.2 clipped\x1b[0m\n"))
    events.append(ev.Output(3, "stdout", "epoch 15  loss "))  # a line still being written
    return events


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "train.py", line 41, in <module>\n'
    "    loss = criterion(model(batch), target)\n"
    '  File "train.py", line 24, in forward\n'
    "    return self.head(x.view(x.size(0), -1))\n"
    "RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x2048 and 1024x10)\n"
)


def failed() -> list[ev.Event]:
    events = start() + [ev.CellsPlanned((0, 1, 2, 3, 4), "run all")]
    for cell in (0, 1, 2):
        events += [ev.CellState(cell, "running"), ev.CellStart(cell, CELLS[cell]["line"], CELLS[cell]["title"]),
                   ev.CellDone(cell, True, 100.0 * (cell + 1)), ev.CellState(cell, "ok")]
    events += [
        ev.CellState(3, "running"), ev.CellStart(3, 30, "train"),
        ev.Output(3, "stdout", "building the model\n"),
        ev.Output(3, "stderr", "warning: mixed precision off\n"),
        ev.CellError(3, "RuntimeError", "mat1 and mat2 shapes cannot be multiplied (64x2048 and 1024x10)",
                     "train.py", 41, TRACEBACK),
        ev.CellDone(3, False, 1532.0), ev.CellState(3, "failed"), ev.CellState(4, "stale"),
        ev.RunDone(False, 1, 4, 2132.0),
    ]
    return events


def gpu(step: int) -> ev.GpuSample:
    """Sample `step` of two busy GPUs (deterministic waves)."""
    wave = (0, 12, 30, 55, 80, 95, 88, 70, 64, 72, 90, 97)
    return ev.GpuSample(True, (
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0", "util": wave[step % len(wave)],
         "mem_used": 61.3 * GiB, "mem_total": 80 * GiB, "temp": 67, "power": 512.4, "power_limit": 700,
         "processes": [{"pid": 41}]},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "util": wave[(step + 5) % len(wave)] // 2,
         "mem_used": 12.0 * GiB, "mem_total": 80 * GiB, "temp": "n/a", "power": "n/a", "power_limit": "n/a",
         "processes": []},
    ), source="nvml")


def two_gpus() -> list[ev.Event]:
    return streaming() + [gpu(step) for step in range(40)]


def no_gpu() -> list[ev.Event]:
    return start() + [ev.GpuSample(False, reason="NVML: NVML Shared Library Not Found; nvidia-smi not found on PATH")]


def attached() -> list[ev.Event]:
    """`devloop attach` to a session left running: cells 0-2 kept ok, cell 3 still running (it
    went on while nobody was attached), its output from the gap replayed once, then live."""
    events = [
        ev.TargetState("starting", "starting the docker target", "docker-gpu", "docker"),
        ev.FileParsed("train.py", False, CELLS),
        ev.KernelReady(pid=41, python="3.11.9", cwd="/workspace"),
        ev.CellState(0, "ok"), ev.CellState(1, "ok"), ev.CellState(2, "ok"), ev.CellState(3, "running"),
        ev.TargetState("attached", "attached to the running session 5e1f09ab (started 42 min ago): "
                                   "3 of 5 cells' state kept", "docker-gpu", "docker"),
    ]
    for epoch in range(1, 9):
        events.append(ev.Output(3, "stdout", f"epoch {epoch:>2}  loss {2.5 / epoch:.4f}\n", replayed=True))
    events += [ev.TargetState("ready", "docker 3f2a9c1d", "docker-gpu", "docker"),
               ev.Output(3, "stdout", "epoch  9  loss 0.2778\n")]
    return events


def reconnecting() -> list[ev.Event]:
    """The link dropped while cell 3 streams: the kernel goes on, devloop reattaches."""
    return streaming() + [
        ev.Output(3, "stdout", "0.1667\n"),
        ev.TargetState("reconnecting", "the connection to the target dropped; the kernel goes on there "
                                       "-- reattaching", "docker-gpu", "docker"),
        ev.TargetState("reconnecting", "reattaching (try 2)", "docker-gpu", "docker"),
    ]


def reattached() -> list[ev.Event]:
    """After `reconnecting()`: the same kernel again, the gap's output replayed, then live."""
    return reconnecting() + [
        ev.TargetState("ready", "reattached to the same kernel: its state is kept; output from the gap "
                                "is replayed", "docker-gpu", "docker"),
        ev.Output(3, "stdout", "epoch 16  loss 0.1563\n", replayed=True),
        ev.Output(3, "stdout", "epoch 17  loss 0.1471\n", replayed=True),
        ev.Output(3, "stdout", "epoch 18  loss 0.1389\n"),
    ]


TQDM = ("\rtraining epoch 3/10:  45%|████████████████▎                    | 45000/100000 "
        "[00:01<00:02, 23456.78it/s, loss=0.2154, acc=0.9312, lr=3.0e-04, grad_norm=1.234]")


def tqdm_running() -> list[ev.Event]:
    """Cell 3 running: a wide warning line, then a tqdm bar wider than the screen, redrawn."""
    events = start() + [ev.CellsPlanned((0, 1, 2, 3, 4), "run all")]
    for cell, ms in ((0, 812.0), (1, 3_280.0), (2, 95.2)):
        events += [ev.CellState(cell, "running"), ev.CellStart(cell, CELLS[cell]["line"], CELLS[cell]["title"]),
                   ev.CellDone(cell, True, ms), ev.CellState(cell, "ok")]
    events += [ev.CellState(4, "pending"), ev.CellState(3, "running"), ev.CellStart(3, 30, "train")]
    for epoch in range(1, 3):
        events.append(ev.Output(3, "stdout", f"epoch {epoch}: loss {2.5 / epoch:.4f}\n"))
    events.append(ev.Output(3, "stderr", "/opt/venv/lib/python3.11/site-packages/torch/utils/data/"
                                         "dataloader.py:558: UserWarning: This DataLoader will create 8 "
                                         "worker processes in total. Our suggested max number of worker "
                                         "in current system is 4\n"))
    for step in (10, 20, 30):
        events.append(ev.Output(3, "stderr", TQDM.replace(" 45%", f" {step}%")))
    events.append(ev.Output(3, "stderr", TQDM))
    return events


def done() -> list[ev.Event]:
    """Every cell ran; the last line of the last cell is its result."""
    events = start() + [ev.CellsPlanned((0, 1, 2, 3, 4), "run all")]
    for cell, ms in ((0, 812.0), (1, 3_280.0), (2, 95.2), (3, 61_520.0), (4, 402.0)):
        events += [ev.CellState(cell, "running"), ev.CellStart(cell, CELLS[cell]["line"], CELLS[cell]["title"])]
        if cell == 3:
            for epoch in range(1, 21):
                events.append(ev.Output(3, "stdout", f"epoch {epoch:>2}: loss {2.5 / epoch:.4f}\n"))
            events.append(ev.Output(3, "stderr", TQDM.replace(" 45%", "100%") + "\n"))
        if cell == 4:
            events.append(ev.Output(4, "stdout", "test accuracy 0.9312\n"))
        events += [ev.CellDone(cell, True, ms), ev.CellState(cell, "ok")]
    events.append(ev.RunDone(True, 0, 5, 66_109.2))
    return events
