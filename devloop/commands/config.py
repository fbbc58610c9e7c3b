"""`devloop config`: the resolved configuration and profile, as text or JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

NAME = "config"
ORDER = 2
HELP = "show the resolved configuration (devloop.toml and a profile)"
DESCRIPTION = (
    "Print what devloop resolved from devloop.toml (found from the current folder upward) and the "
    "selected profile, defaults filled in. A config error exits 2 with one line naming the file "
    "and line."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--profile", metavar="P",
                        help="the profile to show (default: [project].profile, else 'local')")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of readable text")


def run(args: argparse.Namespace) -> int:
    from devloop.core.config import load_config

    config = load_config(Path.cwd())
    profile = config.profile(args.profile)
    data = config.to_dict()
    data["profile"] = profile.to_dict()
    data["profiles"] = config.profile_names()
    text = json.dumps(data, indent=2) if args.json else render_text(data, _kind_fields(profile))
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `devloop config | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _kind_fields(profile: Any) -> dict[str, Any]:
    """The profile's identity plus every key its kind accepts (set or default)."""
    from devloop.core.config import PROFILE_KEYS

    full = profile.to_dict()
    keys = ["name", "kind", "source"] + [k for k in full if k in PROFILE_KEYS[profile.kind]
                                         and k != "kind"]
    return {k: full[k] for k in keys}


def render_text(data: dict[str, Any], profile_set: dict[str, Any]) -> str:
    """Readable form: one `[section]` per block, `key = value` with values as JSON."""
    lines = [f"config file: {data['file'] or '(none: defaults)'}", f"root: {data['root']}"]
    for section in ("project", "sync", "run", "gpu", "ui", "session"):
        lines.append("")
        lines.append(f"[{section}]")
        lines.extend(_pairs(data[section]))
    for stage in data["stages"]:
        lines.append("")
        where = f"  # line {stage['line']}" if stage.get("line") else ""
        lines.append(f"[[stage]]{where}")
        lines.extend(_pairs({k: v for k, v in stage.items() if k != "line"}))
    lines.append("")
    lines.append("[promote]")
    lines.extend(_pairs(data["promote"]))
    lines.append("")
    lines.append(f"profile {profile_set['name']!r} ({profile_set['kind']}, from "
                 f"{profile_set['source']})")
    lines.extend(_pairs({k: v for k, v in profile_set.items()
                         if k not in ("name", "kind", "source")}))
    lines.append(f"available profiles: {', '.join(data['profiles'])}")
    return "\n".join(lines)


def _pairs(values: dict[str, Any]) -> list[str]:
    width = max((len(k) for k in values), default=0)
    return [f"  {key.ljust(width)} = {json.dumps(value)}" for key, value in values.items()]
