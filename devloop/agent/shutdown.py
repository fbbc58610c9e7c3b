"""A kernel's clean exit: the user's pools and their helpers end as they would under `python`.

`python file.py` ends by running the exit hooks libraries registered -- `threading`'s
(concurrent.futures, joblib's loky executor) and then `atexit`'s (multiprocessing pools, loky's
resource tracker) -- so worker pools shut down in order. The kernel runs the same hooks *before*
it ends the processes left over (reaper.end_descendants): SIGTERMing a loky worker first made its
manager print a false "LokyProcess-1 failed ... FileNotFoundError" and kept the kernel waiting.
Bounded: hooks that hang (a worker stuck in C) are left behind after `timeout` seconds.
Stdlib only, Python 3.8+.
"""

import atexit
import sys
import threading


def run_exit_hooks(timeout=2.0):
    """Run threading's and atexit's exit hooks once, in a helper thread, for at most `timeout`
    seconds; True when they finished. They are not run again at interpreter exit."""
    def hooks():
        calls = getattr(threading, "_threading_atexits", None)  # 3.9+: threading._register_atexit
        if calls:
            pending = list(calls)
            del calls[:]
            for call in reversed(pending):
                try:
                    call()
                except Exception:  # noqa: BLE001 - one library's hook must not stop the others
                    pass
        try:
            atexit._run_exitfuncs()  # runs each hook once and clears them (errors are printed)
        except Exception:  # noqa: BLE001
            pass
        _stop_resource_trackers()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass

    worker = threading.Thread(target=hooks, name="devloop-exit-hooks", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()


# resource trackers ignore SIGTERM and end when their pipe closes: closed here, each ends at once
# (the end_descendants that follows would wait a second for them, then SIGKILL them)
_TRACKERS = ("multiprocessing.resource_tracker", "joblib.externals.loky.backend.resource_tracker",
             "loky.backend.resource_tracker")


def _stop_resource_trackers():
    for name in _TRACKERS:
        tracker = getattr(sys.modules.get(name), "_resource_tracker", None)
        stop = getattr(tracker, "_stop", None)
        if stop is not None:
            try:
                stop()
            except Exception:  # noqa: BLE001 - a tracker already gone
                pass
