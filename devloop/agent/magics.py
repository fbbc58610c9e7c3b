"""IPython magics in `# %%` cells: `%matplotlib inline`, `%%time`, `!pip install x` (VS Code
users write them in exactly these files).

A cell is compiled as plain Python first; only when that fails and the cell has magic lines is
it transformed: with IPython importable on the target, by IPython's own input transformer
(TransformerManager), else by the small line transformer here. Either way the magics run through
`Magics` (the namespace's `__devloop_magics__`), which supports `!cmd`, `x = !cmd`, `%pip`,
`%time` / `%%time`, `%timeit` / `%%timeit`, `%env`, `%cd`, `%matplotlib` (a note: devloop shows
figures its own way), `%load_ext autoreload` / `%autoreload` (no-ops: devloop reloads changed
modules itself). Any other magic is an `UnsupportedMagic` (a SyntaxError: reported at its line
before the pass runs anything). Line numbers are kept: a traceback points at the user's line.
Stdlib only, Python 3.8+; IPython is imported only when a cell has magics and only if present.
"""

import hashlib
import math
import os
import re
import shlex
import subprocess
import sys
import time
import timeit

HELPER = "__devloop_magics__"
SUPPORTED = ("!cmd, %pip, %time, %%time, %timeit, %%timeit, %env, %cd, %matplotlib, "
             "%load_ext autoreload, %autoreload")
_LINE_MAGICS = ("pip", "time", "timeit", "env", "cd", "matplotlib", "load_ext", "autoreload")
_CELL_MAGICS = ("time", "timeit")
_MAGIC_LINE = re.compile(r"^(\s*)%([A-Za-z_]\w*)(?:\s+(.*?))?\s*$")
_SHELL_LINE = re.compile(r"^(\s*)!(?!=)(.*)$")
_SHELL_ASSIGN = re.compile(r"^(\s*)([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*!(.*)$")
_MAGIC_ASSIGN = re.compile(r"^(\s*)([A-Za-z_][\w.]*)\s*=\s*%([A-Za-z_]\w*)(?:\s+(.*?))?\s*$")
_CELL_MAGIC = re.compile(r"^%%([A-Za-z_]\w*)(?:\s+(.*?))?\s*$")
_IPY_CALL = re.compile(r"get_ipython\(\)\.(run_line_magic|run_cell_magic)\(\s*(['\"])([^'\"]*)\2"
                       r"(?:\s*,\s*(['\"])([^'\"]*)\4)?")


class UnsupportedMagic(SyntaxError):
    """A magic devloop's agent does not run; `etype` in the error event names this class."""


UnsupportedMagic.__module__ = "builtins"  # tracebacks say `UnsupportedMagic:`, not the agent's path


def _unsupported(name, filename, line, text, cell=False):
    kind = "%%" if cell else "%"
    exc = UnsupportedMagic(
        "IPython magic %s%s is not supported by devloop (supported: %s)" % (kind, name, SUPPORTED),
        (filename, line, 1, text))
    return exc


def _check_line_magic(name, args, filename, line, text):
    """Refuse, at compile time, a line magic (or `%load_ext` of an extension) devloop does not run."""
    if name not in _LINE_MAGICS:
        raise _unsupported(name, filename, line, text)
    if name == "load_ext":
        others = [n for n in (args or "").split() if n != "autoreload"]
        if others:
            raise UnsupportedMagic(_LOAD_EXT % " ".join(others), (filename, line, 1, text))


_LOAD_EXT = ("%%load_ext %s is not supported by devloop (only autoreload, a no-op: devloop "
             "reloads changed modules itself)")


def _misplaced(name, filename, line, text):
    return SyntaxError("the cell magic %%%%%s must be the cell's first line" % name,
                       (filename, line, 1, text))


def has_magic(code):
    """True when some line starts (after indentation) with `%` or `!`: a cell worth transforming."""
    for line in code.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("%") or (stripped.startswith("!") and not stripped.startswith("!=")):
            return True
        if _SHELL_ASSIGN.match(line) or _MAGIC_ASSIGN.match(line):
            return True
    return False


def _compile_exec(source, filename):
    return compile(source, filename, "exec", dont_inherit=True)


def for_kernel(kernel):
    """The kernel's Magics, bound to its namespace now (a `reset` makes a new one); its notes
    go to the front end as `log` events."""
    magics = getattr(kernel, "_devloop_magics", None)
    if magics is None:
        magics = Magics(kernel.namespace, note=lambda text: kernel.proto.log("info", text))
        kernel._devloop_magics = magics
    magics.bind(kernel.namespace)
    return magics


def compile_cell(code, filename, first_line, magics, compiler=_compile_exec):
    """`compiler(source, filename)` of the cell, its lines numbered as in the user's file.
    Magics are turned into calls on `magics` (a `Magics`, in the namespace as HELPER). Raises
    SyntaxError (UnsupportedMagic for a magic devloop does not run) at the user's line."""
    key = (code, filename, first_line, compiler)
    compiled = _COMPILED.pop(key, None)
    if compiled is None:
        try:
            compiled = _compile_cell(code, filename, first_line, magics, compiler)
        except SyntaxError as exc:
            raise exc.with_traceback(None)  # as Python shows it: without the compiler's frames
        while len(_COMPILED) >= 256:
            _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = compiled  # most recent last
    if HELPER not in magics.namespace and _uses_helper(compiled):
        magics.namespace[HELPER] = magics  # a cached magic cell after a `reset`
    return compiled


# the last cells compiled: the pre-pass `check` compiles each planned cell, its `exec` reuses it
_COMPILED = {}
_KEPT = {}  # {key: (name, args, body code)} of cell magics (%%time)


def _uses_helper(compiled):
    codes = compiled if isinstance(compiled, tuple) else (compiled,)
    return any(c is not None and HELPER in c.co_names for c in codes)


def _compile_cell(code, filename, first_line, magics, compiler):
    pad = "\n" * (first_line - 1)
    try:
        return compiler(pad + code, filename)
    except SyntaxError:
        if not has_magic(code):
            raise
    magics.namespace[HELPER] = magics  # only a cell with magics puts it there
    lines = code.split("\n")
    first = _CELL_MAGIC.match(lines[0].strip())
    if first:
        name, args = first.group(1), first.group(2) or ""
        if name not in _CELL_MAGICS:
            raise _unsupported(name, filename, first_line, lines[0], cell=True)
        body = "\n".join(lines[1:])
        body_code = compile_cell(body, filename, first_line + 1, magics) if body.strip() else \
            compile("", filename, "exec")
        key = magics.keep(filename, first_line, name, args, body, body_code)
        return compiler(pad + "%s.run_kept(%r)\n" % (HELPER, key), filename)
    transformed = _ipython_transform(code, filename, first_line)
    if transformed is None:
        transformed = _stdlib_transform(lines, filename, first_line)
    return compiler(pad + transformed, filename)


_IPYTHON = []  # [TransformerManager class or None], looked up once


def _ipython_transform(code, filename, first_line):
    """IPython's own transformation of the cell (its magic and shell syntax), or None where
    IPython is not installed. Unsupported magics are refused here, at their line."""
    if not _IPYTHON:
        try:
            from IPython.core.inputtransformer2 import TransformerManager
            _IPYTHON.append(TransformerManager)
        except Exception:  # noqa: BLE001 - not installed, or broken: the stdlib way
            _IPYTHON.append(None)
    manager = _IPYTHON[0]
    if manager is None:
        return None
    out = manager().transform_cell(code)
    original = code.split("\n")
    lines = out.split("\n")
    for n, line in enumerate(lines):
        text = original[n] if n < len(original) else line  # line magics keep their line
        if line == text:
            continue  # the user's own line (a `get_ipython()` of theirs stays theirs)
        lines[n] = line.replace("get_ipython()", HELPER)
        for m in _IPY_CALL.finditer(line):
            kind, name = m.group(1), m.group(3)
            if name.startswith("%"):  # `%%time` below the first line
                raise _misplaced(name[1:], filename, first_line + n, text)
            if kind == "run_cell_magic" and name not in _CELL_MAGICS:
                raise _unsupported(name, filename, first_line + n, text, cell=True)
            if kind == "run_line_magic":
                _check_line_magic(name, m.group(5), filename, first_line + n, text)
    return "\n".join(lines)


def _statement_starts(lines):
    """Indices of the lines that begin a statement: not inside a bracket, a triple-quoted string
    or after a backslash (there `%` is the modulo operator, `!` part of a string). A magic line
    itself is not scanned: shell text may hold unbalanced quotes."""
    starts = set()
    depth, triple, continued = 0, None, False
    for n, line in enumerate(lines):
        if triple is None and depth == 0 and not continued:
            starts.add(n)
            stripped = line.lstrip()
            if stripped.startswith(("%", "!")) or _SHELL_ASSIGN.match(line) or _MAGIC_ASSIGN.match(line):
                continue
        continued = False
        i = 0
        while i < len(line):
            if triple is not None:
                end = line.find(triple, i)
                if end < 0:
                    break
                triple, i = None, end + 3
                continue
            c = line[i]
            if c == "#":
                break
            if c in "\"'":
                if line.startswith(c * 3, i):
                    triple, i = c * 3, i + 3
                    continue
                j = i + 1
                while j < len(line) and line[j] != c:
                    j += 2 if line[j] == "\\" else 1
                i = j + 1
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth = max(0, depth - 1)
            i += 1
        if triple is None and line.endswith("\\"):
            continued = True
    return starts


def _stdlib_transform(lines, filename, first_line):
    """Magic and shell lines -> calls on HELPER, one line for one line."""
    out = []
    starts = _statement_starts(lines)
    for n, line in enumerate(lines):
        lineno = first_line + n
        if n not in starts:
            out.append(line)
            continue
        m = _SHELL_ASSIGN.match(line)
        if m:
            out.append("%s%s = %s.getoutput(%r)" % (m.group(1), m.group(2), HELPER, m.group(3)))
            continue
        m = _MAGIC_ASSIGN.match(line)
        if m:
            _check_line_magic(m.group(3), m.group(4), filename, lineno, line)
            out.append("%s%s = %s.run_line_magic(%r, %r)" % (
                m.group(1), m.group(2), HELPER, m.group(3), m.group(4) or ""))
            continue
        m = _SHELL_LINE.match(line)
        if m:
            out.append("%s%s.system(%r)" % (m.group(1), HELPER, m.group(2)))
            continue
        m = _MAGIC_LINE.match(line)
        if m and not line.lstrip().startswith("%%"):
            _check_line_magic(m.group(2), m.group(3), filename, lineno, line)
            out.append("%s%s.run_line_magic(%r, %r)" % (m.group(1), HELPER, m.group(2), m.group(3) or ""))
            continue
        if line.lstrip().startswith("%%"):
            raise _misplaced((line.lstrip()[2:].split() or [""])[0], filename, lineno, line)
        out.append(line)
    return "\n".join(out)


def _format_time(seconds):
    """IPython's way: 3 significant digits and a unit (s, ms, µs, ns)."""
    if seconds >= 60:
        minutes, sec = divmod(seconds, 60)
        return "%dmin %.2gs" % (minutes, sec)
    for unit, scale in (("s", 1.0), ("ms", 1e3), ("\u00b5s", 1e6), ("ns", 1e9)):
        if seconds * scale >= 1.0 or unit == "ns":
            return "%.3g %s" % (seconds * scale, unit)
    return "0 ns"  # pragma: no cover


class Magics:
    """What the transformed cells call: `get_ipython()`'s magic methods, for the supported ones.

    `namespace` is the kernel's namespace dict (a `reset` gives a new one: `bind` it again);
    `note(text)` tells the front end something without writing to the cell's output."""

    def __init__(self, namespace, note=None):
        self.namespace = namespace
        self.note = note or (lambda text: None)

    def bind(self, namespace):
        self.namespace = namespace

    def keep(self, filename, first_line, name, args, body, body_code):
        """Remember a cell magic's compiled body (by place and content, as the compiled cells
        are cached); the cell's code calls `run_kept(key)`."""
        digest = hashlib.sha1((name + "\0" + args + "\0" + body).encode("utf-8", "surrogatepass"))
        key = "%s:%d:%s" % (filename, first_line, digest.hexdigest()[:16])
        while len(_KEPT) >= 256 and key not in _KEPT:
            _KEPT.pop(next(iter(_KEPT)))
        _KEPT[key] = (name, args, body_code)
        return key

    def run_kept(self, key):
        name, args, body_code = _KEPT[key]
        if name == "time":
            return self._time(lambda: exec(body_code, self.namespace))
        return self._timeit(args, body_code)

    # -- get_ipython() methods IPython's transformer emits ---------------------------------

    def run_line_magic(self, name, line, _stack_depth=None):
        handler = getattr(self, "_magic_" + name, None)
        if handler is None:
            raise UnsupportedMagic("IPython magic %%%s is not supported by devloop (supported: %s)"
                                   % (name, SUPPORTED))
        return handler(self._expand(line), sys._getframe(1))

    def run_cell_magic(self, name, line, cell):
        frame = sys._getframe(1)
        code = compile_cell(cell, frame.f_code.co_filename, frame.f_lineno + 1, self)
        if name == "time":
            return self._time(lambda: exec(code, self.namespace))
        if name == "timeit":
            return self._timeit(line, code)
        raise UnsupportedMagic("IPython magic %%%%%s is not supported by devloop (supported: %s)"
                               % (name, SUPPORTED))

    def system(self, cmd):
        """`!cmd`: a shell runs it, its output goes where the cell's goes; `_exit_code` is set."""
        self._flush()
        code = subprocess.call(self._expand(cmd), shell=True)
        self.namespace["_exit_code"] = code
        return None

    def getoutput(self, cmd, split=True, depth=0):
        """`x = !cmd`: the command's stdout lines (its stderr goes to the cell's output)."""
        self._flush()
        result = subprocess.run(self._expand(cmd), shell=True, stdout=subprocess.PIPE)
        text = result.stdout.decode("utf-8", "replace")
        return text.splitlines() if split else text

    # -- the magics -------------------------------------------------------------------------

    def _magic_pip(self, line, frame):
        self._flush()
        code = subprocess.call([sys.executable, "-m", "pip"] + shlex.split(line))
        try:
            import importlib
            importlib.invalidate_caches()
        except Exception:  # noqa: BLE001
            pass
        print("Note: you may need to restart the kernel (k) to use updated packages.")
        return None if code == 0 else code

    def _magic_time(self, line, frame):
        if not line.strip():
            return None
        filename, lineno = frame.f_code.co_filename, frame.f_lineno
        pad = "\n" * (lineno - 1)
        try:
            code = compile(pad + line, filename, "eval", dont_inherit=True)
            return self._time(lambda: eval(code, self.namespace))
        except SyntaxError:
            code = compile(pad + line, filename, "exec", dont_inherit=True)
            return self._time(lambda: exec(code, self.namespace))

    def _magic_timeit(self, line, frame):
        number, repeat, stmt = self._timeit_options(line)
        code = compile("\n" * (frame.f_lineno - 1) + stmt, frame.f_code.co_filename, "exec",
                       dont_inherit=True)
        return self._timeit(line, code)

    def _magic_env(self, line, frame):
        line = line.strip()
        if not line:
            print(dict(os.environ))
            return None
        if "=" in line or " " in line:
            sep = "=" if "=" in line else " "
            key, _, value = line.partition(sep)
            key, value = key.strip(), value.strip()
            os.environ[key] = value
            print("env: %s=%s" % (key, value))
            return None
        return os.environ.get(line)

    def _magic_cd(self, line, frame):
        target = os.path.expanduser(line.strip().strip("'\"") or "~")
        os.chdir(target)
        print(os.getcwd())
        return None

    def _magic_matplotlib(self, line, frame):
        self.note("%%matplotlib %s: noted, nothing to do (devloop shows figures its own way)"
                  % line.strip())
        return None

    def _magic_load_ext(self, line, frame):
        names = line.split()
        others = [n for n in names if n != "autoreload"]
        if others:
            raise UnsupportedMagic(_LOAD_EXT % " ".join(others))
        return None

    def _magic_autoreload(self, line, frame):
        return None  # devloop purges and reloads the project's changed modules itself

    # -- helpers -----------------------------------------------------------------------------

    def _time(self, run):
        """Run, then print IPython's two %time lines (only when it did not raise)."""
        t0, wall0 = os.times(), time.perf_counter()
        result = run()
        wall = time.perf_counter() - wall0
        t1 = os.times()
        user, sys_ = t1[0] - t0[0], t1[1] - t0[1]
        print("CPU times: user %s, sys: %s, total: %s" % (
            _format_time(user), _format_time(sys_), _format_time(user + sys_)))
        print("Wall time: %s" % _format_time(wall))
        return result

    def _timeit_options(self, line):
        number, repeat = 0, 7
        words = line.split()
        while words and words[0] in ("-n", "-r") and len(words) > 1:
            flag, value = words[0], words[1]
            if flag == "-n":
                number = int(value)
            else:
                repeat = int(value)
            words = words[2:]
        return number, repeat, " ".join(words) if words else "pass"

    def _timeit(self, line, code):
        """%timeit: IPython's summary line (mean ± std. dev. of R runs, N loops each)."""
        number, repeat, _ = self._timeit_options(line)
        namespace = self.namespace
        timer = timeit.Timer(lambda: exec(code, namespace))
        if not number:
            number = 1
            for _ in range(10):
                if timer.timeit(number) >= 0.2:
                    break
                number *= 10
        times = [t / number for t in timer.repeat(repeat, number)]
        mean = sum(times) / len(times)
        std = math.sqrt(sum((t - mean) ** 2 for t in times) / len(times))
        print("%s \u00b1 %s per loop (mean \u00b1 std. dev. of %d run%s, %d loop%s each)" % (
            _format_time(mean), _format_time(std), repeat, "" if repeat == 1 else "s",
            number, "" if number == 1 else "s"))
        return None

    def _expand(self, text):
        """IPython's variable expansion in magic and shell lines: `{expr}` and `$name`."""
        namespace = self.namespace

        def brace(m):
            try:
                return str(eval(m.group(1), namespace))
            except Exception:  # noqa: BLE001 - left as written, as IPython does
                return m.group(0)

        def dollar(m):
            if m.group(1) == "$":
                return "$"
            name = m.group(1)
            return str(namespace[name]) if name in namespace else m.group(0)

        text = re.sub(r"(?<!\{)\{([^{}]+)\}(?!\})", brace, text)
        return re.sub(r"\$(\$|[A-Za-z_]\w*)", dollar, text)

    def _flush(self):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
