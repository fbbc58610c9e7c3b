"""What pins a pipeline to what ran: the git commit (and dirty state), the image digest, a run id.

Thin I/O: git through subprocess, the Docker target's snapshot log
(`<project>/.devloop/snapshots.jsonl`, one JSON object per line, newest last).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from devloop.core.promote.model import PromoteError, image_hint

_DIGEST_REF = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
SNAPSHOT_LOG = ".devloop/snapshots.jsonl"


def git(root: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise PromoteError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}",
                           file=str(root), hint="run devloop promote inside a git repository with at least one commit")
    return proc.stdout


@dataclass(frozen=True)
class GitState:
    commit: str
    dirty_files: tuple[str, ...]  # tracked files with uncommitted changes
    diff_sha256: str  # sha256 of `git diff HEAD` over those files ("" when clean)
    remote_url: str
    toplevel: Path


def git_state(root: Path, *, ignore: Sequence[Path] = ()) -> GitState:
    """HEAD, the tracked files with uncommitted changes (minus `ignore`), the remote's URL."""
    top = Path(git(root, "rev-parse", "--show-toplevel").strip())
    head = git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).strip()
    if not head:
        raise PromoteError("the repository has no commit yet", file=str(top),
                           hint="commit your code first: git add ... && git commit")
    skip = {p.resolve() for p in ignore}
    dirty: list[str] = []
    for line in git(top, "status", "--porcelain=v1", "-z", "--untracked-files=no").split("\0"):
        if len(line) < 4:
            continue
        path = line[3:]
        if (top / path).resolve() in skip:
            continue
        dirty.append(path)
    diff = ""
    if dirty:
        diff_text = git(top, "diff", "HEAD", "--binary", "--", *dirty)
        diff = hashlib.sha256(diff_text.encode()).hexdigest()
    remote = ""
    remotes = git(top, "remote", check=False).split()
    if remotes:
        name = "origin" if "origin" in remotes else remotes[0]
        remote = git(top, "remote", "get-url", name, check=False).strip()
    return GitState(commit=head, dirty_files=tuple(sorted(dirty)), diff_sha256=diff,
                    remote_url=remote, toplevel=top)


def commit_files(top: Path, files: Sequence[Path], message: str) -> str:
    """Commit exactly `files` (nothing else that may be staged); the new commit's sha."""
    rel = [str(f.resolve().relative_to(top.resolve())) for f in files]
    git(top, "add", "--", *rel)
    proc = subprocess.run(["git", "-C", str(top), "commit", "-q", "-m", message, "--", *rel],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        out = (proc.stderr + proc.stdout).strip()
        if "nothing to commit" in out or "no changes added" in out:
            return git(top, "rev-parse", "HEAD").strip()
        raise PromoteError(f"git commit failed: {out}", file=str(top),
                           hint="check git's message above (user.name / user.email set?)")
    return git(top, "rev-parse", "HEAD").strip()


# ---------------------------------------------------------------------------------------------
# the image


@dataclass(frozen=True)
class PinnedImage:
    ref: str  # what the pipeline runs
    digest: str  # "sha256:..." (manifest digest, or the local image id when unpinned)
    source: str  # "snapshot" | "profile"
    warning: str = ""


def latest_snapshot(root: Path, profile: str) -> dict | None:
    """The newest snapshot recorded for `profile`, or None."""
    log = root / SNAPSHOT_LOG
    if not log.is_file():
        return None
    latest = None
    for line in log.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("profile") == profile:
            latest = rec
    return latest


def is_pinned(ref: str) -> bool:
    return bool(_DIGEST_REF.match(ref))


def pin_image(root: Path, profile: str, profile_image: str, profile_file: str,
              *, allow_unpinned: bool, kind: str = "") -> PinnedImage:
    """The image the pipeline runs: the latest snapshot's digest, else the profile's pinned image."""
    snap = latest_snapshot(root, profile)
    fix = image_hint(kind, profile_file)
    repo_digest = str((snap or {}).get("repo_digest") or "")
    if snap and is_pinned(repo_digest):
        return PinnedImage(repo_digest, repo_digest.split("@", 1)[1], "snapshot")
    unpushed = (f"the latest snapshot {snap.get('image', '?')} was never pushed to a registry, so "
                f"it has no digest a cluster can pull") if snap else ""
    if profile_image and is_pinned(profile_image):
        return PinnedImage(profile_image, profile_image.split("@", 1)[1], "profile",
                           warning=(unpushed + "; using the profile's pinned image") if unpushed else "")
    if snap and allow_unpinned and snap.get("image"):
        return PinnedImage(str(snap["image"]), str(snap.get("image_id", "")), "snapshot",
                           warning=f"{unpushed}: the pipeline names it by tag (unpinned), "
                                   f"image id {snap.get('image_id', '?')}")
    if snap:
        raise PromoteError(unpushed, file=str(root / SNAPSHOT_LOG), field="repo_digest",
                           hint="docker push it and run `devloop snapshot` again, pin "
                                "`image: name@sha256:...` in the profile, or pass --allow-unpinned")
    if not profile_image:
        raise PromoteError("the profile names no image and there is no snapshot", file=profile_file,
                           field="image", hint=fix)
    if allow_unpinned:
        return PinnedImage(profile_image, "", "profile",
                           warning=f"image {profile_image} is not pinned by digest: the pipeline may "
                                   f"run a different image than the one you tested")
    raise PromoteError(f"image {profile_image!r} is a tag, not pinned by digest", file=profile_file,
                       field="image", hint=fix + " (or pass --allow-unpinned)")


# ---------------------------------------------------------------------------------------------
# what a pinned commit can and cannot promise


def untracked(top: Path, paths: Sequence[str]) -> list[str]:
    """The paths (relative to `top`) that git does not track."""
    if not paths:
        return []
    tracked = set(git(top, "ls-files", "-z", "--", *paths, check=False).split("\0"))
    return [p for p in paths if p not in tracked]


def on_remote_branch(top: Path, commit: str) -> bool | None:
    """Whether a remote-tracking branch contains `commit` (None: no remote-tracking branches
    at all, so nothing can be said)."""
    if not git(top, "branch", "-r", check=False).strip():
        return None
    return bool(git(top, "branch", "-r", "--contains", commit, check=False).strip())


def has_commit(top: Path, commit: str) -> bool:
    return subprocess.run(["git", "-C", str(top), "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode == 0


def changed_since(top: Path, commit: str, paths: Sequence[str]) -> list[str]:
    """Which of `paths` differ between `commit` and the working tree (committed or not), plus
    those that did not exist at `commit`."""
    if not paths:
        return []
    out = git(top, "diff", "--name-only", "-z", commit, "--", *paths, check=False).split("\0")
    changed = {p for p in out if p}
    at_commit = set(git(top, "ls-tree", "-r", "-z", "--name-only", commit, "--", *paths,
                        check=False).split("\0"))
    changed |= {p for p in paths if p not in at_commit and (top / p).exists()}
    return sorted(changed)


def is_tracked(top: Path, path: Path) -> bool:
    try:
        rel = str(path.resolve().relative_to(top.resolve()))
    except ValueError:
        return False
    return bool(git(top, "ls-files", "--", rel, check=False).strip())
