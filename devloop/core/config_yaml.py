"""Reading a profile's YAML without letting the file hang or crash devloop.

PyYAML alone composes aliases into a graph that can be exponentially large (a "billion laughs"
of a few lines) or cyclic (`x: &a [*a]`), recurses once per nesting level, and lets a bad tagged
scalar (`!!float abc`) escape as a bare ValueError. Here nesting is bounded while composing, the
alias-expanded size is counted (and cycles found) before anything walks the values, and every
problem becomes `YamlInputError(message, line, hint)` for config.py to turn into its one line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_DEPTH = 64  # nesting levels; a profile needs four or five
MAX_VALUES = 10_000  # scalars + collections after alias expansion; a profile holds tens

_ALIAS_HINT = "write the values out, or use anchors only for small repeated blocks"
_DEEP_HINT = "flatten it: a profile needs a few levels"
# A run of opening brackets deeper than MAX_DEPTH: refused before PyYAML's scanner, whose
# look-ahead over that many open flow levels is quadratic (~1 s for 1,000 on one line).
_BRACKET_RUN = re.compile(r"[\[{](?:[ \t\r\n]*[\[{]){%d,}" % MAX_DEPTH)


class YamlInputError(Exception):
    """A YAML problem at a line: what config.py reports as `FILE:LINE: message -- fix: hint`."""

    def __init__(self, message: str, line: int, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.hint = hint


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer stops at MAX_DEPTH and whose constructor names the line of a
    scalar it cannot convert."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlInputError(f"values nested more than {MAX_DEPTH} levels deep",
                                     mark.line + 1, _DEEP_HINT)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            if isinstance(exc, yaml.YAMLError):  # pragma: no cover - YAMLError is not one of these
                raise
            tag = str(node.tag).rsplit(":", 1)[-1]
            value = node.value if isinstance(node.value, str) else "..."
            raise YamlInputError(f"cannot read {value[:40]!r} as {tag}", node.start_mark.line + 1,
                                 f"write a valid {tag} or drop the !!{tag} tag") from None


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, root node) of one YAML document; YamlInputError / yaml.YAMLError on bad input."""
    check_bracket_runs(text)
    loader = _BoundedLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # pragma: no cover - MAX_DEPTH keeps the composer shallow
            raise YamlInputError("values nested too deeply", nesting_line(text), _DEEP_HINT) from None
        if node is None:
            return None, None
        check_expansion(node)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def check_bracket_runs(text: str) -> None:
    """Refuse a run of more than MAX_DEPTH opening brackets (YAML or TOML) before a parser
    recurses through it (tomllib: RecursionError) or scans it quadratically (PyYAML)."""
    deep = _BRACKET_RUN.search(text)
    if deep:
        raise YamlInputError(f"values nested more than {MAX_DEPTH} levels deep",
                             text.count("\n", 0, deep.start()) + 1, _DEEP_HINT)


def nesting_line(text: str) -> int:
    """The line where brackets first nest deeper than MAX_DEPTH (quotes and comments skipped
    roughly), else 1: where to point when a parser ran out of recursion."""
    depth, line, quote, comment = 0, 1, "", False
    for char in text:
        if char == "\n":
            line, comment = line + 1, False
        elif comment:
            continue
        elif quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return 1


def reader_error_line(text: str, exc: yaml.YAMLError) -> int:
    """The line of an unmarked YAML error (a ReaderError knows only its character position)."""
    position = getattr(exc, "position", None)
    if isinstance(position, int) and position >= 0:
        return text.count("\n", 0, position) + 1
    return 1


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that aliases make cyclic or larger than MAX_VALUES once expanded.

    Iterative (a graph may be deep) and memoised per node (a shared node is counted once per
    use, but walked once), so a 2^30 doubling chain is refused in microseconds."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > MAX_VALUES:
                raise YamlInputError(f"aliases expand this value to more than {MAX_VALUES} values",
                                     node.start_mark.line + 1, _ALIAS_HINT)
            size[key] = total
            continue
        if key in size:
            continue
        if key in open_:
            raise YamlInputError("an alias refers to a value that contains it (a cycle)",
                                 node.start_mark.line + 1,
                                 "an alias may repeat only a value defined before it, outside it")
        children = _children(node)
        if not children:
            size[key] = 1
            continue
        open_.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise YamlInputError("an alias refers to a value that contains it (a cycle)",
                                     child.start_mark.line + 1,
                                     "an alias may repeat only a value defined before it, "
                                     "outside it")
            if id(child) not in size:
                stack.append((child, False))
