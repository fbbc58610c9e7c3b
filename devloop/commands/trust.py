"""`devloop trust PROFILE`: show an SSH host's key fingerprint and, once confirmed, add it to the
profile's known_hosts. The one way an unknown host becomes known: devloop never adds keys by
itself, and a changed key is refused here too (it must be removed by hand first)."""

from __future__ import annotations

import argparse
import sys

NAME = "trust"
ORDER = 60
HELP = "check an SSH profile's host key fingerprint and add it to known_hosts"
DESCRIPTION = (
    "Connect to the host of an SSH profile (key exchange only: no login), print its host key "
    "fingerprint, and after you confirm it (or with --yes) append it to the profile's "
    "known_hosts file (known_hosts: in the profile, else ~/.ssh/known_hosts). Jump hosts "
    "(ProxyJump) that are not known yet are offered first. A key that differs from the one on "
    "file is refused: remove the old one with ssh-keygen -R first if the change is legitimate."
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="PROFILE",
                        help="the SSH profile whose host to trust (same as --profile)")
    parser.add_argument("-p", "--profile", metavar="P",
                        help="the SSH profile (default: [project].profile)")
    parser.add_argument("-y", "--yes", action="store_true",
                        help="add the key without asking (only after checking the fingerprint "
                             "another way: the host's owner, its console, a config management record)")


def _confirm(prompt: str) -> bool:
    if not sys.stdin.isatty():
        print("devloop: stdin is not a terminal: pass --yes to add the key once you have checked "
              "the fingerprint", file=sys.stderr)
        return False
    try:
        return input(prompt).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from devloop.core.config import load_config
    from devloop.core.ssh_config import append_known_host, fingerprint
    from devloop.core.ssh_connect import UnknownHostKey, check_host_key, fetch_host_key
    from devloop.core.targets.base import TargetError
    from devloop.core.targets.ssh import SshTarget

    if args.name and args.profile and args.name != args.profile:
        print(f"devloop: two profiles named ({args.name!r} and --profile {args.profile!r}) -- fix: "
              "name one", file=sys.stderr)
        return 2
    config = load_config(Path.cwd())
    profile = config.profile(args.name or args.profile)
    if profile.kind != "ssh":
        raise TargetError(f"profile {profile.name!r} is kind {profile.kind!r}: only SSH profiles have host keys",
                          hint="name an SSH profile: devloop trust PROFILE")
    ep = SshTarget(profile, config).endpoint()

    for _ in range(1 + len(ep.proxy_jump)):
        try:
            key, known = fetch_host_key(ep, profile.name)
        except UnknownHostKey as exc:  # a jump host on the way is unknown: offer it first
            if not _offer(exc.name, exc.key, exc.file, args.yes, "jump host ", fingerprint, append_known_host):
                return 1
            continue
        break
    else:  # pragma: no cover - every hop was offered and the loop still did not reach the host
        raise TargetError(f"could not reach {ep.alias} after trusting its jump hosts")

    name = ep.known_hosts_name
    for k in known:
        if k.keytype == key.get_name() and k.key == key:
            print(f"{name} is already trusted: {key.get_name()} {fingerprint(key)} ({k.file}:{k.line})")
            return 0
    if known:
        check_host_key(ep, key, known, profile.name)  # raises the loud HOST KEY CHANGED error
    return 0 if _offer(name, key, ep.known_hosts_files[0], args.yes, "", fingerprint, append_known_host) else 1


def _offer(name: str, key, file: str, yes: bool, what: str, fingerprint, append_known_host) -> bool:
    print(f"The {what}{name} offers host key {key.get_name()} {fingerprint(key)}")
    print("Compare it with the host's own: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub (run there).")
    if not yes and not _confirm(f"Add it to {file}? [y/N] "):
        print(f"not trusted: nothing was written to {file}")
        return False
    append_known_host(file, name, key)
    print(f"added {name} to {file}")
    return True
