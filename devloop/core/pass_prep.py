"""What a pass does before it runs a cell: no hidden state, no half-run pass on a typo.

- `DefinedNames` remembers which names each cell left in the kernel's namespace. A name a cell
  defined when it last ran that no cell of the file defines now (a rename: `X_train` -> `X_tr`)
  is removed before the next pass (marimo's rule), so a cell still reading it fails with
  NameError as `python file.py` would, instead of running on the stale value.
- every planned cell is compiled on the target (its Python, IPython magics transformed) before
  any runs, in the pass's first exec request (`check_payload`; `failing_cell` names the cell of
  the error): a syntax error in cell 5 is reported at once, not after cells 0-4 ran, and the
  earlier cells' state is kept.
- `skipped_messages` says which cells are in another language (R, html, latex) and not run.
"""

from __future__ import annotations

from typing import Any, Sequence

from devloop.core.cells import Cell, ParsedFile, bound_names


class DefinedNames:
    """{cell index: names its code bound when it last ran} for one kernel (a new kernel starts
    with an empty namespace: nothing of it can be stale)."""

    def __init__(self) -> None:
        self._kernel: Any = None
        self._by_cell: dict[int, frozenset[str]] = {}

    def _same_kernel(self, kernel: Any) -> bool:
        if kernel is not self._kernel:
            self._kernel = kernel
            self._by_cell = {}
            return False
        return True

    def ran(self, cell: Cell, kernel: Any) -> None:
        """`cell` is about to run in `kernel`: what it binds is in the namespace from now on."""
        self._same_kernel(kernel)
        self._by_cell[cell.index] = bound_names(cell.code)

    def stale(self, cells: Sequence[Cell], kernel: Any = None) -> dict[str, int]:
        """{name: the cell that defined it} for names in the namespace that no cell defines now."""
        if kernel is not None and not self._same_kernel(kernel):
            return {}
        now: set[str] = set()
        for cell in cells:
            now |= bound_names(cell.code)
        found: dict[str, int] = {}
        for index in sorted(self._by_cell):
            for name in sorted(self._by_cell[index] - now):
                found.setdefault(name, index)
        return found

    def removed(self, names: Sequence[str]) -> None:
        for index, bound in list(self._by_cell.items()):
            self._by_cell[index] = bound - set(names)


def removal_messages(stale: dict[str, int], cells: Sequence[Cell]) -> list[str]:
    """One log line per removed name: why a NameError may follow."""
    out = []
    for name, index in sorted(stale.items(), key=lambda item: (item[1], item[0])):
        if index < len(cells):
            out.append(f"removed {name}: cell {index} no longer defines it")
        else:
            out.append(f"removed {name}: no cell defines it any more")
    return out


def check_payload(cells: Sequence[Cell], relpath: str) -> list[dict]:
    """The planned cells as the kernel compiles them before any runs (the `precheck` of a
    pass's first exec)."""
    return [{"code": c.code, "filename": relpath, "first_line": c.code_line} for c in cells]


def failing_cell(cells: Sequence[Cell], error: dict, relpath: str) -> int:
    """The planned cell whose lines hold the syntax error the kernel reported (by its frame in
    `relpath`; the first planned cell when it names none)."""
    line = 0
    for frame in reversed(error.get("frames") or []):
        if frame.get("file") == relpath and frame.get("line"):
            line = int(frame["line"])
            break
    for cell in cells:
        if cell.code_line <= line <= max(cell.end_line, cell.code_line):
            return cell.index
    return cells[0].index


def skipped_messages(parsed: ParsedFile) -> list[str]:
    """One line per cell in another language: it is not run (a `%%R` cell is not Python)."""
    return [f"skipped the {c.language} cell at line {c.marker_line}: devloop runs Python cells only"
            for c in parsed.skipped]
