#!/usr/bin/env bash
# Start (or reuse) a one-node Kubernetes 1.20 cluster on loopback for devloop's tests:
# Debian's etcd-server, kube-apiserver (token auth, RBAC), kube-scheduler, and a kubelet that runs
# pods on the private test Docker engine (tests/infra/docker-up.sh). No registry, no pod network,
# no controller-manager (deleted namespaces stay Terminating: tests use the default namespace).
# Usage: tests/infra/kube-up.sh [STATE_DIR]      (default /tmp/devloop-test/kube)
# Last line printed: export KUBECONFIG=STATE_DIR/kubeconfig
# The kubeconfig has two contexts: `devloop` (admin, the default) and `devloop-noaccess`
# (a user without any RBAC rights, for the "forbidden" tests). Progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/alive.sh"
D="${1:-/tmp/devloop-test/kube}"
ETCD_PORT="${DEVLOOP_KUBE_ETCD_PORT:-23790}"
API_PORT="${DEVLOOP_KUBE_API_PORT:-26443}"
KUBELET_PORT="${DEVLOOP_KUBE_KUBELET_PORT:-10250}"
PAUSE_IMAGE=devloop/pause:1
TEST_IMAGE=devloop-test:hostpy
mkdir -p "$D"; chmod 700 "$D"; D="$(cd "$D" && pwd)"
exec 9>"$D/.up.lock"          # two test runs starting at once: the second waits, then reuses
flock 9
say(){ echo "kube-up: $*" >&2; }

token(){ cut -d, -f1 "$D/tokens.csv" | head -n 1; }
api(){  # api METHOD PATH [curl args...]: the API as the admin user
  # -A: kube-apiserver pretty-prints JSON for user agents starting with "curl", and that code path
  # (json-iterator + reflect2 1.0.1 vendored in 1.20, built with Go >= 1.18) crashes the server
  local m="$1" p="$2"; shift 2
  curl -fsS --max-time 10 -A devloop-kube-up --cacert "$D/certs/apiserver.crt" -H "Authorization: Bearer $(token)" \
    -X "$m" "https://127.0.0.1:$API_PORT$p" "$@"
}
node_ready(){
  api GET /api/v1/nodes/localhost 2>/dev/null | python3 -c '
import json, sys
node = json.load(sys.stdin)
ok = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
sys.exit(0 if ok else 1)' 2>/dev/null
}
running(){
  for p in etcd apiserver scheduler kubelet; do
    local pid; pid="$(cat "$D/$p.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && alive "$pid" || return 1
  done
  # a cluster started from an older build recipe is replaced (stale cluster below)
  local want; want="$(DEVLOOP_KUBE_WHERE=1 bash "$here/build-kube.sh")/kube-apiserver"
  [ "$(readlink "/proc/$(cat "$D/apiserver.pid")/exe" 2>/dev/null)" = "$want" ] || return 1
  [ -f "$D/kubeconfig" ] && node_ready
}

if running; then
  say "reusing the cluster in $D"
  echo "export KUBECONFIG=$D/kubeconfig"; exit 0
fi
if [ -f "$D/apiserver.pid" ] || [ -d "$D/etcd" ]; then
  say "a stale cluster in $D: stopping it first"
  flock -u 9
  bash "$here/kube-down.sh" "$D" >&2
  mkdir -p "$D"; chmod 700 "$D"
  flock 9
fi

KUBE_BIN="$(bash "$here/build-kube.sh" | tail -n 1)"

# Debian packages: etcd-server (etcd); a busy apt/dpkg lock (a background job) is waited for
if ! command -v etcd >/dev/null; then
  say "installing etcd-server (apt)..."
  export DEBIAN_FRONTEND=noninteractive
  for try in 1 2 3; do
    apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 \
      && apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends etcd-server >&2 \
      && break
    [ "$try" = 3 ] && { say "could not install etcd-server"; exit 1; }
    sleep 2
  done
fi
command -v openssl >/dev/null || { say "openssl is needed"; exit 1; }

# the test Docker engine and images: the kubelet runs pods there
docker_env="$(bash "$here/docker-up.sh" "$(dirname "$D")/docker" | tail -n 1)"
eval "$docker_env"
SOCK="${DOCKER_HOST#unix://}"
bash "$here/build-test-image.sh" "$TEST_IMAGE" >&2
if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
  # the pod sandbox image: the test image re-imported with a process that just waits (no registry here)
  cid="$(docker create "$TEST_IMAGE" true)"
  docker export "$cid" | docker import -c 'ENTRYPOINT ["/usr/bin/sleep","infinity"]' - "$PAUSE_IMAGE" >/dev/null
  docker rm "$cid" >/dev/null
  say "built $PAUSE_IMAGE"
fi

say "starting etcd..."
mkdir -p "$D/certs"
nohup etcd --name devloop --data-dir "$D/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" \
  --initial-cluster "devloop=http://127.0.0.1:$((ETCD_PORT+1))" >"$D/etcd.log" 2>&1 9>&- &
echo $! >"$D/etcd.pid"
[ -f "$D/sa.key" ] || openssl genrsa -out "$D/sa.key" 2048 2>/dev/null
rnd(){ head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ADMIN_TOKEN="$(rnd)"; NOACCESS_TOKEN="$(rnd)"
{ echo "$ADMIN_TOKEN,admin,admin,system:masters"
  echo "$NOACCESS_TOKEN,devloop-noaccess,devloop-noaccess"; } >"$D/tokens.csv"
chmod 600 "$D/tokens.csv"
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done

say "starting kube-apiserver..."
nohup "$KUBE_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
  --cert-dir "$D/certs" --token-auth-file "$D/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$D/sa.key" \
  --service-account-signing-key-file "$D/sa.key" --service-cluster-ip-range 10.0.0.0/24 \
  --endpoint-reconciler-type none --disable-admission-plugins ServiceAccount \
  --kubelet-preferred-address-types Hostname --kubelet-port "$KUBELET_PORT" \
  --profiling=false --v=1 >"$D/apiserver.log" 2>&1 9>&- &
echo $! >"$D/apiserver.pid"
for _ in $(seq 1 600); do
  [ -f "$D/certs/apiserver.crt" ] && api GET /readyz >/dev/null 2>&1 && break
  alive "$(cat "$D/apiserver.pid")" || { tail -20 "$D/apiserver.log" >&2; say "kube-apiserver died"; exit 1; }
  sleep 0.1
done
api GET /readyz >/dev/null || { say "kube-apiserver not ready in 60 s (see $D/apiserver.log)"; exit 1; }

cat >"$D/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: devloop
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $D/certs/apiserver.crt
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
- name: devloop-noaccess
  user:
    token: $NOACCESS_TOKEN
contexts:
- name: devloop
  context: {cluster: devloop, user: admin, namespace: default}
- name: devloop-noaccess
  context: {cluster: devloop, user: devloop-noaccess, namespace: default}
current-context: devloop
KC
chmod 600 "$D/kubeconfig"

say "starting kube-scheduler..."
nohup "$KUBE_BIN/kube-scheduler" --kubeconfig "$D/kubeconfig" --leader-elect=false \
  --bind-address 127.0.0.1 --port 0 --secure-port 0 --v=1 >"$D/scheduler.log" 2>&1 9>&- &
echo $! >"$D/scheduler.pid"

say "starting the kubelet (node localhost, pods on $SOCK)..."
mkdir -p "$D/kubelet"
SYSCTLS="vm.overcommit_memory kernel.panic kernel.panic_on_oops"
[ -f "$D/sysctl.saved" ] || sysctl -n $SYSCTLS >"$D/sysctl.saved"   # the kubelet rewrites these at start
AWS_EC2_METADATA_DISABLED=true nohup "$KUBE_BIN/kubelet" --kubeconfig "$D/kubeconfig" \
  --container-runtime docker --docker-endpoint "unix://$SOCK" --pod-infra-container-image "$PAUSE_IMAGE" \
  --hostname-override localhost --address 127.0.0.1 --port "$KUBELET_PORT" --read-only-port 0 \
  --healthz-bind-address 127.0.0.1 --healthz-port 0 \
  --root-dir "$D/kubelet" --cert-dir "$D/kubelet/pki" --cgroup-driver cgroupfs --cgroups-per-qos=false \
  --enforce-node-allocatable= --fail-swap-on=false --make-iptables-util-chains=false \
  --anonymous-auth=true --authorization-mode AlwaysAllow \
  --eviction-hard 'memory.available<1Mi,nodefs.available<1%,imagefs.available<1%' --image-gc-high-threshold 100 \
  --register-node=true --v=1 >"$D/kubelet.log" 2>&1 9>&- &
echo $! >"$D/kubelet.pid"
for _ in $(seq 1 600); do
  node_ready && break
  alive "$(cat "$D/kubelet.pid")" || { tail -30 "$D/kubelet.log" >&2; say "the kubelet died"; exit 1; }
  alive "$(cat "$D/scheduler.pid")" || { tail -20 "$D/scheduler.log" >&2; say "kube-scheduler died"; exit 1; }
  sleep 0.2
done
node_ready || { say "node not Ready in 120 s (see $D/kubelet.log)"; exit 1; }
# put back the host sysctls the kubelet rewrote (vm.overcommit_memory=1, kernel.panic=10, ...)
paste -d= <(tr " " "\n" <<<"$SYSCTLS") "$D/sysctl.saved" | xargs -n1 sysctl -q -w || say "could not restore sysctls"

# no controller-manager: nothing lifts the not-ready taint the kubelet registered with
api GET /api/v1/nodes/localhost | python3 -c '
import json, sys
node = json.load(sys.stdin)
taints = [t for t in node["spec"].get("taints") or [] if t["key"] != "node.kubernetes.io/not-ready"]
print(json.dumps({"spec": {"taints": taints or None}}))' >"$D/untaint.json"
api PATCH /api/v1/nodes/localhost -H "Content-Type: application/merge-patch+json" \
  --data-binary @"$D/untaint.json" >/dev/null
say "cluster ready: node localhost, API https://127.0.0.1:$API_PORT"
echo "export KUBECONFIG=$D/kubeconfig"
