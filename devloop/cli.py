"""`devloop` command line: global flags, then a subcommand discovered from devloop.commands.

Exit codes: 0 success, 1 the user's code failed (or a check found drift), 2 usage or config
errors, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

from devloop import __version__


def command_names() -> list[str]:
    """The subcommands: one module per command in devloop/commands (not `_private` ones).
    Listed from the folder, not imported: `devloop sync` imports only the sync module."""
    import devloop.commands as pkg

    names = set()
    for folder in pkg.__path__:
        for entry in os.listdir(folder):
            stem, dot, ext = entry.partition(".")
            if dot and ext in ("py", "pyc") and stem.isidentifier() and not stem.startswith("_"):
                names.add(stem)
    return sorted(names)


def _commands(only: str | None = None) -> list[ModuleType]:
    mods = []
    for name in [only] if only else command_names():
        mod = importlib.import_module(f"devloop.commands.{name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not a flag), if it
    is one: then only its module is imported (the others cost ~150 ms of imports)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in command_names() else None
        if word in ("-h", "--help", "--version"):
            return None
    return None


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The whole parser, or with `only` one subcommand (the one being run)."""
    parser = argparse.ArgumentParser(
        prog="devloop",
        description=(
            "The inner loop for ML code: sync your project into a container that matches "
            "production, rerun the changed '# %%' cells on every save, stream logs and GPU "
            "gauges, and promote the working setup into a pipeline."
        ),
        epilog="Run 'devloop COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"devloop {__version__}",
                        help="print devloop's version and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="show what devloop does: profile resolved, sync plans, agent messages "
                             "(-vv for more)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    table: dict[str, ModuleType] = {}
    for mod in _commands(only):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="show what devloop does (same as before the command)")
        mod.register(p)
        table[mod.NAME] = mod
    return parser, table


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    rest: list[str] | None = None
    if "--" in words:  # `devloop run train.py --json -- --epochs 3`: the file's own arguments
        cut = words.index("--")
        words, rest = words[:cut], words[cut + 1:]
    parser, table = build_parser(chosen_command(words))
    args = parser.parse_args(words)
    if rest is not None:
        if not hasattr(args, "script_args"):
            parser.error("arguments after '--' are for the file: only run, watch and up take them")
        args.script_args = list(args.script_args or ()) + rest
    if not args.command:
        parser.print_help()
        return 2
    from devloop.core.config import ConfigError
    from devloop.core.targets.base import TargetError

    try:
        return int(table[args.command].run(args) or 0)
    except ConfigError as exc:
        print(f"devloop: {exc}", file=sys.stderr)
        return 2
    except TargetError as exc:
        print(f"devloop: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `devloop run --json | head`: the reader left; stop quietly like other Unix tools
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
