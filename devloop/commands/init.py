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


def write_project(folder: Path, name: str | None = None,
                  entry: str | None = None) -> tuple[list[Path], list[Path]]:
    """Write the files that are missing; return (written, left alone). `entry`: the file
    `[project].entry` names (None: left commented)."""
    from devloop.core.project_template import project_files

    folder = folder.resolve()
    written: list[Path] = []
    kept: list[Path] = []
    for rel, text in project_files(name or folder.name, entry).items():
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
    from devloop.core.project_template import obvious_entry, python_files

    folder = Path(args.dir)
    entry = obvious_entry(folder) if folder.is_dir() else None
    written, kept = write_project(folder, args.name, entry)
    base = folder.resolve()
    for path in written:
        print(f"created     {path.relative_to(base)}")
    for path in kept:
        print(f"left alone  {path.relative_to(base)} (already exists)")
    if written:
        print(next_steps(args.dir, entry if base / "devloop.toml" in written else None,
                         python_files(base) if base.is_dir() else []))
    return 0


def next_steps(folder: str, entry: str | None, candidates: list[str]) -> str:
    """The hint after `init`: commands that work as printed (the file named when devloop.toml
    does not name one)."""
    cd = "" if folder == "." else f"cd {folder} && "
    if entry:
        return (f"entry = {entry!r} (in devloop.toml)\n"
                f"next: `{cd}devloop up` runs {entry} on this machine; "
                f"`{cd}devloop up --profile docker-gpu` runs it in a GPU container")
    file = candidates[0] if len(candidates) == 1 else "YOUR_FILE.py"
    also = (f" ({', '.join(candidates)}: pick one, or set entry in devloop.toml)" if len(candidates) > 1
            else " (or set entry in devloop.toml)")
    return (f"next: `{cd}devloop up {file}` runs it on this machine; "
            f"`{cd}devloop up {file} --profile docker-gpu` in a GPU container{also}")
