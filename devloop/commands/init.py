"""`devloop init`: write a commented devloop.toml and example profiles; never overwrite."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "init"
ORDER = 1
HELP = "write a commented devloop.toml and example profiles (local, docker, ssh, kubernetes)"
DESCRIPTION = (
    "Write devloop.toml (every section, defaults shown in comments, an example [[stage]]) and "
    "profiles/local.yaml, docker-gpu.yaml, ssh-gpu.yaml, k8s-gpu.yaml into the folder. Files "
    "that already exist are left alone and listed."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", metavar="DIR", default=".",
                        help="the project folder to write into (default: the current folder; "
                             "created if missing)")
    parser.add_argument("--name", metavar="NAME",
                        help="the project name for [project].name (default: the folder's name)")


def write_project(folder: Path, name: str | None = None) -> tuple[list[Path], list[Path]]:
    """Write the files that are missing; return (written, left alone)."""
    from devloop.core.project_template import project_files

    folder = folder.resolve()
    written: list[Path] = []
    kept: list[Path] = []
    for rel, text in project_files(name or folder.name).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x", encoding="utf-8", newline="\n") as out:  # "x": never overwrite
                out.write(text)
        except FileExistsError:
            kept.append(path)
            continue
        written.append(path)
    return written, kept


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    written, kept = write_project(folder, args.name)
    base = folder.resolve()
    for path in written:
        print(f"created     {path.relative_to(base)}")
    for path in kept:
        print(f"left alone  {path.relative_to(base)} (already exists)")
    if written:
        where = "" if args.dir == "." else f" (in {args.dir})"
        print(f"next{where}: `devloop config` shows the settings; "
              "`devloop up --profile docker-gpu` runs on a GPU container")
    return 0
