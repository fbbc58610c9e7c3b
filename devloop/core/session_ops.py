"""Looking at and ending sessions without attaching to them (`devloop sessions`, `devloop stop`).

Both go through the target's ordinary exec channel and the agent: a *peek* hello answers the
session kernel's state without taking over the front end that is attached, and `session-stop`
ends the kernel and everything it started. Stopping then stops the target too, so its
container or pod is removed: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from devloop.core import session_record
from devloop.core.session_record import SessionRecord
from devloop.core.targets import create_target
from devloop.core.targets.base import Target, TargetError

PEEK_TIMEOUT_S = 20.0


async def _run_agent(target: Target, workdir: str, mode: str, stdin: bytes = b"") -> list[dict]:
    channel = await target.spawn(target.agent_argv(mode), cwd=workdir)
    if stdin:
        await channel.send(stdin)
    lines: list[dict] = []
    deadline = time.monotonic() + PEEK_TIMEOUT_S
    final = ("status", "refused", "session_stop", "ready")  # `ready`: an older kernel took it as an attach
    try:
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(channel.readline(), max(0.1, deadline - time.monotonic()))
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            lines.append(msg)
            if msg.get("type") in final or msg.get("state") in ("no_session", "failed"):
                break
    finally:
        await channel.kill()
    return lines


async def peek(target: Target, record: SessionRecord, workdir: str) -> dict[str, Any]:
    """The session's state: {live, status | None, exit | None}; never takes over a front end."""
    hello = json.dumps({"op": "hello", "secret": record.secret, "since": None, "peek": True}) + "\n"
    answers = await _run_agent(target, workdir, "attach", hello.encode())
    relay = next((a for a in answers if a.get("type") == "relay"), {})
    status = next((a for a in answers if a.get("type") == "status"), None)
    refused = next((a for a in answers if a.get("type") == "refused"), None)
    return {"live": relay.get("state") == "attached", "status": status, "exit": relay.get("exit"),
            "refused": refused.get("reason") if refused else None}


async def stop_on_target(target: Target, workdir: str) -> bool:
    """End the session kernel in `workdir` (and what it started); True if one was running."""
    answers = await _run_agent(target, workdir, "session-stop")
    return any(a.get("stopped") for a in answers)


def describe(record: SessionRecord, state: dict[str, Any] | None) -> dict[str, Any]:
    """One row of `devloop sessions` (also its --json object)."""
    status = (state or {}).get("status") or {}
    running = status.get("running") or None
    tag = (running or {}).get("tag") or {}
    results = (status.get("results") or {}).get(record.file, {}) if status else {}
    gpu = status.get("gpu") or {}
    held = sum(g["mem_used"] for g in (gpu.get("gpus") or ()) if isinstance(g.get("mem_used"), int))
    idle_s = status.get("idle_s")
    idle_stop = status.get("idle_stop_s")
    stops_in = None
    if idle_stop and idle_s is not None and not running and not status.get("attached"):
        stops_in = max(0.0, float(idle_stop) - float(idle_s))
    return {
        "profile": record.profile, "kind": record.kind, "target": record.target, "session": record.session,
        "file": record.file, "started": record.started,
        "live": bool((state or {}).get("live")) if state is not None else None,
        "attached": status.get("attached"), "idle_s": idle_s,
        "running_cell": tag.get("cell") if running else None,
        "cells": {k: ("ok" if v.get("ok") else "failed") for k, v in sorted(results.items(), key=lambda kv: int(kv[0]))},
        "gpu_memory_bytes": held or None, "idle_stop_s": idle_stop, "stops_in_s": stops_in,
        "ended": (state or {}).get("exit"), "error": (state or {}).get("error"),
    }


async def inspect(config: Any, record: SessionRecord) -> dict[str, Any]:
    """Reach the record's target (adopting its environment, creating nothing new for a gone
    session where the kind allows) and peek at the session."""
    profile = config.profile(record.profile)
    target = create_target(profile, config)
    target.adopt_existing = True
    try:
        info = await target.start()
        state = await peek(target, record, info.workdir)
    except (TargetError, OSError, asyncio.TimeoutError) as exc:
        return describe(record, {"live": False, "error": str(exc).splitlines()[0]})
    finally:
        try:
            await target.detach()
        except Exception:  # noqa: BLE001 - looking must not fail on leaving
            pass
    return describe(record, state)


async def stop(config: Any, profile_name: str) -> tuple[bool, str]:
    """End the profile's session: kernel, then the target (container / pod removed). (ok, text)."""
    profile = config.profile(profile_name)
    target = create_target(profile, config)
    target.adopt_existing = True
    t0 = time.monotonic()
    try:
        info = await target.start()
        was_running = await stop_on_target(target, info.workdir)
    except (TargetError, OSError, asyncio.TimeoutError) as exc:
        return False, f"{profile_name}: could not reach the target: {str(exc).splitlines()[0]}"
    finally:
        try:
            await target.stop()
        finally:
            session_record.remove(config.root, profile_name)
    took = time.monotonic() - t0
    what = "session stopped" if was_running else "no session kernel was running"
    where = "this machine" if info.kind == "local" else f"target {info.id}"  # not "target vm"
    return True, f"{profile_name}: {what}; {where} cleaned up ({took:.1f} s)"
