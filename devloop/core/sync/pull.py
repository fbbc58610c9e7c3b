"""Outputs pulled back from the target: `[sync] pull = ["results/", "figures/*.png"]`.

After every pass (and with `devloop pull`) the files under those gitignore-syntax rules that are
new or changed on the target come back into the project, over the agent's `pull` mode (one exec
channel: the target lists the files the rules pick, devloop checks them by the rules and by
what it pulled before, the target sends those files as a tar stream):

- the rules match exactly as a .gitignore at the project's top does (ignore.py's matcher;
  the agent gets them as pathspec's regexes and decides the same way): `results/` is any
  folder named results at any depth (`exp1/results/m.csv`), `/results/` only the top one,
  `figures/*.png` (a slash inside) is anchored to the top, `*.csv` is any depth, `!rule`
  takes files back out (not from under a picked folder, as in git). The target walks only
  the anchored rules' folders when every rule is anchored, else the workdir, never entering
  a folder the sync excludes (defaults, the top .gitignore / .devloopignore, `[sync]
  exclude`) unless a rule picks it or starts in it, nor .git, .devloop, node_modules or a
  virtualenv; bounded (agent/pullsend.py). ~12 ms for a 20k-file tree
  (benchmarks/bench_pull_listing.py).

- incremental: `.devloop/pulled/PROFILE.json` keeps, per pulled file, the target's (size,
  mtime_ns), the local file's after the write and the sha256 of what was written; a file whose
  target copy is unchanged (size and mtime: cheap) is not fetched again, and neither is one
  that is the same locally already.
- content decides "changed here": a local file whose size and mtime differ from the record is
  hashed, and only other bytes make it changed (a `touch` or an editor's re-save is not); a
  target's copy fetched beside a local file holding the same bytes is dropped (no conflict).
- safe: the stream is parsed by the sync receiver's own reader and written by its writer
  (agent/syncrecv.py: folders opened O_NOFOLLOW one at a time, temp file + rename), only the
  names asked for, regular files only, never outside the project or into .devloop/.
- bounded: at most `[sync] pull_max_mb` per pass (default 100); what did not fit is named in a
  warning and comes with the next pass.
- never overwrites a local change: a local file that changed since the last pull (or that was
  never pulled and differs) is kept, and the target's copy is written beside it as
  `NAME.remote.EXT` (`results/metrics.remote.csv`), named in the result as a conflict.
- a pulled file deleted here stays deleted: the after-pass pulls bring it back only once it
  changed on the target since; `devloop pull` (restore_deleted) brings it back at once.
- one puller at a time per profile: a pull holds an flock on `.devloop/pulled/PROFILE.lock`
  from its listing to its record, so `devloop pull` beside a live session (its own exec of the
  agent's pull mode, the session's kernel untouched) waits for an after-pass pull in flight
  and then sees its records: no record is lost, no file written by both.
- pulled files never start a rerun or a sync back: the rules are added to the sync's exclude
  rules (`SyncConfig.excluded`), so the watcher and the sync both ignore them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from devloop.agent import syncrecv
from devloop.core.sync.ignore import ALWAYS_EXCLUDED, IgnoreRules
from devloop.core.targets.base import TargetError

DEFAULT_MAX_MB = 100
TRAILER = ".devloop-pull.json"
_GLOB = re.compile(r"[*?\[]")


@dataclass
class PullResult:
    files: list[str] = field(default_factory=list)  # pulled (written at their own path)
    bytes: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (local path kept, where the target's went)
    deferred: list[str] = field(default_factory=list)  # over the size cap: next pass
    skipped: list[str] = field(default_factory=list)  # changed while read, gone, or refused
    ms: float = 0.0


def roots_of(patterns: tuple[str, ...]) -> list[str]:
    """The folders the target walks: an anchored rule's literal leading folders (`/results/`,
    `figures/*.png`, `out/run1/**/*.csv` -> results, figures, out/run1); a rule without a slash
    but a trailing one (`results/`, `*.csv`) matches at any depth, as in gitignore, so it needs
    the whole workdir ("."). A negation only takes files away: it adds no root."""
    roots: set[str] = set()
    for raw in patterns:
        text = raw.strip()
        if not text or text.startswith(("#", "!")):
            continue
        body = text.rstrip("/")
        if "/" not in body:
            return ["."]  # unanchored: any depth
        parts = body.strip("/").split("/")
        folders = parts if text.endswith("/") else parts[:-1]
        literal: list[str] = []
        for part in folders:
            if _GLOB.search(part) or part in ("**", ".", "..") or part.startswith("\\"):
                break
            literal.append(part)
        if not literal:
            return ["."]
        roots.add("/".join(literal))
    return sorted(roots) or ["."]


def conflict_name(rel: str) -> str:
    """Where the target's copy goes when the local file changed: results/m.csv -> results/m.remote.csv."""
    folder, _, name = rel.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    new = f"{stem}.remote.{ext}" if dot and stem else f"{name}.remote"
    return f"{folder}/{new}" if folder else new


class Puller:
    def __init__(self, target: Any, root: Path, patterns: tuple[str, ...], *, profile: str = "default",
                 max_bytes: int = DEFAULT_MAX_MB << 20, log: Callable[[str, str], None] | None = None,
                 exclude: tuple[str, ...] = (), restore_deleted: bool = False) -> None:
        self.target = target
        self.root = Path(root).resolve()
        self.patterns = tuple(patterns)
        self.exclude = tuple(exclude)  # the sync's own exclusions ([sync] exclude): not walked
        # a pulled file deleted here comes back only when asked (`devloop pull`), or when it
        # changed on the target since: the after-pass pulls respect a deletion
        self.restore_deleted = restore_deleted
        self.profile = profile
        self.max_bytes = max_bytes
        self.log = log or (lambda message, level="debug": None)
        self.state_file = self.root / ".devloop" / "pulled" / f"{profile}.json"
        self._rules = IgnoreRules.of_patterns(self.patterns)  # picks here; its regexes, there

    @classmethod
    def for_config(cls, target: Any, config: Any, profile: str, **options: Any) -> "Puller":
        """The puller of a project's `[sync]`: its pull rules, its exclusions (not walked) and
        its per-pass cap (`options` override, e.g. max_bytes, restore_deleted, log)."""
        sync = config.sync
        options.setdefault("max_bytes", int(getattr(sync, "pull_max_mb", DEFAULT_MAX_MB) or DEFAULT_MAX_MB) << 20)
        return cls(target, Path(config.root), tuple(getattr(sync, "pull", ()) or ()), profile=profile,
                   exclude=tuple(getattr(sync, "exclude", ()) or ()), **options)

    @property
    def enabled(self) -> bool:
        return bool(self.patterns) and bool(getattr(self.target, "needs_sync", True))

    def _matches(self, rel: str) -> bool:
        """Picked by the rules, exactly as git would ignore it (ignore.py's matcher)."""
        return not ALWAYS_EXCLUDED.intersection(rel.split("/")) and self._rules.matches(rel)

    def _request(self) -> dict:
        """What the target lists: the rules' roots, the rules themselves, and the sync's
        exclusions (defaults, the top .gitignore / .devloopignore, [sync] exclude) to prune."""
        prune = IgnoreRules.load(self.root, self.exclude).top_regexes()
        return {"roots": roots_of(self.patterns), "match": [list(rule) for rule in self._rules.top_regexes()],
                "prune": [list(rule) for rule in prune]}

    def _load_state(self) -> dict[str, dict]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self, state: dict[str, dict]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".pulled-")
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, sort_keys=True)
        os.replace(tmp, self.state_file)

    def _local(self, rel: str) -> list[int] | None:
        try:
            st = os.lstat(self.root / rel)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns] if not os.path.islink(self.root / rel) else [-1, -1]

    def _sha(self, rel: str) -> str | None:
        """sha256 of the local file (never through a symlink), None when unreadable."""
        digest = hashlib.sha256()
        try:
            fd = os.open(self.root / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            with os.fdopen(fd, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None
        return digest.hexdigest()

    def _unchanged_here(self, rel: str, local: list[int] | None, record: dict) -> bool:
        """Is the local file what the last pull wrote? Size and mtime as recorded: yes. Else
        the same size and the same sha256 (a `touch`, an editor's re-save): yes, and the record
        takes the new mtime so the next pass does not hash it again. Content decides."""
        if local is None or record.get("local") is None:
            return False
        if local == record["local"]:
            return True
        digest = record.get("sha256")
        if not digest or local[0] != record["local"][0] or self._sha(rel) != digest:
            return False
        record["local"] = local
        return True

    async def _lock(self) -> int:
        """An exclusive flock on `.devloop/pulled/PROFILE.lock`, held for the whole pull (list,
        plan, fetch, write, record): a `devloop pull` beside a live session's after-pass pull
        (another process) or two pulls in one process wait for each other, so no record is lost
        and no file is written by both. Polled (LOCK_NB) so that a cancelled pull never leaves
        a thread blocked holding it; the lock goes with the fd, also when the process dies."""
        import fcntl

        self.state_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_file.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        waited = 0.0
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if waited == 0.0:
                        self.log(f"pull: waiting for another pull of profile {self.profile!r}", "info")
                    await asyncio.sleep(0.05)
                    waited += 0.05
        except BaseException:
            os.close(fd)
            raise

    async def pull(self) -> PullResult:
        if not self.enabled:
            return PullResult()
        fd = await self._lock()
        try:
            return await self._pull()
        finally:
            os.close(fd)  # releases the lock

    async def _pull(self) -> PullResult:
        t0 = time.perf_counter()
        result = PullResult()
        workdir = self.target.info.workdir
        channel = await self.target.spawn(self.target.agent_argv("pull", workdir))
        try:
            await channel.send((json.dumps(self._request()) + "\n").encode())
            line = await channel.readline()
            try:
                answer = json.loads(line)
                listing = answer["files"]
            except (ValueError, KeyError, TypeError):
                tail = channel.stderr_tail().strip().splitlines()
                raise TargetError("the devloop agent's pull mode did not answer"
                                  + (f": {tail[-1]}" if tail else ""),
                                  hint="run with -v to see the agent's messages") from None
            if answer.get("truncated"):
                self.log(f"pull: the target's listing stopped at {len(listing)} files (too many under "
                         "the [sync] pull rules' folders): narrow the rules", "warning")
            state = self._load_state()
            before = json.dumps(state, sort_keys=True)
            wanted, targets = self._plan(listing, state, result)
            await channel.send((json.dumps({"paths": wanted}) + "\n").encode())
            if wanted:
                with tempfile.TemporaryFile() as spool:  # bounded by the cap; parsed off the stream
                    while True:
                        chunk = await channel.read(1 << 20)
                        if not chunk:
                            break
                        spool.write(chunk)
                    spool.seek(0)
                    self._extract(spool, listing, targets, state, result)
            if wanted or json.dumps(state, sort_keys=True) != before:
                self._save_state(state)
            await channel.close_stdin()
        finally:
            try:
                await channel.wait()
            except Exception:  # noqa: BLE001
                await channel.kill()
        result.ms = (time.perf_counter() - t0) * 1000
        return result

    def _plan(self, listing: dict, state: dict, result: PullResult) -> tuple[list[str], dict[str, str]]:
        """What to fetch (by path order, within the cap) and where each goes locally."""
        wanted: list[str] = []
        targets: dict[str, str] = {}
        total = 0
        for rel in sorted(listing):
            remote = listing[rel]
            if not (isinstance(remote, list) and len(remote) == 2) or not self._matches(rel):
                continue
            try:
                syncrecv.check_relpath(rel)
            except syncrecv.Refused:
                continue
            record = state.get(rel) or {}
            local = self._local(rel)
            unchanged_here = self._unchanged_here(rel, local, record)
            if record.get("remote") == remote and unchanged_here:
                continue  # pulled before and unchanged on both sides
            if local == remote:  # the same file already (synced up)
                state[rel] = {"remote": remote, "local": local, "sha256": self._sha(rel)}
                continue
            if record.get("remote") == remote and not (
                    local is None and record.get("local") is not None and self.restore_deleted):
                continue  # only the local copy changed (or was deleted): nothing new to fetch
            dest = rel
            if local is not None and not unchanged_here:
                dest = conflict_name(rel)  # changed here since the last pull (or never pulled)
            if total + remote[0] > self.max_bytes and wanted:
                result.deferred.append(rel)
                continue
            if remote[0] > self.max_bytes:
                result.deferred.append(rel)
                continue
            total += remote[0]
            wanted.append(rel)
            targets[rel] = dest
        return wanted, targets

    def _extract(self, stream: Any, listing: dict, targets: dict[str, str], state: dict,
                 result: PullResult) -> None:
        reader = syncrecv.TarReader(stream)
        tree = syncrecv.Tree(str(self.root))
        writer = syncrecv.Writer(tree)
        written: dict[str, str] = {}
        try:
            while True:
                member = reader.next()
                if member is None:
                    break
                name, kind, size, _link = member
                if name == TRAILER:
                    trailer = json.loads(reader.read_member(size) or b"{}")
                    for rel in trailer.get("changed", []) + trailer.get("missing", []):
                        if rel in written:
                            dest = written.pop(rel)
                            try:
                                os.unlink(self.root / dest)
                            except OSError:
                                pass
                        result.skipped.append(rel)
                    continue
                dest = targets.get(name)
                if dest is None or kind not in (b"0", b"\0"):
                    reader.skip_member(size)  # only what was asked for, and only files
                    continue
                mtime_ns = int(listing[name][1])
                try:
                    written[name] = dest
                    writer.write_file(dest, reader, size, 0o644, mtime_ns)
                except (syncrecv.Leaf, syncrecv.Refused) as exc:
                    written.pop(name, None)
                    result.skipped.append(name)
                    self.log(f"pull: {name} not written: {exc}", "warning")
        finally:
            tree.close()
        for rel, dest in written.items():
            size = int(listing[rel][0])
            result.bytes += size
            digest = self._sha(dest)
            if dest != rel and digest is not None and digest == self._sha(rel):
                try:  # the target's copy holds what the local file holds: no conflict
                    os.unlink(self.root / dest)
                    dest = rel
                except OSError:
                    pass
            if dest == rel:
                if written.get(rel) == rel:
                    result.files.append(rel)
                state[rel] = {"remote": listing[rel], "local": self._local(rel), "sha256": digest}
            else:
                result.conflicts.append((rel, dest))
                record = state.setdefault(rel, {})
                record["remote"] = listing[rel]  # this version is fetched: not again
