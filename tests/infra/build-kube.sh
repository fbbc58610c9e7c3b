#!/usr/bin/env bash
# kube-apiserver, kube-scheduler and kubelet v1.20.2 for the test cluster, cached by version.
# Usage: tests/infra/build-kube.sh [CACHE_ROOT]   (default /var/cache/devloop)
# Last line printed: the folder holding the three binaries (CACHE_ROOT/kube-v1.20.2-rN, N the recipe revision).
# When the three binaries are cached this returns at once; otherwise (a fresh CI machine) it
# builds them from Debian bookworm's `kubernetes` source package with Debian's Go (~7 min on
# 2 cores, only Debian's archive needed), with kubelet-no-negative-oom.patch applied: the
# dockershim sandbox and Guaranteed pods ask for a negative oom_score_adj, which needs
# CAP_SYS_RESOURCE that test machines and CI containers lack.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VERSION=1.20.2
ROOT="${1:-/var/cache/devloop}"
RECIPE=2  # 2: reflect2 1.0.2 over the vendored copy (custom resources crash the API server without it)
OUT="$ROOT/kube-v$VERSION-r$RECIPE"
BINS="kube-apiserver kube-scheduler kubelet"

if [ -n "${DEVLOOP_KUBE_WHERE:-}" ]; then echo "$OUT"; exit 0; fi  # where the binaries belong (kube-up.sh)

cached(){ for b in $BINS; do [ -x "$OUT/$b" ] || return 1; done; }
if cached; then echo "$OUT"; exit 0; fi

mkdir -p "$ROOT"
exec 9>"$ROOT/.kube-v$VERSION.lock"     # two builds at once: the second waits, then reuses
flock 9
if cached; then echo "$OUT"; exit 0; fi

echo "build-kube: building Kubernetes $VERSION from Debian's source package (about 7 minutes)..." >&2
W="$(mktemp -d /tmp/devloop-kube-build.XXXXXX)"
SRC=/etc/apt/sources.list.d/debian.sources
cleanup(){ [ -f "$W/debian.sources.bak" ] && cp "$W/debian.sources.bak" "$SRC"; rm -rf "$W"; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=300)
# apt ships no deb-src entries: add them beside the deb ones for this download only
if [ -f "$SRC" ]; then
  cp "$SRC" "$W/debian.sources.bak"
  sed -i 's/^Types: deb$/Types: deb deb-src/' "$SRC"
else
  sed -n 's/^deb \(.*bookworm main.*\)$/deb-src \1/p' /etc/apt/sources.list | head -n 1 \
    > /etc/apt/sources.list.d/devloop-src.list
fi
"${APT[@]}" update -qq >&2
"${APT[@]}" install -y -qq --no-install-recommends golang-go rsync dpkg-dev patch >&2
cd "$W"
"${APT[@]}" source --download-only "kubernetes=$VERSION*" >/dev/null 2>&1 || "${APT[@]}" source --download-only kubernetes >&2
rm -f /etc/apt/sources.list.d/devloop-src.list
tar xzf kubernetes_*.orig.tar.gz
cd "kubernetes-$VERSION"
patch -p1 < "$here/kubelet-no-negative-oom.patch" >&2
# the vendored modern-go/reflect2 (1.0.1) predates Go 1.18's map layout: the API server built with
# Debian's Go crashes (SIGSEGV in UnsafeMapType.UnsafeIterate) when a custom resource is created.
# Debian's golang-github-modern-go-reflect2-dev holds the fixed 1.0.2.
"${APT[@]}" install -y -qq --no-install-recommends golang-github-modern-go-reflect2-dev >&2
R=/usr/share/gocode/src/github.com/modern-go/reflect2
rm -rf vendor/github.com/modern-go/reflect2 && mkdir -p vendor/github.com/modern-go/reflect2
cp "$R"/*.go "$R"/*.s vendor/github.com/modern-go/reflect2/ && rm -f vendor/github.com/modern-go/reflect2/*_test.go
mkdir -p .go/src/k8s.io; ln -sfn ../../.. .go/src/k8s.io/kubernetes
env GOPATH="$PWD/.go" CGO_ENABLED=0 HOME="$W/home" GOPROXY=off GOCACHE="$W/gocache" \
  make WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kubelet" >&2
mkdir -p "$OUT.tmp"
for b in $BINS; do cp "_output/bin/$b" "$OUT.tmp/"; done
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
"$OUT/kube-apiserver" --version >&2
echo "$OUT"
