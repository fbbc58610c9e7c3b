#!/usr/bin/env bash
# Stop the engine started by docker-up.sh (by its PID) and remove its state folder.
# Usage: tests/infra/docker-down.sh [STATE_DIR]    (default /tmp/devloop-test/docker)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/alive.sh"
S="${1:-/tmp/devloop-test/docker}"
SOCK="$S/docker.sock"
P="$(cat "$S/dockerd.pid" 2>/dev/null || cat "$S/dockerd.nohup.pid" 2>/dev/null || true)"
if [ -n "$P" ] && alive "$P"; then
  # remove containers first: on shutdown dockerd waits 10 s per running container
  ids="$(curl -fsS --unix-socket "$SOCK" 'http://d/containers/json?all=1' 2>/dev/null \
         | python3 -c 'import json,sys; print(" ".join(c["Id"] for c in json.load(sys.stdin)))' 2>/dev/null || true)"
  for id in $ids; do curl -fsS -X DELETE --unix-socket "$SOCK" "http://d/containers/$id?force=1" >/dev/null 2>&1 || true; done
  kill "$P"
  for _ in $(seq 1 150); do alive "$P" || break; sleep 0.1; done
fi
# overlay mounts and netns files may linger when the daemon was killed hard
grep -o " $S/[^ ]*" /proc/mounts | awk '{print $1}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
rm -rf "$S"
