#!/usr/bin/env bash
# Stop what services-up.sh started (Kubernetes first: its pods run on the Docker engine).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
STATE="${DEVLOOP_TEST_STATE:-/tmp/devloop-test}"
[ -f "$here/kube-down.sh" ] && bash "$here/kube-down.sh" "$STATE/kube" >&2
bash "$here/sshd-down.sh" "$STATE/sshd" >&2
bash "$here/docker-down.sh" "$STATE/docker" >&2
exit 0
