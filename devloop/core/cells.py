"""Percent-format cells (`# %%`), their hashes, and which cells a save must rerun.

The format is the one Jupytext, VS Code and PyCharm read: a line starting (at column 0) with
`# %%` or `#%%` opens a cell; text after it is the title, `[markdown]` / `[md]` (or `[raw]`) sets
the cell type, and `key="value"` pairs (or a trailing JSON object) are metadata. nbconvert's and
VS Code's other markers, `# In[3]:`, `# In[ ]:` and `# <codecell>` (`# <markdowncell>`,
`# <rawcell>`), open cells too. A marker inside a multi-line string, or an indented one, is not a
boundary. A file with no marker is a script (one cell, rerun as a process).

A cell in another language (jupytext's `language="R"` metadata, or a first line `%%R`, `%%html`,
`%%latex`, ...) is kind "other": it is not run, and `ParsedFile.skipped` lists it.

`parse_cells` takes `str`: decoding the file (and what to do with bytes that are not UTF-8) is
the caller's job. Everything here is pure: no I/O.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import io
import json
import re
import tokenize
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

_MARKER = re.compile(r"^#\s*%%(?=$|[\s\[%])(.*)$")
# nbconvert exports (`# In[3]:`, `# In[ ]:`) and the old IPython format (`# <codecell>`)
_OTHER_MARKER = re.compile(r"^#\s*(?:In\s*\[[\d\s]*\]\s*:?|<(codecell|markdowncell|rawcell)>)\s*$")
_CELL_TYPE = re.compile(r"\[(markdown|md|raw|code)\]")
# cell magics that make a cell another language's (IPython, rpy2): skipped, never run as Python
OTHER_LANGUAGES = frozenset({
    "r", "html", "latex", "javascript", "js", "markdown", "svg", "perl", "ruby", "bash", "sh",
    "script", "sql", "julia", "octave", "matlab", "scala", "sas",
})
_CELL_MAGIC = re.compile(r"^%%\s*([A-Za-z_][\w.-]*)")
_COMMENTED_CELL_MAGIC = re.compile(r"^#\s*%%([A-Za-z_][\w.-]*)")  # jupytext's commented `# %%R`
_METADATA = re.compile(
    r"""(?:^|\s)([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\[[^\]]*\]|\{[^}]*\}|\S+)"""
)
_NEWLINE = re.compile(r"\r\n|\r|\n")  # Python's own line breaks (str.splitlines knows more)


@dataclass(frozen=True)
class Cell:
    """One cell. `index` counts code cells only (-1 for markdown / raw cells).

    `marker_line` is the 1-based line of the `# %%` marker (1 for code before the first marker);
    `code_line` is the line where `code` starts, so compiling `code` as starting there gives
    tracebacks with the user's real line numbers.
    """

    index: int
    title: str
    marker_line: int
    code_line: int
    code: str
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    kind: str = "code"  # "code" | "markdown" | "raw" | "other" (another language: skipped)
    hash: str = ""
    language: str = "python"  # of an "other" cell: "R", "html", ...

    @property
    def end_line(self) -> int:
        """Last line of the cell's code (== code_line - 1 for an empty cell)."""
        return self.code_line + len(self.code.splitlines()) - 1


@dataclass(frozen=True)
class ParsedFile:
    cells: tuple[Cell, ...]  # code cells only, cells[i].index == i
    all_cells: tuple[Cell, ...]  # every cell in file order, markdown included
    is_script: bool  # no marker at all: run the file as a script

    @property
    def skipped(self) -> tuple[Cell, ...]:
        """Cells in another language (R, html, latex...): not run, reported as skipped."""
        return tuple(c for c in self.all_cells if c.kind == "other")


def cell_hash(code: str) -> str:
    """sha256 of the code's normal form (`normal_form`): a comment or whitespace edit keeps it."""
    return hashlib.sha256(normal_form(code).encode("utf-8", "surrogatepass")).hexdigest()


def normal_form(code: str) -> str:
    """What a cell's hash is taken of: its Python tokens without comments, blank lines and the
    spacing between tokens (indentation counts as block structure only). The text of an IPython
    magic line (`!cmd`, `%time ...`) is kept whole: there a `#` is not a comment. Code that
    does not tokenize (half an edit) falls back to its lines without trailing whitespace."""
    parts: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            kind = tok.type
            if kind in (tokenize.NL, tokenize.ENDMARKER):
                continue
            if kind == tokenize.COMMENT:
                if tok.line.lstrip().startswith(("!", "%")):
                    parts.append(tok.string)
                continue
            if kind in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                parts.append(tokenize.tok_name[kind])
            else:
                parts.append(tok.string)
    except (tokenize.TokenError, SyntaxError):
        lines = [line.rstrip() for line in _NEWLINE.split(code)]
        while lines and not lines[-1]:
            lines.pop()
        return "lines\n" + "\n".join(lines)
    return "tokens\n" + "\x00".join(parts)


def parse_cells(source: str) -> ParsedFile:
    """Split a percent-format file into cells (see the module docstring for the rules)."""
    if source.startswith("\ufeff"):
        source = source[1:]
    lines = _NEWLINE.split(source)
    if lines and lines[-1] == "":
        lines.pop()  # the text after the final newline is not a line
    inside_string = _lines_inside_strings(source)
    markers = [
        n for n, text in enumerate(lines, 1)
        if n not in inside_string and (_MARKER.match(text) or _OTHER_MARKER.match(text))
    ]
    if not markers:
        code, code_line = _trim(lines, 1)
        cells = (_make_cell(0, "", 1, code_line, code, {}, "code"),) if code.strip() else ()
        return ParsedFile(cells=cells, all_cells=cells, is_script=True)

    all_cells: list[Cell] = []
    index = 0
    head, head_line = _trim(lines[: markers[0] - 1], 1)
    if any(line.strip() and not line.lstrip().startswith("#") for line in head.splitlines()):
        # a header of comments only (a licence, a description) is not a cell to run
        all_cells.append(_make_cell(index, "", 1, head_line, head, {}, "code"))
        index += 1
    for k, marker in enumerate(markers):
        end = markers[k + 1] - 1 if k + 1 < len(markers) else len(lines)
        title, metadata, kind = _parse_any_marker(lines[marker - 1])
        code, code_line = _trim(lines[marker:end], marker + 1)
        language = _other_language(code, metadata) if kind == "code" else None
        cell = _make_cell(index if kind == "code" and not language else -1, title, marker,
                          code_line, code, metadata, "other" if language else kind)
        if language:
            cell = replace(cell, language=language)
        all_cells.append(cell)
        if cell.kind == "code":
            index += 1
    code_cells = tuple(c for c in all_cells if c.kind == "code")
    return ParsedFile(cells=code_cells, all_cells=tuple(all_cells), is_script=False)


def _other_language(code: str, metadata: dict[str, Any]) -> str | None:
    """The language of a cell that is not Python (jupytext's `language="R"`, a `%%R` or
    `%%html` first line), else None."""
    language = metadata.get("language")
    if isinstance(language, str) and language.strip().lower() not in ("", "python", "python3", "py"):
        return language.strip()
    first = code.lstrip("\n").split("\n", 1)[0].strip()
    m = _CELL_MAGIC.match(first) or _COMMENTED_CELL_MAGIC.match(first)
    if m and m.group(1).lower() in OTHER_LANGUAGES:
        return m.group(1)
    return None


def _parse_any_marker(line: str) -> tuple[str, dict[str, Any], str]:
    m = _MARKER.match(line)
    if m:
        return _parse_marker(m.group(1))
    other = _OTHER_MARKER.match(line)
    kind = {"markdowncell": "markdown", "rawcell": "raw"}.get(other.group(1) or "", "code") if other else "code"
    return "", {}, kind


def _make_cell(index: int, title: str, marker_line: int, code_line: int, code: str,
               metadata: dict[str, Any], kind: str) -> Cell:
    return Cell(index=index, title=title, marker_line=marker_line, code_line=code_line,
                code=code, metadata=metadata, kind=kind, hash=cell_hash(code))


def _trim(lines: Sequence[str], first_line: int) -> tuple[str, int]:
    """Drop leading and trailing blank lines; return (code, line where the code starts)."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start == end:
        return "", first_line
    return "\n".join(lines[start:end]) + "\n", first_line + start


def _parse_marker(rest: str) -> tuple[str, dict[str, Any], str]:
    """`# %%` rest -> (title, metadata, kind)."""
    rest = rest.lstrip("%")
    kind = "code"
    m = _CELL_TYPE.search(rest)
    if m:
        kind = {"raw": "raw", "code": "code"}.get(m.group(1), "markdown")
        rest = rest[: m.start()] + " " + rest[m.end():]
    metadata: dict[str, Any] = {}
    brace = rest.find("{")
    while brace >= 0:  # jupytext's cell_metadata_json: `# %% Title {"tags": ["parameters"]}`
        try:
            value = json.loads(rest[brace:])
        except ValueError:
            value = None
        if isinstance(value, dict):
            metadata.update(value)
            rest = rest[:brace]
            break
        brace = rest.find("{", brace + 1)
    for m in _METADATA.finditer(rest):
        metadata[m.group(1)] = _metadata_value(m.group(2))
    title = _METADATA.sub(" ", rest)
    return " ".join(title.split()), metadata, kind


def _metadata_value(text: str) -> Any:
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _lines_inside_strings(source: str) -> set[int]:
    """Lines whose column 0 lies inside a string that started on an earlier line.

    Tokenizing stops at the first error (an unfinished edit: an unclosed bracket or a triple
    quote left open); the lines after it count as code, so a half-typed cell never swallows the
    markers that follow it.
    """
    inside: set[int] = set()
    fstring_starts: list[tuple[int, int]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            name = tokenize.tok_name.get(tok.type, "")
            if name == "FSTRING_START":  # Python 3.12+: f-strings come in pieces
                fstring_starts.append(tok.start)
                continue
            if name == "FSTRING_END" and fstring_starts:
                start = fstring_starts.pop()
                inside.update(range(start[0] + 1, tok.end[0] + 1))
                continue
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    return inside


# ------------------------------------------------------------------------------ names (ast)


class _Scope:
    def __init__(self, kind: str, parent: "_Scope | None") -> None:
        self.kind = kind  # module | function | class | comprehension
        self.parent = parent
        self.bound: set[str] = set()
        self.loads: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.children: list[_Scope] = []
        if parent:
            parent.children.append(self)

    def free(self) -> set[str]:
        """Names this scope (and its children) read but do not bind: they come from outside."""
        own = self.loads - self.bound
        inner: set[str] = set()
        for child in self.children:
            inner |= child.free()
        if self.kind != "class":  # class-body names are invisible to nested functions
            inner -= self.bound
        return own | inner


class _NameFinder(ast.NodeVisitor):
    """Module-level bindings (defined) and reads from outside any inner scope (used)."""

    def __init__(self) -> None:
        self.module = _Scope("module", None)
        self.scope = self.module
        self.global_defs: set[str] = set()  # `global x; x = ...` inside functions
        self.mutated: set[str] = set()  # `x[...] = `, `x.attr = ` at module level

    # -- binding helpers
    def bind(self, name: str, scope: _Scope | None = None) -> None:
        scope = scope or self.scope
        if name in scope.globals:
            self.global_defs.add(name)
        elif name not in scope.nonlocals:
            scope.bound.add(name)

    def _enter(self, kind: str) -> _Scope:
        self.scope = _Scope(kind, self.scope)
        return self.scope

    def _leave(self) -> None:
        assert self.scope.parent is not None
        self.scope = self.scope.parent

    # -- names
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.scope.loads.add(node.id)
        else:
            self.bind(node.id)

    def _mutation(self, node: ast.Attribute | ast.Subscript) -> None:
        if not isinstance(node.ctx, ast.Load) and self.scope is self.module:
            base: ast.AST = node
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name):
                self.mutated.add(base.id)
        self.generic_visit(node)

    visit_Attribute = _mutation
    visit_Subscript = _mutation

    def visit_Expr(self, node: ast.Expr) -> None:
        """`model.fit(X, y)` as a statement at module level changes `model` (in-place): a method
        call on a name counts as redefining the name, as an attribute or item assignment does."""
        if self.scope is self.module and isinstance(node.value, ast.Call) \
                and isinstance(node.value.func, ast.Attribute):
            base: ast.AST = node.value.func
            while isinstance(base, (ast.Attribute, ast.Subscript, ast.Call)):
                base = base.func if isinstance(base, ast.Call) else base.value
            if isinstance(base, ast.Name):
                self.mutated.add(base.id)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.scope.loads.add(node.target.id)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)
        elif not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        scope = self.scope
        while scope.kind == "comprehension" and scope.parent:
            scope = scope.parent  # := in a comprehension binds in the enclosing scope
        self.bind(node.target.id, scope)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.globals.update(node.names)  # reads then count as free names (used)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.nonlocals.update(node.names)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.bind(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.bind(alias.asname or alias.name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name and self.scope is not self.module:
            self.bind(node.name)  # at module level the name is deleted after the block
        for stmt in node.body:
            self.visit(stmt)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.bind(node.rest)
        self.generic_visit(node)

    # -- scopes
    def _arguments(self, args: ast.arguments) -> None:
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                self.bind(arg.arg)

    def _defaults_and_annotations(self, args: ast.arguments) -> None:
        for default in (*args.defaults, *(d for d in args.kw_defaults if d is not None)):
            self.visit(default)
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for deco in node.decorator_list:
            self.visit(deco)
        self._defaults_and_annotations(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        self.bind(node.name)
        self._enter("function")
        self._arguments(node.args)
        for stmt in node.body:
            self.visit(stmt)
        self._leave()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._defaults_and_annotations(node.args)
        self._enter("function")
        self._arguments(node.args)
        self.visit(node.body)
        self._leave()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in (*node.decorator_list, *node.bases, *node.keywords):
            self.visit(expr)
        self.bind(node.name)
        self._enter("class")
        for stmt in node.body:
            self.visit(stmt)
        self._leave()

    def _comprehension(self, node: Any, results: Iterable[ast.AST]) -> None:
        generators = node.generators
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        self._enter("comprehension")
        for i, gen in enumerate(generators):
            if i:
                self.visit(gen.iter)
            self.visit(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        for expr in results:
            self.visit(expr)
        self._leave()

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, [node.key, node.value])


_MAGIC_ASSIGN = re.compile(r"^(\s*)([A-Za-z_][\w\s,.\[\]'\"]*?)\s*=\s*[!%]")
_LINE_MAGIC = re.compile(r"^%([A-Za-z_]\w*)\s*(.*)$")


def python_view(code: str) -> str:
    """The cell as plain Python for name analysis: IPython magic lines become `pass` (keeping
    the line count), `%time STMT` / `%timeit STMT` become STMT, `x = !cmd` becomes `x = None`,
    and a first-line cell magic (`%%time`) is dropped, its body kept."""
    out = []
    for i, line in enumerate(code.split("\n")):
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("%%"):
            out.append("" if i == 0 else indent + "pass")
        elif stripped.startswith("%"):
            m = _LINE_MAGIC.match(stripped)
            if m and m.group(1) in ("time", "timeit", "prun") and m.group(2).strip():
                out.append(indent + m.group(2))
            else:
                out.append(indent + "pass")
        elif stripped.startswith("!") and not stripped.startswith("!="):
            out.append(indent + "pass")
        else:
            m = _MAGIC_ASSIGN.match(line)
            out.append(m.group(1) + m.group(2) + " = None" if m else line)
    return "\n".join(out)


def _analyse(code: str) -> _NameFinder | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: source with NUL bytes
        try:
            tree = ast.parse(python_view(code))  # a cell with IPython magics
        except (SyntaxError, ValueError):
            return None
    finder = _NameFinder()
    finder.visit(tree)
    return finder


def defined_names(code: str) -> frozenset[str]:
    """Names a cell binds at module level: assignments (incl. augmented, walrus, for / with-as
    targets), def / class, imports, `global` writes from functions, and the base name of
    `x[...] = ...` / `x.attr = ...` / a statement `x.method(...)` (the cell changes x in
    place). A cell that does not parse: none."""
    finder = _analyse(code)
    if finder is None:
        return frozenset()
    return frozenset(finder.module.bound | finder.global_defs | finder.mutated)


def bound_names(code: str) -> frozenset[str]:
    """Names a cell binds at module level (`defined_names` without the in-place changes): what
    it leaves in the namespace, and so what becomes stale when it stops binding them."""
    finder = _analyse(code)
    if finder is None:
        return frozenset()
    return frozenset(finder.module.bound | finder.global_defs)


def used_names(code: str) -> frozenset[str]:
    """Names a cell reads from the module namespace (including from inside its functions);
    names local to a function, lambda or comprehension are not counted. Syntax error: none."""
    finder = _analyse(code)
    if finder is None:
        return frozenset()
    inner: set[str] = set()
    for child in finder.module.children:
        inner |= child.free()
    return frozenset(finder.module.loads | inner)


# ------------------------------------------------------------------------------ rerun planning


def plan_reruns(cells: Sequence[Cell], last_ok: Sequence[str | None], policy: str,
                removed: Iterable[str] = ()) -> list[int]:
    """Indices of the code cells to rerun after a save, sorted.

    `last_ok[i]` is the hash of the code that last ran successfully at position i (None: never
    ran, or failed). `linear`: the first cell that differs from last_ok and every cell after it.
    `reactive`: changed (or never successfully run) cells, plus later cells that read a name one
    of them defines, transitively. Cells are matched to `last_ok` by position for `linear`; for
    `reactive` an inserted or deleted cell does not make the unchanged cells after it rerun
    (old and new hashes are aligned with a sequence diff). Unchanged successful cells before the
    edit never rerun. `removed`: names about to be dropped from the namespace because no cell
    defines them any more; under `reactive` the cells that read them rerun (and fail as a fresh
    run would).
    """
    if policy == "linear":
        for i, cell in enumerate(cells):
            if i >= len(last_ok) or last_ok[i] != cell.hash:
                return list(range(i, len(cells)))
        return []
    if policy != "reactive":
        raise ValueError(f"unknown rerun policy {policy!r} (linear or reactive)")
    unchanged = _aligned_unchanged([c.hash for c in cells], last_ok)
    plan: list[int] = []
    dirty: set[str] = set(removed)
    for i, cell in enumerate(cells):
        if i not in unchanged or (dirty and used_names(cell.code) & dirty):
            plan.append(i)
            dirty |= defined_names(cell.code)
    return plan


def _aligned_unchanged(new: list[str], old: Sequence[str | None]) -> set[int]:
    """Positions in `new` whose hash lines up with a successful run of the same code."""
    old_keys: list[Any] = [h if h is not None else object() for h in old]
    matcher = difflib.SequenceMatcher(None, old_keys, new, autojunk=False)
    unchanged: set[int] = set()
    for block in matcher.get_matching_blocks():
        unchanged.update(range(block.b, block.b + block.size))
    return unchanged
