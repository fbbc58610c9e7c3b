"""`promote --check`: does the committed pipeline still say what devloop.toml and the profile say?

The comparison is on substance (stages, commands, image, resources, env, outputs) -- the
provenance that changes with every promote (run id, git commit and revision, dirty flag, diff
hash, time, devloop version) is replaced by placeholders on both sides first, so a fresh
`--commit` followed by `--check` passes.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from devloop.core.promote import yamltext

VOLATILE = "<volatile>"
_PREFIX = "devloop.dev/"
_VOLATILE_KEYS = ("run-id", "git-commit", "dirty", "diff-sha256", "promoted-at", "devloop-version")
_VOLATILE_ENV = ("DEVLOOP_RUN_ID", "DEVLOOP_GIT_COMMIT", "DEVLOOP_DIRTY", "DEVLOOP_DIFF_SHA256",
                 "DEVLOOP_PROMOTED_AT", "DEVLOOP_VERSION")


def substance(doc: Any) -> Any:
    """A copy of an Argo or GitHub document with the per-promote provenance blanked."""
    doc = copy.deepcopy(doc)
    if not isinstance(doc, dict):
        return doc
    if doc.get("kind") == "Workflow" and "spec" in doc:
        meta = doc.get("metadata") or {}
        for part in ("labels", "annotations"):
            _blank(meta.get(part))
        _blank(((doc["spec"].get("podMetadata") or {}).get("labels")))
        for t in doc["spec"].get("templates") or []:
            for a in (t.get("inputs") or {}).get("artifacts") or []:
                if isinstance(a.get("git"), dict) and "revision" in a["git"]:
                    a["git"]["revision"] = VOLATILE
    elif "jobs" in doc:
        env = doc.get("env") or {}
        for k in _VOLATILE_ENV:
            if k in env:
                env[k] = VOLATILE
        for job in (doc.get("jobs") or {}).values():
            for step in job.get("steps") or []:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    (step.get("with") or {}).pop("ref", None)
                if str(step.get("run", "")).startswith("python -m pip install \"devloop=="):
                    step["run"] = "python -m pip install devloop"
    return doc


def _blank(mapping: dict | None) -> None:
    if not mapping:
        return
    for key in list(mapping):
        if key.startswith(_PREFIX) and key[len(_PREFIX):] in _VOLATILE_KEYS:
            mapping[key] = VOLATILE


def drift(committed_text: str, fresh_doc: Any, path: str) -> str:
    """A unified diff of the substance ("" when none): committed file vs freshly generated."""
    try:
        committed = yamltext.load(committed_text)
    except Exception as exc:  # a hand-broken file is drift too
        committed = {"unreadable": str(exc).splitlines()[0]}
    old = yamltext.dump(substance(committed)).splitlines(keepends=True)
    new = yamltext.dump(substance(yamltext.load(yamltext.dump(fresh_doc)))).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, fromfile=f"{path} (committed)",
                                        tofile=f"{path} (from devloop.toml and the profile)"))
