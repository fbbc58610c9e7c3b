"""`[run] launcher = "torchrun"`: a script runs as several processes, one per GPU, in the loop.

DDP needs processes, not a kernel: a percent file under a launcher is refused (cells would run
in one process). A script runs as `torchrun --standalone --nproc-per-node=N --tee 3 FILE ARGS`
on the target (the `torchrun` on the target's PATH); N is `[run] nproc_per_node`, "auto" being
the GPUs the profile asks for (every GPU the target sees for `gpus: all`; 1 without GPUs).

torchrun prefixes each worker's line with its rank (`[default1]:`, newer releases `[rank1]:`);
`tag_ranks` rewrites that as `[r1] `, the tag front ends filter on. When a worker fails,
torchrun prints a summary naming the first failed rank: `failed_rank` reads it, so the error
says which rank failed.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

LAUNCHERS = ("torchrun",)
_PREFIX = re.compile(r"^\[[A-Za-z_]+?(\d+)\]:", re.M)  # [default1]: or [rank1]:, not the summary's [0]:
_TAG = re.compile(r"^\[r(\d+)\] ")
_ROOT_CAUSE = re.compile(r"Root Cause \(first observed failure\):(.*)", re.S)
_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)", re.M)
_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)", re.M)


def resolve_nproc(value: Any, gpus_requested: str) -> int | str:
    """Processes per node: a number as written, or for "auto" the GPUs the profile asks for
    (a count, or the number of device ids; "gpu" for "all", which torchrun reads as every GPU
    it sees on the target; 1 without GPUs)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, value)
    text = str(gpus_requested or "").strip()
    if text.isdigit():
        return max(1, int(text))
    if text == "all":
        return "gpu"
    if text:
        ids = [p for p in text.replace("device=", "").split(",") if p.strip()]
        return max(1, len(ids))
    return 1


def launch_argv(launcher: str, nproc: int | str, script: str, args: Sequence[str] = ()) -> list[str]:
    if launcher != "torchrun":
        raise ValueError(f"unknown launcher {launcher!r}")
    return ["torchrun", "--standalone", f"--nproc-per-node={nproc}", "--tee", "3", script, *args]


def tag_ranks(text: str) -> str:
    """torchrun's per-line rank prefixes as `[rN] `."""
    return _PREFIX.sub(lambda m: f"[r{m.group(1)}] ", text) if "]:" in text else text


def rank_of(line: str) -> int | None:
    """The rank a tagged line came from, or None."""
    m = _TAG.match(line)
    return int(m.group(1)) if m else None


def failed_rank(output: str) -> tuple[int, int | None] | None:
    """(rank, exit code) of the first failed worker in torchrun's failure summary, or None."""
    m = _ROOT_CAUSE.search(output)
    part = m.group(1) if m else output
    rank = _RANK.search(part)
    if not rank:
        return None
    code = _EXIT.search(part)
    return int(rank.group(1)), (int(code.group(1)) if code else None)
