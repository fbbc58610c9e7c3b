"""stdin for cells: `input()` and `sys.stdin` ask the front end, as Jupyter's input request.

fd 0 of the kernel is /dev/null (the protocol owns the real stdin), so a cell's `input()` would
raise EOFError at once. Here `input(prompt)` writes the prompt to stdout as Python does, drains
the output (the prompt reaches the front end first), emits an `input` event
`{"type":"input","id":RID,"n":N,"prompt":P,"password":false}` and waits for the request
`{"op":"input_reply","n":N,"value":TEXT}` -- or `{"op":"input_reply","n":N,"eof":true,
"reason":WHY}`, which raises EOFError saying why (no terminal or pipe there). `sys.stdin`'s
readline / read / iteration ask the same way, a line at a time, and `getpass.getpass()` asks
with `"password":true` (the front end hides the typing). The question being waited on is
in the kernel's status (`input`), so a front end that attaches later asks it once; replayed
`input` events are not asked again. Waiting is interruptible (the `interrupt` request).
Stdlib only, Python 3.8+.
"""

import builtins
import getpass
import io
import sys
import threading

_BUILTIN_INPUT = builtins.input
_BUILTIN_GETPASS = getpass.getpass


class Bridge:
    """The kernel's side of an input request: ask (main thread), answer (reader thread)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.cond = threading.Condition()
        self.n = 0
        self.waiting = None   # {"n", "prompt", "id", "password"} while a cell waits for a line
        self.replies = {}
        self.stdin = Stdin(self)
        self._original_stdin = None

    def install(self):
        """Route the cell's input() and sys.stdin here (again, if the kernel's were put back)."""
        if builtins.input is _BUILTIN_INPUT:
            builtins.input = self.input
        current = sys.stdin
        if self._original_stdin is None:
            self._original_stdin = current
        if current is self._original_stdin or getattr(current, "closed", False):
            sys.stdin = self.stdin  # a cell's own replacement (a StringIO in a test) is kept
        if getpass.getpass is _BUILTIN_GETPASS:
            getpass.getpass = self.getpass  # a password prompt: the front end hides what is typed

    def ask(self, prompt, password=False):
        """Emit the request and wait for its reply: {"value": str} or {"eof": True, ...}."""
        kernel = self.kernel
        if prompt:
            try:
                sys.stdout.write(prompt)
            except Exception:  # noqa: BLE001 - a closed stdout still gets the request
                pass
        kernel._finish_request()  # flush + drain: the prompt's `out` precedes the request
        with self.cond:
            self.n += 1
            n = self.n
            self.waiting = {"n": n, "prompt": prompt, "id": kernel.current, "password": bool(password)}
        kernel.proto.emit({"type": "input", "id": kernel.current, "n": n, "prompt": prompt,
                           "password": bool(password)})
        try:
            with self.cond:
                while n not in self.replies:
                    self.cond.wait(0.25)  # a timeout keeps the wait interruptible (SIGINT)
                return self.replies.pop(n)
        finally:
            with self.cond:
                if self.waiting is not None and self.waiting["n"] == n:
                    self.waiting = None
                self.replies.pop(n, None)

    def answer(self, req):
        """Reader thread: an `input_reply`; one for a question nobody waits on is dropped."""
        try:
            n = int(req.get("n"))
        except (TypeError, ValueError):
            return
        with self.cond:
            if self.waiting is not None and self.waiting["n"] == n:
                self.replies[n] = req
                self.cond.notify_all()

    def input(self, prompt=""):
        """builtins.input for cells."""
        return self._line(str(prompt), False, "a line")

    def getpass(self, prompt="Password: ", stream=None):
        """getpass.getpass for cells: the kernel has no terminal (Python's own would warn and
        echo through sys.stdin); the front end asks with the typing hidden."""
        return self._line(str(prompt), True, "a password")

    def _line(self, prompt, password, what):
        reply = self.ask(prompt, password=password)
        if reply.get("eof"):
            reason = reply.get("reason")
            raise EOFError("EOF when reading %s" % what + (" (%s)" % reason if reason else ""))
        value = str(reply.get("value", ""))
        return value[:-1] if value.endswith("\n") else value


class Stdin(io.TextIOBase):
    """sys.stdin for cells: each line is asked of the front end ("" at its end)."""

    def __init__(self, bridge):
        super().__init__()
        self.bridge = bridge

    @property
    def encoding(self):
        return "utf-8"

    def readable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return 0

    def readline(self, size=-1):
        reply = self.bridge.ask("")
        if reply.get("eof"):
            return ""
        value = str(reply.get("value", ""))
        line = value if value.endswith("\n") else value + "\n"
        return line if size is None or size < 0 else line[:size]

    def read(self, size=-1):
        parts = []
        got = 0
        while size is None or size < 0 or got < size:
            line = self.readline()
            if not line:
                break
            parts.append(line)
            got += len(line)
        text = "".join(parts)
        return text if size is None or size < 0 else text[:size]

    def readlines(self, hint=-1):
        return list(iter(self.readline, ""))
