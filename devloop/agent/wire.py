"""The agent's wire format, shared by the agent and devloop's client side (stdlib only).

One place for the names both ends must agree on: the kernel protocol's ops and event types,
the sync stream's special members and frame header, and where a session's files live in the
workdir. `devloop.core` imports this module too, so the two sides cannot drift apart.
"""

import json

# -- kernel protocol (JSON lines; requests have "op", events have "type") ------------------
OP_EXEC = "exec"            # run a cell in the persistent namespace
OP_RUN = "run"              # run a script as a fresh child process
OP_INTERRUPT = "interrupt"  # KeyboardInterrupt in the running cell / SIGINT to the child
OP_RESET = "reset"          # fresh namespace
OP_PURGE = "purge"          # forget modules whose files were synced anew
OP_CHECK = "check"          # compile a pass's cells (magics transformed) before any runs
OP_FORGET = "forget"        # drop names from the namespace (ones no cell defines any more)
OP_GPU = "gpu"              # start / stop GPU sampling
OP_SHUTDOWN = "shutdown"    # end the kernel (and, for a session, the session)
OP_HELLO = "hello"          # session: the first line on a connection (secret, last seq seen)
OP_DETACH = "detach"        # session: this front end leaves; the kernel goes on
OP_INPUT_REPLY = "input_reply"  # a line (or end of input) for the cell waiting in input()

EV_READY = "ready"
EV_OUT = "out"
EV_DONE = "done"
EV_ERROR = "error"
EV_GPU = "gpu"
EV_LOG = "log"
EV_RELAY = "relay"          # the relay's own word: started / attached / no_session / kernel_gone
EV_DETACHED = "detached"    # this connection was taken over by another front end
EV_REFUSED = "refused"      # the hello was refused (wrong secret)
EV_BYE = "bye"              # the kernel ends on purpose (shutdown, idle stop)
EV_STATUS = "status"        # the answer to a peek hello (`devloop sessions`)
EV_INPUT = "input"          # a cell waits in input() / sys.stdin: {n, prompt, password}
EV_CHECKED = "checked"      # an exec's `precheck` passed: its cell starts now (before any `out`)

# -- sessions: files under the remote workdir ---------------------------------------------
STATE_DIR = ".devloop"
SESSION_DIR = ".devloop/session"           # 0700; everything below is the session's
SOCKET_PATH = ".devloop/session/kernel.sock"  # relative: a unix socket path is <= 107 bytes
SESSION_FILE = ".devloop/session/session.json"
EXIT_FILE = ".devloop/session/exit.json"   # how the last kernel ended (written by its supervisor)
KERNEL_LOG = ".devloop/session/kernel.log"
EVENTS_LOG = ".devloop/session/events.log"  # events that arrived while nobody was attached

# -- sync stream ----------------------------------------------------------------------------
CONTROL_NAME = ".devloop-control.json"  # the first member: deletes, modes, entries to record
# last members when the sender hashed files while sending them: {REL: sha256} for entries sent
# with "", and the files that changed while they were read ([REL...]: not recorded as written);
# inside .devloop/, so never a user's file
HASHES_NAME = ".devloop/hashes.json"
UNSENT_NAME = ".devloop/unsent.json"
MANIFEST_REQUEST = 0xFFFFFFFF  # a kept receiver's frame header that asks for the manifest


def encode(obj):
    """One protocol line: compact JSON, UTF-8, newline-terminated (lone surrogates escaped)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    return text.encode("utf-8", "backslashreplace")


def decode(line):
    """The object on one protocol line; ValueError when it is not a JSON object."""
    obj = json.loads(line.decode("utf-8", "replace") if isinstance(line, bytes) else line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj
