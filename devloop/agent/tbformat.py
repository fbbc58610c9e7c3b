"""Bounded tracebacks for the kernel's `error` events: work and text that do not grow with depth.

A RecursionError under `sys.setrecursionlimit(300000)` carries 300,000 frames. The traceback
module turns every one into a FrameSummary with its source line (~5 s) and formats them all
(~18 s), and relinking `tb_next` to drop the agent's frames is quadratic (CPython walks the rest
of the chain on every assignment, looking for a loop). Here one pass over the chain does a few
attribute reads per frame and keeps runs of identical frames, the first and last EDGE_FRAMES
runs only; just the kept frames get their source line. The text collapses a repeated frame as
Python does ("[Previous line repeated 299997 more times]"), names what it left out, and is cut
to MAX_TEXT characters. The chain is never modified. Stdlib only, Python 3.8+.
"""

import builtins
import collections
import io
import itertools
import linecache
import re
import sys
import traceback
import types

EDGE_FRAMES = 50          # runs of frames kept from each end of one traceback
REPEAT_SHOWN = 3          # identical frames printed before "[Previous line repeated ...]"
MAX_CHAIN = 16            # exceptions of a __cause__/__context__ chain that are formatted
MAX_GROUP_WIDTH = 15      # sub-exceptions of an ExceptionGroup shown (as Python)
MAX_GROUP_DEPTH = 10      # nesting of ExceptionGroups shown (as Python)
MAX_MESSAGE = 8 * 1024    # characters of one exception's "Type: message" text
MAX_SOURCE_LINE = 400     # characters of a source line shown under its frame
MAX_TEXT = 64 * 1024      # characters of the whole traceback text


class _Run(object):
    """Consecutive identical frames (same file, line and function): shown once, then counted."""

    __slots__ = ("code", "lasti", "tb", "count", "_line")

    def __init__(self, code, lasti, tb):
        self.code, self.lasti, self.tb, self.count, self._line = code, lasti, tb, 1, None

    @property
    def line(self):
        if self._line is None:
            self._line = self.tb.tb_lineno
        return self._line


def _same_line(run, code, tb):
    """Python collapses frames with the same file, line and function name."""
    prev = run.code
    return (code.co_name == prev.co_name and code.co_filename == prev.co_filename
            and tb.tb_lineno == run.line)


class Walk(object):
    """One pass over a traceback chain: the first and last `edge` runs of the user's frames and
    how many frames lie between them (`omitted`). `frames` is the count of user frames."""

    def __init__(self, tb, skip=None, edge=EDGE_FRAMES):
        edge = max(1, int(edge))
        head, tail = [], collections.deque(maxlen=edge)
        frames = 0
        dropped = {}  # co_filename -> is it the agent's own (asked once per file, not per frame)
        run = run_code = run_lasti = None
        while tb is not None:
            code = tb.tb_frame.f_code
            if code is run_code and tb.tb_lasti == run_lasti:  # the common case of a deep stack
                frames += 1
                run.count += 1
                tb = tb.tb_next
                continue
            filename = code.co_filename
            drop = dropped.get(filename)
            if drop is None:
                drop = dropped[filename] = bool(skip is not None and skip(filename))
            if not drop:
                frames += 1
                lasti = tb.tb_lasti  # cheaper than tb_lineno; the same call site has the same one
                if code is run_code and lasti == run_lasti or run is not None and _same_line(run, code, tb):
                    run.count += 1
                else:
                    run, run_code, run_lasti = _Run(code, lasti, tb), code, lasti
                    if len(head) < edge:
                        head.append(run)
                    else:
                        tail.append(run)
            tb = tb.tb_next
        kept = sum(r.count for r in head) + sum(r.count for r in tail)
        self.head, self.tail, self.omitted, self.frames = head, list(tail), frames - kept, frames

    def runs(self):
        """(runs before the gap, frames omitted in the gap, runs after it)."""
        return self.head, self.omitted, self.tail

    def frame_dicts(self):
        """The kept frames as the protocol's `frames`: [{file, line, name}], outermost first;
        a repeated frame appears at most REPEAT_SHOWN times, as in the text."""
        out = []
        for run in itertools.chain(self.head, self.tail):
            entry = {"file": run.code.co_filename, "line": run.line, "name": run.code.co_name}
            out.extend(dict(entry) for _ in range(min(run.count, REPEAT_SHOWN)))
        return out


def user_frames(exc, skip=None, edge=EDGE_FRAMES):
    """`frames` for an error event: the user's frames of `exc`'s own traceback, bounded.
    Replaces `[... for f in traceback.extract_tb(_strip_agent_frames(tb))]`."""
    return Walk(exc.__traceback__, skip, edge).frame_dicts()


def message(exc, limit=MAX_MESSAGE):
    """str(exc), never raising, at most `limit` characters (a ValueError carrying 100 MB of
    text must not become a 100 MB event)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error
        text = "<unprintable %s>" % type(exc).__name__
    return _clip(text, limit)


def format_exception(exc, skip=None, edge=EDGE_FRAMES, max_chars=MAX_TEXT, max_chain=MAX_CHAIN,
                     _walked=None):
    """The traceback text Python would print for `exc` (chained exceptions included), with the
    frames `skip(filename)` is true for left out, long runs collapsed and the middle of a deep
    stack omitted, at most `max_chars` characters. Replaces `traceback.format_exception`."""
    parts = []
    try:
        _format_chain(exc, skip, edge, max_chain, parts, "", 0, _walked)
    except RecursionError:  # formatting itself must never be what fails; keep what we have
        parts.append("[... traceback cut short: nested too deep ...]\n")
    except Exception:  # noqa: BLE001
        parts.append("%s: %s\n" % (_type_name(type(exc)), message(exc)))
    return _clip("".join(parts), max_chars)


def describe(exc, skip=None, edge=EDGE_FRAMES, max_chars=MAX_TEXT):
    """(frames, text) for an error event in one call, walking `exc`'s traceback once: what
    `_report` needs."""
    walk = Walk(exc.__traceback__, skip, edge)
    return walk.frame_dicts(), format_exception(exc, skip, edge, max_chars, _walked=walk)


# -- formatting ----------------------------------------------------------------------------

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _chain(exc, max_chain):
    """[(exception, separator before it)], oldest first, at most `max_chain`; and how many
    older ones were left out. Cycles end the chain (as in Python)."""
    seen = set()
    items = []
    dropped = 0
    link = None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if len(items) < max_chain:
            items.append((exc, link))
        else:
            dropped += 1
        cause = getattr(exc, "__cause__", None)
        if cause is not None:
            exc, link = cause, _CAUSE
        elif not getattr(exc, "__suppress_context__", False):
            exc, link = getattr(exc, "__context__", None), _CONTEXT
        else:
            exc = None
    items.reverse()
    # the separator printed between two exceptions is the newer one's link to the older
    out = []
    for i, (e, _) in enumerate(items):
        sep = items[i - 1][1] if i else None
        out.append((e, sep))
    return out, dropped


def _format_chain(exc, skip, edge, max_chain, parts, indent, depth, walked=None):
    chain, dropped = _chain(exc, max_chain)
    if dropped:
        parts.append(indent + "[... %d earlier chained exceptions omitted ...]\n\n" % dropped)
    for e, sep in chain:
        if sep:
            parts.extend(indent + s if s.strip() else s for s in sep.splitlines(True))
        _format_one(e, skip, edge, parts, indent, depth, walked if e is exc else None)


def _format_one(exc, skip, edge, parts, indent, depth, walk=None):
    if walk is None:
        walk = Walk(getattr(exc, "__traceback__", None), skip, edge)
    group = _is_group(exc)
    if walk.frames:
        title = "Exception Group Traceback" if group else "Traceback"
        parts.append(indent + ("  + " if group else "") + title + " (most recent call last):\n")
    pad = indent + ("  | " if group and walk.frames else "")
    head, omitted, tail = walk.runs()
    for run in head:
        _format_run(run, parts, pad)
    if omitted:
        parts.append(pad + "  [... %d frame%s omitted ...]\n" % (omitted, "" if omitted == 1 else "s"))
    for run in tail:
        _format_run(run, parts, pad)
    for text in _exception_only(exc):
        parts.extend(pad + s for s in text.splitlines(True))
    if group:
        _format_group(exc, skip, edge, parts, indent, depth)


def _format_group(exc, skip, edge, parts, indent, depth):
    subs = list(getattr(exc, "exceptions", ()) or ())
    if depth >= MAX_GROUP_DEPTH:
        parts.append(indent + "  +---------------- ... ----------------\n")
        parts.append(indent + "    | [... %d sub-exceptions not shown: nested too deep ...]\n" % len(subs))
        parts.append(indent + "    +------------------------------------\n")
        return
    shown = subs[:MAX_GROUP_WIDTH]
    for i, sub in enumerate(shown):
        parts.append(indent + ("  +-+" if i == 0 else "    +") + "---------------- %d ----------------\n" % (i + 1))
        _format_chain(sub, skip, edge, MAX_CHAIN, parts, indent + "    | ", depth + 1)
    if len(subs) > len(shown):
        parts.append(indent + "    +---------------- ... ----------------\n")
        parts.append(indent + "    | and %d more exceptions\n" % (len(subs) - len(shown)))
    parts.append(indent + "    +------------------------------------\n")


def _format_run(run, parts, pad):
    text = _format_frame(run)
    shown = min(run.count, REPEAT_SHOWN)
    parts.extend(pad + s for _ in range(shown) for s in text.splitlines(True))
    more = run.count - shown
    if more:
        parts.append(pad + "  [Previous line repeated %d more time%s]\n" % (more, "" if more == 1 else "s"))


def _format_frame(run):
    """One frame as Python prints it (with the 3.11+ carets under the failing expression)."""
    code, tb = run.code, run.tb
    filename = code.co_filename
    linecache.lazycache(filename, tb.tb_frame.f_globals)
    source = linecache.getline(filename, run.line)
    if len(source) > MAX_SOURCE_LINE:
        shown = _clip(source.strip(), MAX_SOURCE_LINE)
        summary = traceback.FrameSummary(filename, run.line, code.co_name, lookup_line=False,
                                         line=shown)
    else:
        summary = _summary_with_position(filename, run.line, code.co_name, code, tb)
    try:
        return "".join(traceback.StackSummary.from_list([summary]).format())
    except Exception:  # noqa: BLE001 - a position the formatter cannot use: without carets
        summary = traceback.FrameSummary(filename, run.line, code.co_name)
        return "".join(traceback.StackSummary.from_list([summary]).format())


def _summary_with_position(filename, line, name, code, tb):
    positions = getattr(code, "co_positions", None)  # 3.11+
    if positions is not None and tb.tb_lasti >= 0:
        try:
            _, end_line, col, end_col = next(itertools.islice(positions(), tb.tb_lasti // 2, None))
            return traceback.FrameSummary(filename, line, name, end_lineno=end_line, colno=col,
                                          end_colno=end_col)
        except (StopIteration, TypeError, ValueError):
            pass
    return traceback.FrameSummary(filename, line, name)


def _exception_only(exc):
    try:
        lines = traceback.format_exception_only(type(exc), exc)
    except Exception:  # noqa: BLE001 - a broken __str__
        lines = ["%s: %s\n" % (_type_name(type(exc)), message(exc))]
    hint = suggestion(exc)
    if hint and lines and hint not in lines[-1]:
        lines[-1] = lines[-1].rstrip("\n") + hint + "\n"
    text = "".join(lines)
    return [_clip(text, MAX_MESSAGE)] if len(text) > MAX_MESSAGE else lines


_SUGGESTION = re.compile(r"(\. Did you mean: .*\?|\. Did you forget to import .*\?)\s*$")


def suggestion(exc):
    """". Did you mean: 'X_test'?" as this Python would print it under a NameError,
    AttributeError or ImportError (3.10+), else "". Python computes it only when it prints the
    error itself (3.10, 3.11: the C excepthook; 3.12+: TracebackException with the traceback),
    so it is asked on a copy of `exc` without its chain and with only its innermost frame:
    the cost does not grow with the stack or the chain."""
    if sys.version_info < (3, 10) or not isinstance(exc, (NameError, AttributeError, ImportError)):
        return ""
    try:
        base = next(b for b in (NameError, AttributeError, ImportError) if isinstance(exc, b))
        copy = base(*exc.args)
        for attr in ("name", "obj", "name_from", "path"):
            if hasattr(exc, attr):
                try:
                    setattr(copy, attr, getattr(exc, attr))
                except (AttributeError, TypeError):
                    pass
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            copy.__traceback__ = types.TracebackType(None, tb.tb_frame, tb.tb_lasti, tb.tb_lineno)
        if sys.version_info >= (3, 12):
            text = "".join(traceback.TracebackException(
                base, copy, copy.__traceback__, limit=0, lookup_lines=False).format_exception_only())
        else:
            saved, sys.stderr = sys.stderr, io.StringIO()
            try:
                sys.__excepthook__(base, copy, None)
                text = sys.stderr.getvalue()
            finally:
                sys.stderr = saved
        found = _SUGGESTION.search(text.rstrip("\n").rsplit("\n", 1)[-1])
        return found.group(1) if found else ""
    except Exception:  # noqa: BLE001 - a suggestion is a nicety; the error is reported anyway
        return ""


def _is_group(exc):
    base = getattr(builtins, "BaseExceptionGroup", None)  # 3.11+
    return base is not None and isinstance(exc, base)


def _type_name(etype):
    module = getattr(etype, "__module__", None)
    name = getattr(etype, "__qualname__", None) or getattr(etype, "__name__", "Exception")
    return name if module in (None, "builtins", "__main__") else "%s.%s" % (module, name)


def _clip(text, limit):
    """`text` if short enough, else its start and end around a note of what was cut."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 64) // 2
    tail = text[len(text) - keep:] if keep else ""
    return "%s\n[... %d characters omitted ...]\n%s" % (text[:keep], len(text) - 2 * keep, tail)
