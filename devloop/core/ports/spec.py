"""What to forward: `[ports] forward = ["6006", "18888:8888"]`, a profile's `forward:`, and
`--forward SPEC` on the command line, merged into one list keyed by the local port.

A spec is `PORT` (the same number on both sides), `LOCAL:REMOTE`, or `LOCAL:HOST:REMOTE` (a
host as the target sees it; default `localhost`, so a service bound to 127.0.0.1 or ::1 in the
container is reached).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

DEFAULT_HOST = "localhost"
DEFAULT_BIND = "127.0.0.1"
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")


@dataclass(frozen=True)
class ForwardSpec:
    local: int
    remote: int
    host: str = DEFAULT_HOST

    @property
    def text(self) -> str:
        """The spec as a user writes it (what `--forward` takes)."""
        if self.host != DEFAULT_HOST:
            return f"{self.local}:{self.host}:{self.remote}"
        return str(self.local) if self.local == self.remote else f"{self.local}:{self.remote}"

    @property
    def remote_label(self) -> str:
        """`target:6006` (or `target:db:5432` for another host the target reaches)."""
        return f"target:{self.remote}" if self.host == DEFAULT_HOST else f"target:{self.host}:{self.remote}"


def _port(text: str, what: str, spec: str) -> int:
    if not text.isdigit():
        raise ValueError(f"forward {spec!r}: the {what} port {text!r} is not a number "
                         "(write PORT, LOCAL:REMOTE or LOCAL:HOST:REMOTE, e.g. 18888:8888)")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"forward {spec!r}: the {what} port {port} is not in 1-65535")
    return port


def parse_spec(value: object) -> ForwardSpec:
    """`6006` | `"6006"` | `"18888:8888"` | `"18888:HOST:8888"` -> ForwardSpec; ValueError says why."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"forward {value!r}: write a port number or \"LOCAL:REMOTE\" "
                         "(e.g. \"18888:8888\")")
    text = str(value).strip()
    parts = text.split(":")
    if len(parts) == 1:
        port = _port(parts[0], "", text)
        return ForwardSpec(port, port)
    if len(parts) == 2:
        return ForwardSpec(_port(parts[0], "local", text), _port(parts[1], "remote", text))
    if len(parts) == 3 and _HOST.match(parts[1]):
        return ForwardSpec(_port(parts[0], "local", text), _port(parts[2], "remote", text),
                           parts[1].strip("[]"))
    raise ValueError(f"forward {text!r}: write PORT, LOCAL:REMOTE or LOCAL:HOST:REMOTE "
                     "(e.g. 6006 or 18888:8888)")


def merge(*layers: Iterable[object]) -> tuple[ForwardSpec, ...]:
    """The forwards in effect: each later layer (project, profile, command line) adds to the
    earlier ones, and an entry for a local port already named replaces that entry."""
    out: dict[int, ForwardSpec] = {}
    for layer in layers:
        for value in layer or ():
            spec = value if isinstance(value, ForwardSpec) else parse_spec(value)
            out[spec.local] = spec
    return tuple(out.values())
