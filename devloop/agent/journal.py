"""What a session kernel said, kept for a front end that attaches later (stdlib only).

Every event carries a sequence number. The journal keeps the newest events in memory (at most
RING_EVENTS events and RING_BYTES bytes) and, while nobody is attached, also appends them to
`.devloop/session/events.log` (rotated at LOG_BYTES into `events.log.1`; one old file is
kept, so at most 2 x LOG_BYTES on disk). An attach with "since N" replays every kept event
after N once, each marked `"replayed": true`; GPU samples are not logged while detached (one a
second for hours says nothing), only the last GPU_KEPT of them are replayed.
"""

import collections
import os

RING_EVENTS = 4096
RING_BYTES = 8 << 20
LOG_BYTES = 16 << 20
GPU_KEPT = 60
_PREFIX = b'{"seq":'
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def seq_of(line):
    """The sequence number at the head of an encoded event line (None if it has none)."""
    if not line.startswith(_PREFIX):
        return None
    end = line.find(b",", len(_PREFIX))
    try:
        return int(line[len(_PREFIX):end])
    except ValueError:
        return None


def mark_replayed(line):
    return b'{"replayed":true,' + line[1:]


class Journal:
    def __init__(self, log_path=None, ring_events=RING_EVENTS, ring_bytes=RING_BYTES,
                 log_bytes=LOG_BYTES):
        self.log_path = log_path
        self.ring = collections.deque()
        self.ring_bytes = 0
        self.max_events = ring_events
        self.max_bytes = ring_bytes
        self.log_bytes = log_bytes
        self.gpu = collections.deque(maxlen=GPU_KEPT)
        self._log_fd = None
        self._log_size = 0
        self.dropped = 0  # events that fell out of both the ring and the log

    def add(self, seq, kind, line, detached):
        """Keep one encoded event; `detached`: nobody received it, so it must survive."""
        if kind == "gpu":
            self.gpu.append((seq, line))
            return
        self.ring.append((seq, line))
        self.ring_bytes += len(line)
        while len(self.ring) > self.max_events or self.ring_bytes > self.max_bytes:
            _, old = self.ring.popleft()
            self.ring_bytes -= len(old)
        if detached and self.log_path is not None:
            self._append_log(line)

    def _append_log(self, line):
        try:
            if self._log_fd is None:
                self._log_fd = os.open(self.log_path, _FLAGS, 0o600)
                self._log_size = os.fstat(self._log_fd).st_size
            if self._log_size + len(line) > self.log_bytes:
                os.close(self._log_fd)
                self._log_fd = None
                os.replace(self.log_path, self.log_path + ".1")
                self._log_fd = os.open(self.log_path, _FLAGS, 0o600)
                self._log_size = 0
            os.write(self._log_fd, line)
            self._log_size += len(line)
        except OSError:  # a full disk must not stop the kernel: the ring still has the newest
            self.dropped += 1

    def since(self, seq):
        """Encoded lines of every kept event after `seq`, oldest first, marked as replayed."""
        first = self.ring[0][0] if self.ring else None
        items = []
        if first is None or first > seq + 1:
            items.extend(self._from_log(seq, first))
        items.extend((s, line) for s, line in self.ring if s > seq)
        items.extend((s, line) for s, line in self.gpu if s > seq)
        items.sort(key=lambda item: item[0])
        return [mark_replayed(line) for _, line in items]

    def _from_log(self, seq, before):
        found = []
        for path in (self.log_path + ".1", self.log_path) if self.log_path else ():
            try:
                with open(path, "rb") as fh:
                    for line in fh:
                        s = seq_of(line)
                        if s is not None and s > seq and (before is None or s < before):
                            found.append((s, line if line.endswith(b"\n") else line + b"\n"))
            except OSError:
                continue
        return found
