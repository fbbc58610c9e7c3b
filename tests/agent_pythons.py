"""The interpreters the agent is tested on: this one, and the oldest the agent supports (3.8).

Remote GPU hosts and images often carry an old system Python; the agent is stdlib-only and must
run there. A 3.8 is looked up on PATH and in pyenv's versions; without one, the tests that need
it skip with a message that says so (the rest still run on this interpreter).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

OLDEST = (3, 8)


def oldest_python() -> str | None:
    """Path of a Python 3.8 interpreter, if this machine has one."""
    name = "python%d.%d" % OLDEST
    candidates = [shutil.which(name)]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{OLDEST[0]}.{OLDEST[1]}.*/bin/{name}")))
    for path in candidates:
        if not path:
            continue
        try:
            out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "%d.%d" % OLDEST:
            return path
    return None


def agent_pythons() -> list[str]:
    """This interpreter first, then the oldest supported one when found."""
    old = oldest_python()
    return [sys.executable] + ([old] if old else [])
