"""YAML text with a stable key order (insertion order), multi-line strings as `|` blocks.

Generated files are committed and diffed by `promote --check`: the same model must always give
the same bytes.
"""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a shared dict is written out in full each time: no &id001 anchors

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        # indent list items under their key, as kubectl and GitHub docs write them
        return super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        if not data.endswith("\n"):
            data += "\n"
        # trailing spaces on a line make PyYAML fall back to quoting: strip them
        data = "\n".join(line.rstrip() for line in data.split("\n"))
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump(doc: Any, header: str = "") -> str:
    """YAML text for `doc`; `header` lines are written as leading `# ` comments."""
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)
    lead = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return lead + body


def load(text: str) -> Any:
    """Load YAML, mapping the key `True` back to `on` (PyYAML reads a bare `on:` as a boolean)."""
    doc = yaml.safe_load(text)
    if isinstance(doc, dict) and True in doc:
        doc = {("on" if k is True else k): v for k, v in doc.items()}
    return doc
