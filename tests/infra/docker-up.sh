#!/usr/bin/env bash
# Start (or reuse) a private, network-isolated Docker engine for devloop's tests.
# Usage: tests/infra/docker-up.sh [STATE_DIR]    (default /tmp/devloop-test/docker)
# Last line printed: export DOCKER_HOST=unix://STATE_DIR/docker.sock
# Installs Debian's docker.io when dockerd is missing (waits for a busy apt/dpkg lock).
# The engine gets no bridge and never touches the host firewall: only "none"/"host" networks.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/alive.sh"
S="${1:-/tmp/devloop-test/docker}"
SOCK="$S/docker.sock"
mkdir -p "$S"
exec 9>"$S/.up.lock"          # two test runs starting at once: the second waits, then reuses
flock 9

ping_engine(){ [ -S "$SOCK" ] && curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

if ping_engine; then
  echo "export DOCKER_HOST=unix://$SOCK"; exit 0
fi

if ! command -v dockerd >/dev/null; then
  echo "docker-up: installing docker.io (apt)..." >&2
  # another process (a background build) may hold the dpkg lock: wait for it instead of failing
  export DEBIAN_FRONTEND=noninteractive
  wait_apt(){ for _ in $(seq 1 600); do
      fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock >/dev/null 2>&1 || return 0
      sleep 1; done; }
  for try in 1 2 3 4 5; do        # the lock can be taken again between our check and apt's
    wait_apt
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 \
      && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends docker.io >&2 \
      && break
    [ "$try" = 5 ] && { echo "docker-up: could not install docker.io" >&2; exit 1; }
    sleep 2
  done
fi

# a stale daemon from an earlier run (socket dead): stop it before starting a fresh one
old="$(cat "$S/dockerd.pid" 2>/dev/null || true)"
if [ -n "$old" ] && alive "$old"; then
  kill "$old" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$old" || break; sleep 0.1; done
fi
rm -f "$SOCK" "$S/dockerd.pid"

nohup dockerd --data-root "$S/data" --exec-root "$S/exec" --pidfile "$S/dockerd.pid" \
  -H "unix://$SOCK" --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
  --ip-masq=false --storage-driver=overlay2 >"$S/dockerd.log" 2>&1 9>&- &
echo $! >"$S/dockerd.nohup.pid"
for _ in $(seq 1 300); do
  ping_engine && break
  if ! alive "$(cat "$S/dockerd.nohup.pid")"; then
    echo "docker-up: dockerd died; last lines of $S/dockerd.log:" >&2; tail -20 "$S/dockerd.log" >&2; exit 1
  fi
  sleep 0.1
done
ping_engine || { echo "docker-up: dockerd did not answer on $SOCK in 30 s (see $S/dockerd.log)" >&2; exit 1; }
echo "export DOCKER_HOST=unix://$SOCK"
