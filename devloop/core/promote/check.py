"""`promote --check`: does the committed pipeline still say what devloop.toml and the profile say?

The comparison is on substance (stages, commands, image, resources, env, outputs) -- the
provenance that changes with every promote (run id, git commit and revision, dirty flag, diff
hash, time, devloop version) is replaced by placeholders on both sides first, so a fresh
`--commit` followed by `--check` passes. The pinned commit is blanked wherever it appears (a git
artifact's revision, the `git fetch` line of a Kubeflow job, an Argo resource's manifest): code
drift is checked on its own, file by file (service.check), not through the pin's value.
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


def recorded(doc: Any) -> dict[str, str]:
    """The provenance a generated file records: profile, git-commit, ... ({} when none)."""
    if not isinstance(doc, dict):
        return {}
    if doc.get("kind") == "List":
        items = doc.get("items") or [{}]
        return recorded(items[0])
    if "jobs" in doc:
        env = doc.get("env") or {}
        keys = {"DEVLOOP_PROFILE": "profile", "DEVLOOP_GIT_COMMIT": "git-commit",
                "DEVLOOP_RUN_ID": "run-id", "DEVLOOP_IMAGE_DIGEST": "image-digest"}
        return {v: str(env[k]) for k, v in keys.items() if k in env}
    ann = (doc.get("metadata") or {}).get("annotations") or {}
    return {k[len(_PREFIX):]: str(v) for k, v in ann.items() if str(k).startswith(_PREFIX)}


def kind_of(doc: Any) -> str:
    """The promote target a document was written for ("" when it is none of them)."""
    if not isinstance(doc, dict):
        return ""
    if "jobs" in doc:
        return "github"
    kind = doc.get("kind")
    if kind == "List":
        kinds = {kind_of(i) for i in doc.get("items") or []}
        return kinds.pop() if len(kinds) == 1 else ""
    return {"Workflow": "argo", "PyTorchJob": "pytorchjob", "TrainJob": "trainjob"}.get(kind, "")


def _replace_strings(doc: Any, old: str, new: str) -> Any:
    if isinstance(doc, dict):
        return {k: _replace_strings(v, old, new) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_replace_strings(v, old, new) for v in doc]
    if isinstance(doc, str) and old and old in doc:
        return doc.replace(old, new)
    return doc


def substance(doc: Any) -> Any:
    """A copy of a generated document with the per-promote provenance blanked."""
    doc = copy.deepcopy(doc)
    if not isinstance(doc, dict):
        return doc
    commit = recorded(doc).get("git-commit", "")
    if len(commit) >= 7:
        doc = _replace_strings(doc, commit, VOLATILE)
    if doc.get("kind") == "List":
        doc["items"] = [substance(i) for i in doc.get("items") or []]
    elif doc.get("kind") in ("PyTorchJob", "TrainJob"):
        meta = doc.get("metadata") or {}
        for part in ("labels", "annotations"):
            _blank(meta.get(part))
        spec = doc.get("spec") or {}
        _blank(spec.get("labels"))
        for rs in (spec.get("pytorchReplicaSpecs") or {}).values():
            _blank(((rs.get("template") or {}).get("metadata") or {}).get("labels"))
    elif doc.get("kind") == "Workflow" and "spec" in doc:
        meta = doc.get("metadata") or {}
        for part in ("labels", "annotations"):
            _blank(meta.get(part))
        _blank(((doc["spec"].get("podMetadata") or {}).get("labels")))
        for t in doc["spec"].get("templates") or []:
            for a in (t.get("inputs") or {}).get("artifacts") or []:
                if isinstance(a.get("git"), dict) and "revision" in a["git"]:
                    a["git"]["revision"] = VOLATILE
            res = t.get("resource")
            if isinstance(res, dict) and isinstance(res.get("manifest"), str):
                try:
                    res["manifest"] = substance(yamltext.load(res["manifest"]))
                except Exception:
                    pass
    elif "jobs" in doc:
        env = doc.get("env") or {}
        env.pop("DEVLOOP_DIFF_SHA256", None)
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
        if key == _PREFIX + "diff-sha256":
            del mapping[key]  # present only on a dirty promote: its presence is not substance
        elif key.startswith(_PREFIX) and key[len(_PREFIX):] in _VOLATILE_KEYS:
            mapping[key] = VOLATILE


def drift(committed_text: str, fresh_doc: Any, path: str, *, label: str = "committed") -> str:
    """A unified diff of the substance ("" when none): committed file vs freshly generated.
    `label` says what the file on disk is ("committed", or "on disk, not committed")."""
    try:
        committed = yamltext.load(committed_text)
    except Exception as exc:  # a hand-broken file is drift too
        committed = {"unreadable": str(exc).splitlines()[0]}
    old = yamltext.dump(substance(committed)).splitlines(keepends=True)
    new = yamltext.dump(substance(yamltext.load(yamltext.dump(fresh_doc)))).splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, fromfile=f"{path} ({label})",
                                        tofile=f"{path} (from devloop.toml and the profile)"))
