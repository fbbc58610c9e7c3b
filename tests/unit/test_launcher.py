"""core/launcher.py: rank tags, the failing rank from torchrun's summary, processes per node."""

from __future__ import annotations

from devloop.core.launcher import failed_rank, launch_argv, rank_of, resolve_nproc, tag_ranks

SUMMARY = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2024-05-01_10:00:01
  host      : node-1
  rank      : 3 (local_rank: 3)
  exitcode  : 1 (pid: 4242)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2024-05-01_10:00:00
  host      : node-1
  rank      : 2 (local_rank: 2)
  exitcode  : -9 (pid: 4241)
  error_file: <N/A>
============================================================
"""


def test_both_torchrun_prefix_styles_become_rank_tags():
    text = "[default0]:epoch 1\n[rank1]:epoch 1\n[0]:\nplain [default2]: not at a line start\n"
    assert tag_ranks(text) == "[r0] epoch 1\n[r1] epoch 1\n[0]:\nplain [default2]: not at a line start\n"
    assert rank_of("[r12] loss 0.1") == 12 and rank_of("loss [r1] ") is None


def test_the_root_cause_rank_is_the_failed_one():
    assert failed_rank(SUMMARY) == (2, -9)
    assert failed_rank("Traceback ...\nValueError\n") is None


def test_auto_is_the_profiles_gpu_count():
    assert resolve_nproc("auto", "4") == 4
    assert resolve_nproc("auto", "0,1") == 2 and resolve_nproc("auto", "device=2,3,5") == 3
    assert resolve_nproc("auto", "") == 1 and resolve_nproc("auto", "all") == "gpu"
    assert resolve_nproc(3, "8") == 3


def test_launch_argv():
    assert launch_argv("torchrun", 2, "train.py", ["--lr", "1"]) == [
        "torchrun", "--standalone", "--nproc-per-node=2", "--tee", "3", "train.py", "--lr", "1"]
