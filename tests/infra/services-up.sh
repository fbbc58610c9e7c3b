#!/usr/bin/env bash
# Start every service the test suite needs and print the variables that point the tests at them.
# Usage: eval "$(bash tests/infra/services-up.sh)"      (tests/run.sh does this)
# Each service script is idempotent: a running service is reused. Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
STATE="${DEVLOOP_TEST_STATE:-/tmp/devloop-test}"
mkdir -p "$STATE"

echo "services: Docker engine..." >&2
docker_env="$(bash "$here/docker-up.sh" "$STATE/docker" | tail -n 1)"
eval "$docker_env"
echo "export DEVLOOP_TEST_DOCKER_HOST=$DOCKER_HOST"
DOCKER_HOST="$DOCKER_HOST" bash "$here/build-test-image.sh" >&2

echo "services: OpenSSH server..." >&2
bash "$here/sshd-up.sh" "$STATE/sshd" >&2
echo "export DEVLOOP_TEST_SSHD_DIR=$STATE/sshd"

if [ -f "$here/kube-up.sh" ]; then
  echo "services: Kubernetes (etcd, kube-apiserver, kube-scheduler, kubelet)..." >&2
  kube_env="$(DOCKER_HOST="$DOCKER_HOST" bash "$here/kube-up.sh" "$STATE/kube" | tail -n 1)"
  eval "$kube_env"
  echo "export DEVLOOP_TEST_KUBECONFIG=$KUBECONFIG"
fi
