"""Send a sync plan to a target as one tar stream into the agent's `receive` mode.

The stream is built while it is sent (1 MiB writes, never the whole tar in memory): first a
control record (deletes, mode changes, manifest entries to store remotely), then each file and
symlink of the plan. The first sync through a target object carries the complete manifest (the
remote replaces its record); later ones carry only what changed (the remote appends to it).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import queue
import stat
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterator

from devloop.core.sync.manifest import READ_FLAGS, Entry, Manifest, manifest_from_json
from devloop.core.targets.base import SyncStats, TargetError

if TYPE_CHECKING:  # pragma: no cover
    from devloop.core.sync.plan import SyncPlan
    from devloop.core.targets.base import Channel, Target

from devloop.agent import wire  # noqa: E402 - the names the receiver agrees on

CONTROL_NAME = wire.CONTROL_NAME
HASHES_NAME = wire.HASHES_NAME
BLOCK = 512
SEND_BYTES = 1 << 20
SMALL_FILE = 256 << 10  # files up to this size are read in one go and sent as one piece
THREADED_BYTES = 4 << 20  # a plan this big (or with this many files) is read on a thread
THREADED_FILES = 256
ABORT_WAIT_S = 2.0  # a stopped sync gives its receiver this long to clean up and exit
MANIFEST_REQUEST = wire.MANIFEST_REQUEST.to_bytes(4, "big")  # a kept receiver's frame header: answer the manifest

ProgressFn = Callable[[int, int, int, int], None]

# targets that already hold a complete record from this process: send deltas to them
_full_sent: "weakref.WeakKeyDictionary[Target, str]" = weakref.WeakKeyDictionary()


_USTAR_TAIL = b"ustar\x0000" + bytes(32 + 32 + 8 + 8 + 155 + 12)
_OWNER = b"0000000\x000000000\x00"  # uid, gid


def _header(name: str, size: int = 0, mode: int = 0o644, mtime: int = 0, link: str | None = None) -> bytes:
    """A ustar header built directly (the common case: short names), else tarfile's PAX one."""
    bname = name.encode("utf-8", "surrogateescape")
    blink = link.encode("utf-8", "surrogateescape") if link is not None else b""
    if len(bname) <= 100 and len(blink) <= 100 and size < 0o77777777777 and 0 <= mtime < 0o77777777777:
        head = b"".join((
            bname.ljust(100, b"\0"),
            b"%07o\0" % (mode & 0o7777), _OWNER,
            b"%011o\0%011o\0        " % (0 if link is not None else size, mtime),
            b"2" if link is not None else b"0",
            blink.ljust(100, b"\0"),
            _USTAR_TAIL,
        ))
        return b"%b%06o\0 %b" % (head[:148], sum(head), head[156:])
    import tarfile  # only for long names: not worth its import on every `devloop sync`

    info = tarfile.TarInfo(name)
    info.size = 0 if link is not None else size
    info.mode = mode
    info.mtime = mtime
    if link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = link
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def control_record(plan: "SyncPlan", full: bool) -> bytes:
    new = plan.new_manifest
    if full:
        names = new.keys()
    else:
        names = [*plan.copies, *plan.mode_changes]
    # an Entry is the tuple (size, mtime_ns, mode, sha256, link): json writes it as that list
    entries = {rel: new[rel] for rel in names}
    control = {
        "v": 1,
        "full": full,
        "deletes": list(plan.deletes),
        "chmod": {rel: new[rel].mode for rel in plan.mode_changes},
        "entries": entries,
    }
    if full:  # the entries not sent: the receiver checks the plan's writes before doing any
        copies = set(plan.copies)
        control["keep"] = [rel for rel in new if rel not in copies]
    return json.dumps(control, separators=(",", ":")).encode("utf-8")


class _Sender:
    """Sends ready chunks on the channel and reports progress."""

    def __init__(self, channel: "Channel", files_total: int, bytes_total: int,
                 on_progress: ProgressFn | None, framed: bool = False) -> None:
        self.channel = channel
        self.framed = framed
        self.files_total = files_total
        self.bytes_total = bytes_total
        self.files_done = 0
        self.bytes_done = 0
        self.on_progress = on_progress

    async def send_chunk(self, data: bytes, files: int, nbytes: int) -> None:
        """A chunk `_batched` built (frame header included when framed)."""
        self.files_done += files
        self.bytes_done += nbytes
        await self.channel.send(data)
        if self.on_progress is not None:
            self.on_progress(self.files_done, self.files_total, self.bytes_done, self.bytes_total)


def _tar_pieces(plan: "SyncPlan", root: str, full: bool,
                digests: dict[str, str]) -> Iterator[tuple[bytes, int, int]]:
    """The plan as tar bytes: (piece, files finished with it, file bytes in it). Blocking reads:
    run it on a thread for a big plan (see _stream_plan). Files planned without a hash (a first
    sync: see Scanner.scan(hash_new=False)) are hashed as they are read; their hashes go into
    `digests` and, as a last member, to the receiver's record.

    The record must claim only what arrived whole: a file gone since the scan is not sent at
    all (the target keeps what it had, unrecorded), and a hashed file that changed since the
    scan or while it was read (its bytes are not the hash's) is named in a last member,
    `.devloop/unsent.json`, so the receiver leaves it unverified and the next sync sends it
    again. A file that cannot be read (permissions) is an error naming it, never sent empty."""
    control = control_record(plan, full)
    yield _header(CONTROL_NAME, len(control)) + control + _pad(len(control)), 0, 0
    new = plan.new_manifest
    join = os.path.join
    # O_NOFOLLOW: a file swapped for a link since the scan is not read through it; O_NONBLOCK:
    # one swapped for a fifo does not hang the sync (neither changes reads of a regular file)
    flags = READ_FLAGS | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    unsent: list[str] = []
    for rel in plan.copies:
        entry: Entry = new[rel]
        if entry.link is not None:
            yield _header(rel, link=entry.link, mode=0o777), 1, 0
            continue
        try:
            fd = os.open(join(root, rel), flags)
        except (FileNotFoundError, NotADirectoryError):
            yield b"", 1, 0  # gone since the scan: not sent; the next sync deletes or sends it
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link now: the next scan sees it as one
                yield b"", 1, 0
                continue
            raise TargetError(f"cannot read {join(root, rel)}: {exc.strerror or exc} (nothing of it was sent)",
                              hint=f"make it readable, or exclude {rel} in .devloopignore") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                yield b"", 1, 0  # a fifo or device now: not synced
                continue
            size = st.st_size
            # the bytes sent are the scanned ones only if the file is as it was scanned
            whole = size == entry.size and st.st_mtime_ns == entry.mtime_ns
            digest = None if entry.sha256 else hashlib.sha256()
            head = _header(rel, size, entry.mode, entry.mtime_ns // 1_000_000_000)
            try:
                if size <= SMALL_FILE:  # header, data and padding as one piece
                    data = os.read(fd, size) if size else b""
                    if len(data) < size:  # shrank while read: pad to the announced size
                        data += bytes(size - len(data))
                        digest = None
                        whole = False
                    if digest is not None:
                        digest.update(data)
                    yield b"%b%b%b" % (head, data, bytes(-size % BLOCK)), 1, size
                else:
                    yield head, 0, 0
                    remaining = size
                    while remaining > 0:
                        block = os.read(fd, min(SEND_BYTES, remaining))
                        if not block:  # shrank while read: pad to the announced size
                            block = bytes(remaining)
                            digest = None
                            whole = False
                        remaining -= len(block)
                        if digest is not None:
                            digest.update(block)
                        yield block, 0, len(block)
                    yield _pad(size), 1, 0
            except OSError as exc:  # EIO, or a read refused halfway: the stream cannot go on
                raise TargetError(f"cannot read {join(root, rel)}: {exc.strerror or exc}",
                                  hint=f"make it readable, or exclude {rel} in .devloopignore") from None
            after = os.fstat(fd)
            if after.st_mtime_ns != st.st_mtime_ns or after.st_size != st.st_size:
                whole = False  # written to while it was read
        finally:
            os.close(fd)
        if not whole:
            digest = None
            if entry.sha256:  # the record would claim that hash for other bytes
                unsent.append(rel)
        if digest is not None:
            digests[rel] = digest.hexdigest()
    if digests:
        trailer = json.dumps(digests, separators=(",", ":")).encode("utf-8")
        yield _header(HASHES_NAME, len(trailer)) + trailer + _pad(len(trailer)), 0, 0
    if unsent:
        trailer = json.dumps(unsent, separators=(",", ":")).encode("utf-8")
        yield _header(wire.UNSENT_NAME, len(trailer)) + trailer + _pad(len(trailer)), 0, 0
    yield b"\0" * (2 * BLOCK), 0, 0


def _batched(pieces: Iterator[tuple[bytes, int, int]], framed: bool) -> Iterator[tuple[bytes, int, int]]:
    """Pieces joined into ~SEND_BYTES chunks with their counts (one copy, one send per MiB);
    `framed` puts the kept receiver's 4-byte length header in front of each."""
    parts: list[bytes] = [b""] if framed else []
    size = files = nbytes = 0
    for piece, df, db in pieces:
        parts.append(piece)
        size += len(piece)
        files += df
        nbytes += db
        if size >= SEND_BYTES:
            if framed:
                parts[0] = size.to_bytes(4, "big")
            yield b"".join(parts), files, nbytes
            parts = [b""] if framed else []
            size = files = nbytes = 0
    if size or files:
        if framed:
            parts[0] = size.to_bytes(4, "big")
        yield b"".join(parts), files, nbytes


async def _stream_plan(sender: _Sender, plan: "SyncPlan", root: str, full: bool) -> dict[str, str]:
    """Send the plan; the hashes computed on the way. A big one is read and framed on a thread
    while the loop sends the previous MiB: reading overlaps the pipe, and the event loop (the
    app's) never waits on the disk."""
    digests: dict[str, str] = {}
    chunks_of = _batched(_tar_pieces(plan, root, full, digests), sender.framed)
    if plan.bytes_total < THREADED_BYTES and len(plan.copies) < THREADED_FILES:
        for chunk in chunks_of:
            await sender.send_chunk(*chunk)
        return digests
    chunks: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks_of:
                while not stop.is_set():
                    try:
                        chunks.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            chunks.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the sending side
            chunks.put(exc)

    producer = threading.Thread(target=produce, name="devloop-sync-read", daemon=True)
    producer.start()
    try:
        while True:
            item = chunks.get_nowait() if not chunks.empty() else await asyncio.to_thread(chunks.get)
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            await sender.send_chunk(*item)
    finally:
        stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                chunks.get_nowait()
            except queue.Empty:
                break
        try:  # and a getter left waiting by a cancelled send
            chunks.put_nowait(None)
        except queue.Full:
            pass
    return digests


def _adopt_digests(plan: "SyncPlan", digests: dict[str, str]) -> None:
    """The hashes computed while sending, into the plan's manifest (the caller keeps it as
    what the remote now holds; the scanner takes them into its stat cache)."""
    new = plan.new_manifest
    for rel, digest in digests.items():
        entry = new.get(rel)
        if entry is not None and not entry.sha256:
            new[rel] = Entry(entry.size, entry.mtime_ns, entry.mode, digest, None)


def _workdir(target: "Target") -> str:
    try:
        return target.info.workdir
    except TargetError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TargetError(f"the {target.kind} target has no workdir yet", hint="start() it first") from exc


async def _read_answer(channel: "Channel", what: str) -> object:
    line = await channel.readline()
    code = await channel.wait()
    if not line:
        tail = channel.stderr_tail().strip().splitlines()
        raise TargetError(
            f"the devloop agent's {what} mode exited ({code}) without answering"
            + (f": {tail[-1]}" if tail else ""),
            hint="run with -v to see the agent's messages",
        )
    try:
        return json.loads(line)
    except ValueError as exc:
        raise TargetError(f"the devloop agent's {what} mode answered garbage: {line[:200]!r}") from exc


# persistent receivers (`receive ROOT --serve`), one per target object, for the watch loop
_receivers: "weakref.WeakKeyDictionary[Target, tuple[str, Channel]]" = weakref.WeakKeyDictionary()


async def close_receiver(target: "Target") -> None:
    """Stop the persistent receiver `sync_via_agent(..., keep_open=True)` left running."""
    held = _receivers.pop(target, None)
    if held is not None:
        channel = held[1]
        try:
            await channel.close_stdin()
            await asyncio.wait_for(channel.wait(), 5)
        except (OSError, asyncio.TimeoutError):
            await channel.kill()


def _refused(target: "Target", answer: object) -> TargetError:
    message = answer.get("error") if isinstance(answer, dict) else repr(answer)
    return TargetError(f"sync to {target.kind} target refused: {message}",
                       hint="fix or exclude the path named (.devloopignore or [sync].exclude)")


async def sync_via_agent(target: "Target", plan: "SyncPlan", source_root: str,
                         on_progress: ProgressFn | None = None, *, full: bool | None = None,
                         keep_open: bool = False) -> SyncStats:
    """Stream `plan` into the target's agent `receive` mode; the receiver's counts.

    `full` (default: the first sync through this target object, when it sends most of the tree)
    sends the complete manifest so the remote replaces its record; otherwise only the changed
    entries are sent and the remote appends them to its record.
    `keep_open` keeps one receiver process running for the next syncs (no process start per
    save: what the watch loop wants); `close_receiver(target)` ends it."""
    started = time.perf_counter()
    workdir = _workdir(target)
    if full is None:
        # replace the remote record on the first sync that sends most of the tree anyway;
        # otherwise append to it (a record of a path no longer synced is harmless: never reported)
        full = _full_sent.get(target) != workdir and 2 * len(plan.copies) >= len(plan.new_manifest)
    digests: dict[str, str] = {}
    if keep_open:
        answer = await _sync_kept(target, workdir, plan, str(source_root), full, on_progress, digests)
    else:
        channel = await target.spawn(target.agent_argv("receive", workdir))
        sender = _Sender(channel, len(plan.copies), plan.bytes_total, on_progress)
        try:
            digests = await _stream_plan(sender, plan, str(source_root), full)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the receiver stopped early: its answer says why
        except BaseException:
            await _abort(channel)
            raise
        try:
            await channel.close_stdin()
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = await _read_answer(channel, "receive")
    if not isinstance(answer, dict) or not answer.get("ok"):
        raise _refused(target, answer)
    _adopt_digests(plan, digests)
    try:
        _full_sent[target] = workdir
    except TypeError:
        pass
    return SyncStats(files=int(answer.get("files", 0)), bytes=int(answer.get("bytes", 0)),
                     deleted=int(answer.get("deleted", 0)), ms=(time.perf_counter() - started) * 1000,
                     warnings=tuple(str(w) for w in answer.get("warnings") or ()))


async def _kept_channel(target: "Target", workdir: str) -> "Channel":
    held = _receivers.get(target)
    if held is not None and held[0] == workdir:
        return held[1]
    if held is not None:
        await close_receiver(target)
    channel = await target.spawn(target.agent_argv("receive", workdir, "--serve"))
    _receivers[target] = (workdir, channel)
    return channel


async def _round_trip(target: "Target", channel: "Channel", send: Any) -> bytes:
    """`await send()` to the kept receiver, then its one-line answer; b"" when it stopped
    reading. Any other failure kills it (the next request starts a new one) and is raised."""
    try:
        await send()
        return await channel.readline()
    except (BrokenPipeError, ConnectionResetError):
        return b""
    except BaseException:
        _receivers.pop(target, None)
        await _abort(channel)
        raise


async def _abort(channel: "Channel") -> None:
    """Stop a receiver mid-sync (cancelled, or the sender failed): its input ends first, so it
    removes the temp file it was writing and exits; a SIGKILL would leave that file in the
    workdir. Killed all the same if it has not exited within ABORT_WAIT_S."""
    async def end_and_wait() -> None:
        await channel.close_stdin()
        await channel.wait()

    try:
        await asyncio.wait_for(end_and_wait(), ABORT_WAIT_S)
    except asyncio.CancelledError:
        await channel.kill()
        raise
    except Exception:  # noqa: BLE001 - a broken channel or a slow exit: the kill below ends it
        pass
    await channel.kill()


async def _sync_kept(target: "Target", workdir: str, plan: "SyncPlan", root: str, full: bool,
                     on_progress: ProgressFn | None, digests: dict[str, str]) -> object:
    channel = await _kept_channel(target, workdir)
    sender = _Sender(channel, len(plan.copies), plan.bytes_total, on_progress, framed=True)

    async def send() -> None:
        digests.update(await _stream_plan(sender, plan, root, full))
        await channel.send(b"\0\0\0\0")

    line = await _round_trip(target, channel, send)
    if not line:
        _receivers.pop(target, None)
        await channel.kill()
        tail = channel.stderr_tail().strip().splitlines()
        raise TargetError("the devloop agent's receiver stopped without answering"
                          + (f": {tail[-1]}" if tail else ""),
                          hint="the target may have restarted; the next sync starts a new receiver")
    try:
        return json.loads(line)
    except ValueError as exc:
        raise TargetError(f"the devloop agent's receive mode answered garbage: {line[:200]!r}") from exc


async def _ask_kept_manifest(target: "Target") -> object:
    """The manifest line from the kept receiver (started if needed; a dead one is replaced once)."""
    workdir = _workdir(target)
    for attempt in range(2):
        channel = await _kept_channel(target, workdir)
        line = await _round_trip(target, channel, lambda: channel.send(MANIFEST_REQUEST))
        if line:
            try:
                return json.loads(line)
            except ValueError as exc:
                raise TargetError(f"the devloop agent's manifest mode answered garbage: {line[:200]!r}") from exc
        _receivers.pop(target, None)
        await channel.kill()
        if attempt:
            tail = channel.stderr_tail().strip().splitlines()
            raise TargetError("the devloop agent's receiver stopped without answering"
                              + (f": {tail[-1]}" if tail else ""),
                              hint="run with -v to see the agent's messages")
    raise AssertionError("unreachable")  # pragma: no cover


async def fetch_remote_manifest(target: "Target", *, keep_open: bool = False) -> Manifest | None:
    """What the remote holds from earlier syncs (checked against its disk), or None.
    Asking marks a (re)connect: the next sync sends the complete manifest again.
    `keep_open` asks the persistent receiver (started here) that the next
    `sync_via_agent(..., keep_open=True)` then uses: one process start for both."""
    _full_sent.pop(target, None)
    if keep_open:
        answer = await _ask_kept_manifest(target)
    else:
        channel = await target.spawn(target.agent_argv("manifest", _workdir(target)))
        await channel.close_stdin()
        answer = await _read_answer(channel, "manifest")
    if answer is None:
        return None
    if not isinstance(answer, dict) or "files" not in answer:
        raise TargetError(f"the devloop agent's manifest mode answered an unknown shape: {str(answer)[:200]}")
    try:
        return manifest_from_json(answer["files"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise TargetError(f"the devloop agent's manifest has entries of an unknown shape: {exc}") from exc
