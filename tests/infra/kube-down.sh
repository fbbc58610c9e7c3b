#!/usr/bin/env bash
# Stop the cluster started by kube-up.sh (by its PIDs, kubelet first) and remove its state folder.
# Pods it ran are removed from the Docker engine too (they would hold memory until docker-down).
# Usage: tests/infra/kube-down.sh [STATE_DIR]     (default /tmp/devloop-test/kube)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/alive.sh"
D="${1:-/tmp/devloop-test/kube}"
[ -d "$D" ] || exit 0
D="$(cd "$D" && pwd)"
for p in kubelet scheduler apiserver etcd; do
  P="$(cat "$D/$p.pid" 2>/dev/null || true)"
  if [ -n "$P" ] && alive "$P"; then
    kill "$P" 2>/dev/null
    for _ in $(seq 1 100); do alive "$P" || break; sleep 0.1; done
    alive "$P" && kill -9 "$P" 2>/dev/null
  fi
done
# the kubelet's pod containers (named k8s_*) on the test engine
SOCK="$(dirname "$D")/docker/docker.sock"
if [ -S "$SOCK" ]; then
  ids="$(curl -fsS --unix-socket "$SOCK" 'http://d/containers/json?all=1&filters=%7B%22name%22%3A%5B%22k8s_%22%5D%7D' 2>/dev/null \
         | python3 -c 'import json,sys; print(" ".join(c["Id"] for c in json.load(sys.stdin)))' 2>/dev/null || true)"
  for id in $ids; do curl -fsS -X DELETE --unix-socket "$SOCK" "http://d/containers/$id?force=1" >/dev/null 2>&1 || true; done
fi
# the kubelet bind-mounts its --root-dir onto itself (rshared); undo that and any pod volume mounts
grep -o " $D/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
# put back the host sysctls if the kubelet rewrote them and kube-up did not get to it
if [ -f "$D/sysctl.saved" ]; then
  paste -d= <(printf 'vm.overcommit_memory\nkernel.panic\nkernel.panic_on_oops\n') "$D/sysctl.saved" \
    | xargs -n1 sysctl -q -w 2>/dev/null || true
fi
rm -rf "$D"
exit 0
