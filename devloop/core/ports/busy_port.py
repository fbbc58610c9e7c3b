"""Who holds a local TCP port, and a free one to suggest instead (Linux /proc; elsewhere the
error just says the port is in use).

/proc/net/tcp and tcp6 list listening sockets (state 0A) with their inode; /proc/PID/fd links
name `socket:[INODE]`. Another user's process cannot be looked into: then the port is named
without its owner.
"""

from __future__ import annotations

import os
import socket

LISTEN = "0A"


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on `port` (any address, IPv4 and IPv6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh, None)
                for line in fh:
                    cols = line.split()
                    if len(cols) < 10 or cols[3] != LISTEN:
                        continue
                    if int(cols[1].rsplit(":", 1)[1], 16) == port:
                        found.add(cols[9])
        except (OSError, ValueError, IndexError):
            continue
    return found


def port_owner(port: int) -> tuple[int, str] | None:
    """(pid, command) of a process listening on `port`, when this user may see it."""
    inodes = {f"socket:[{i}]" for i in listening_inodes(port) if i != "0"}
    if not inodes:
        return None
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in inodes:
                    return int(pid), _command(pid)
            except OSError:
                continue
    return None


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            words = [w.decode("utf-8", "replace") for w in fh.read().split(b"\0") if w]
    except OSError:
        words = []
    if words:
        text = " ".join([os.path.basename(words[0])] + words[1:])
        return text if len(text) <= 60 else text[:57] + "..."
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


def free_port_near(port: int, bind: str, taken: set[int] = frozenset()) -> int | None:
    """The first port after `port` (up to 100 on) that `bind` can listen on now."""
    for candidate in range(port + 1, min(port + 101, 65536)):
        if candidate in taken:
            continue
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((bind, candidate))
                return candidate
            except OSError:
                continue
    return None


def busy_message(port: int, bind: str, remote_spec: str, taken: set[int] = frozenset()) -> tuple[str, str]:
    """(message, fix) for a local port that cannot be bound because it is in use."""
    owner = port_owner(port)
    who = f" by pid {owner[0]} ({owner[1]})" if owner else ""
    message = f"cannot forward {remote_spec}: local port {port} on {bind} is in use{who}"
    free = free_port_near(port, bind, taken)
    if free is not None:
        fix = (f"forward another local port, e.g. --forward {free}:{remote_spec.rsplit(':', 1)[-1]} "
               f"({free} is free)" + (f", or stop pid {owner[0]}" if owner else ""))
    else:
        fix = "forward another local port (LOCAL:REMOTE)" + (f", or stop pid {owner[0]}" if owner else "")
    return message, fix
