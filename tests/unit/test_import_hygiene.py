"""The engine stays free of the UI: importing every `devloop.core` module (and the headless
reporter) in a fresh interpreter loads neither textual nor rich."""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys

import devloop.core


def core_modules() -> list[str]:
    names = ["devloop.core"]
    for info in pkgutil.walk_packages(devloop.core.__path__, prefix="devloop.core."):
        names.append(info.name)
    if importlib.util.find_spec("devloop.headless") is not None:
        names.append("devloop.headless")
    return sorted(names)


def run_fresh(code: str) -> None:
    """Run `code` in a fresh interpreter (a clean sys.modules); its asserts must hold."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_core_imports_neither_textual_nor_rich() -> None:
    modules = core_modules()
    assert "devloop.core.session" in modules and "devloop.core.events" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "ui = sorted(m for m in sys.modules if m in ('textual', 'rich') "
        "or m.startswith(('textual.', 'rich.')))\n"
        "assert not ui, ui\n"
    )
    run_fresh(code)


def test_cli_commands_other_than_up_do_not_load_textual() -> None:
    """`devloop run` / `watch` in CI stay light: only `up` imports the app, lazily."""
    code = (
        "import sys\n"
        "from devloop.cli import build_parser\n"
        "build_parser()\n"
        "assert 'textual' not in sys.modules, 'devloop.cli loaded textual'\n"
    )
    run_fresh(code)


def test_a_command_imports_only_its_own_module() -> None:
    """`devloop sync` builds the parser for `sync` alone: the other commands' modules (doctor
    pulls in every target's checks) are not imported, while `devloop --help` still lists all."""
    code = (
        "import sys\n"
        "from devloop import cli\n"
        "assert cli.chosen_command(['-v', 'sync', '-p', 'x']) == 'sync'\n"
        "assert cli.chosen_command(['--help']) is None and cli.chosen_command(['nosuch']) is None\n"
        "parser, table = cli.build_parser(cli.chosen_command(['sync', '--dry-run']))\n"
        "assert list(table) == ['sync'], list(table)\n"
        "others = sorted(m for m in sys.modules if m.startswith('devloop.commands.') and not m.startswith('devloop.commands._') and m != 'devloop.commands.sync')\n"
        "assert not others, others\n"
        "parser, table = cli.build_parser()\n"
        "assert {'sync', 'run', 'watch', 'up', 'doctor'} <= set(table), sorted(table)\n"
    )
    run_fresh(code)
