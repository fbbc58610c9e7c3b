"""Entry point of the agent bundle: `python3 agent.pyz MODE [ARGS]`.

Modes: `kernel` (the default; the exec/run protocol on stdin/stdout; `kernel --serve`: a session
kernel detached from the channel, on a unix socket), `attach [--start]` (relay a front end to the
session kernel of the cwd, starting one if asked), `session-stop` (end it), `receive ROOT` (a sync tar stream on stdin, extracted safely under ROOT), `manifest ROOT`
(print what devloop last synced there), `gpu` (print one GPU sample as JSON), `connect HOST PORT`
(relay one forwarded connection: portrelay.py), `pull ROOT` (list and send outputs back:
pullsend.py).
"""
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = argv.pop(0) if argv else "kernel"
    if mode == "kernel" and "--serve" in argv:
        from .daemon import serve_main as run
    elif mode == "kernel":
        from .kernel import main as run
    elif mode == "attach":
        from .relay import attach_main as run
    elif mode == "session-stop":
        from .relay import stop_main as run
    elif mode == "receive":
        from .syncrecv import receive_main as run
    elif mode == "manifest":
        from .syncrecv import manifest_main as run
    elif mode == "gpu":
        from .gpu import gpu_main as run
    elif mode == "pull":
        from .pullsend import pull_main as run
    elif mode == "connect":
        from .portrelay import connect_main as run
    else:
        sys.stderr.write("devloop agent: unknown mode %r (kernel, attach, session-stop, receive, manifest, gpu, connect, pull)\n" % mode)
        return 2
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
