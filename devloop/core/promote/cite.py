"""Which recorded run a promote cites: the latest green run of exactly the code and environment
the pipeline pins.

A pipeline pins a git commit (plus the hash of the uncommitted diff), a profile and an image.
The run records in `.devloop/runs.jsonl` (core/runs) say what ran where; this module finds
the newest one that is green (`core.runs.store.is_green`: every cell ok) and matches all
four. Its id becomes the pipeline's `run-id` provenance, so the pipeline names the run that
proved it works. None matches: "no green run of this code on this profile", and
`devloop promote --require-green` refuses.

Image matching: a run in a container matches when its image digest is the pinned digest (or
the pinned image is a `devloop snapshot` taken of that run: the snapshot's `run_id`, or a run
on the snapshot image itself). A run on a target without an image (local, ssh) has nothing to
compare: its profile stands for its environment. An unpinned promote (`--allow-unpinned`, no
digest) compares image references.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from devloop.core.units import plural

NO_GREEN = "no green run of this code on this profile"
_NO_IMAGE_KINDS = ("local", "ssh")


@dataclass(frozen=True)
class Citation:
    run_id: str  # "" when no run matches
    record: Mapping[str, Any] | None = None
    reason: str = ""  # why none matched, one line (empty when one did)

    def __bool__(self) -> bool:
        return bool(self.run_id)

    def line(self) -> str:
        """One line for the CLI and the app's promote dialog."""
        if not self.run_id or self.record is None:
            return self.reason or NO_GREEN
        r = self.record
        return (f"cites green run {self.run_id[:8]} ({r.get('file') or '?'}, {str(r.get('end') or '')[:19]}Z, "
                f"{plural(len(r.get('cells') or ()), 'cell')} ok)")


def _sha(value: str) -> str:
    value = str(value or "")
    return value.rsplit("@", 1)[-1] if "@" in value else value


def image_matches(record: Mapping[str, Any], pinned: Any, snapshot: Mapping[str, Any] | None = None) -> bool:
    """Did the run `record` run on the image `pinned` (a provenance.PinnedImage) names?"""
    image = record.get("image") or {}
    run_digest, run_ref = _sha(image.get("digest", "")), str(image.get("ref", "") or "")
    kind = str((record.get("target") or {}).get("kind") or "")
    if not run_digest and kind in _NO_IMAGE_KINDS:
        return True
    pinned_digest = _sha(getattr(pinned, "digest", "") or getattr(pinned, "ref", ""))
    if getattr(pinned, "source", "") == "snapshot" and snapshot:
        if snapshot.get("run_id") and snapshot.get("run_id") == record.get("run_id"):
            return True
        if run_digest and run_digest in (_sha(snapshot.get("image_id", "")), _sha(snapshot.get("repo_digest", ""))):
            return True
    if pinned_digest.startswith("sha256:") and run_digest:
        return run_digest == pinned_digest
    return bool(run_ref) and run_ref == str(getattr(pinned, "ref", "") or "")


def cite_green_run(root: Path, profile: str, state: Any, pinned: Any,
                   records: list[Mapping[str, Any]] | None = None) -> Citation:
    """The newest green run on `profile` whose commit and diff hash are `state`'s (a
    provenance.GitState) and whose image is `pinned`'s; a Citation saying why when none is."""
    from devloop.core.promote.provenance import latest_snapshot
    from devloop.core.runs.store import is_green
    from devloop.core.runs.store import iter_newest, runs_path

    newest_first = iter_newest(root) if records is None else reversed(records)
    dirty = bool(getattr(state, "dirty_files", ()))
    diff = str(getattr(state, "diff_sha256", "") or "")
    snapshot = latest_snapshot(root, profile) if getattr(pinned, "source", "") == "snapshot" else None
    on_profile = same_code = green_code = 0
    for record in newest_first:
        if record.get("profile") != profile:
            continue
        on_profile += 1
        git = record.get("git") or {}
        if (git.get("commit") != state.commit or bool(git.get("dirty")) != dirty
                or (dirty and git.get("diff_sha256") != diff)):
            continue
        same_code += 1
        if not is_green(record):
            continue
        green_code += 1
        if image_matches(record, pinned, snapshot):
            return Citation(str(record["run_id"]), record)
    short = f"{state.commit[:10]}{'+dirty' if dirty else ''}"
    if not on_profile:
        why = f"no run on profile {profile!r} in {runs_path(root)}"
    elif not same_code:
        why = f"{on_profile} run(s) on {profile!r}, none of commit {short}"
    elif not green_code:
        why = f"{same_code} run(s) of {short} on {profile!r}, none green"
    else:
        why = f"{green_code} green run(s) of {short}, none on the pinned image {getattr(pinned, 'ref', '?')}"
    return Citation("", None, f"{NO_GREEN} ({why}) -- fix: devloop run -p {profile} FILE until it passes")


def preview(config: Any, profile_name: str | None) -> str:
    """The line the app's promote dialog shows before promoting: the run a promote now would
    cite, or why there is none (errors a promote would report are left to it)."""
    try:
        from devloop.core.promote.provenance import git_state, pin_image
        from devloop.core.promote.service import _target_spec
        from devloop.core.runs.record import promote_outputs

        root = Path(config.root)
        profile = config.profile(profile_name)
        target = _target_spec(profile, config)
        state = git_state(root, ignore=promote_outputs(config))
        pinned = pin_image(root, profile.name, target.image, target.file, allow_unpinned=True,
                           kind=target.kind)
        return cite_green_run(root, profile.name, state, pinned).line()
    except Exception as exc:  # noqa: BLE001 - the dialog still opens; promote reports the error
        return f"{NO_GREEN} (cannot tell yet: {str(exc).split(' -- fix: ')[0]})"


def green_run_on(config: Any, profile_name: str, image_ref: str, image_digest: str) -> str:
    """The newest green run of the code as it is now on this profile and image ("" when none):
    what `devloop snapshot` records as the run its image was taken for, so a promote that pins
    the snapshot cites that run."""
    from types import SimpleNamespace

    from devloop.core.promote.model import PromoteError
    from devloop.core.promote.provenance import git_state
    from devloop.core.runs.record import promote_outputs

    root = Path(config.root)
    try:
        state = git_state(root, ignore=promote_outputs(config))
    except (PromoteError, OSError):
        return ""
    image = SimpleNamespace(ref=image_ref, digest=image_digest, source="profile")
    return cite_green_run(root, profile_name, state, image).run_id
