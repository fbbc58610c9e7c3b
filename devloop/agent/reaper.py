"""Nothing a cell starts outlives its kernel -- daemons included (stdlib only, Linux).

A process group catches a cell's children, but not a daemon: it forks twice and calls
setsid(), so it leaves the group and its parent exits. As a *child subreaper*
(prctl PR_SET_CHILD_SUBREAPER) this process becomes the parent of such orphans instead of
init, so at the end it can find every descendant that is left (by its parent pid in /proc) and
end it: SIGTERM, then SIGKILL after a grace period, again until none is left (ending a middle
process hands its children to us). Where prctl or /proc is missing this does nothing.
"""

import os
import signal
import time

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """True when orphaned descendants will be re-parented to this process."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False


def children(pid=None):
    """Pids whose parent is `pid` (default: this process), read from /proc."""
    pid = os.getpid() if pid is None else pid
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[1]) == pid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def reap():
    """Collect exited children (orphans re-parented here) without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_descendants(grace=1.0, rounds=5):
    """SIGTERM every child left, SIGKILL it after `grace`; repeat for what they hand us."""
    for _ in range(rounds):
        reap()
        left = children()
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            reap()
            if not children():
                break
            time.sleep(0.02)
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)
    reap()
