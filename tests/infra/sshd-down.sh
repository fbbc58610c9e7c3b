#!/usr/bin/env bash
# Stop the test sshd started by sshd-up.sh and remove its state folder.
# Usage: bash tests/infra/sshd-down.sh [STATE_DIR]   (default /tmp/devloop-test/sshd)
set -uo pipefail
D="${1:-${DEVLOOP_TEST_SSHD_DIR:-/tmp/devloop-test/sshd}}"
# A daemon started with nohup is reparented to PID 1, which reaps late: a zombie is not alive.
alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1; [ -n "$s" ] && [ "${s#Z}" = "$s" ]; }
P="$(cat "$D/sshd.nohup.pid" 2>/dev/null || true)"
if [ -n "$P" ]; then
  kill "$P" 2>/dev/null
  for _ in $(seq 1 50); do alive "$P" || break; sleep 0.1; done
fi
case "$D" in
  /tmp/*) rm -rf "$D" ;;
  *) rm -f "$D/sshd.nohup.pid" "$D/sshd.pid" ;;  # outside /tmp: keep the folder, only forget the server
esac
