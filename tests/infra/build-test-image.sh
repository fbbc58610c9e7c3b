#!/usr/bin/env bash
# Build the test image devloop-test:hostpy offline, only if the engine lacks it: a tiny root
# filesystem made from THIS host's python3 + coreutils (no registry, no network needed).
# Usage: DOCKER_HOST=unix://... tests/infra/build-test-image.sh [TAG]
set -euo pipefail
TAG="${1:-devloop-test:hostpy}"
: "${DOCKER_HOST:?set DOCKER_HOST (the last line of tests/infra/docker-up.sh)}"
SOCK="${DOCKER_HOST#unix://}"
if curl -fsS --unix-socket "$SOCK" "http://d/images/$TAG/json" >/dev/null 2>&1; then
  exit 0
fi
# the Debian interpreter (not a pyenv/venv one): its stdlib and libs live under /usr
PY="$(readlink -f /usr/bin/python3)"; PYV="$(basename "$PY")"     # e.g. python3.11
R="$(mktemp -d /tmp/hostpy-rootfs.XXXXXX)"
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{usr/bin,usr/lib,usr/lib64,etc,tmp,root,proc,sys,dev,workspace,var/tmp}
chmod 1777 "$R/tmp" "$R/var/tmp"
ln -s usr/bin "$R/bin"; ln -s usr/lib "$R/lib"; ln -s usr/lib64 "$R/lib64"; ln -s usr/bin "$R/sbin"
BINS="$PY /usr/bin/dash /usr/bin/bash /usr/bin/env /usr/bin/cat /usr/bin/ls /usr/bin/mkdir \
 /usr/bin/rm /usr/bin/cp /usr/bin/mv /usr/bin/sleep /usr/bin/echo /usr/bin/tar /usr/bin/kill /usr/bin/ps \
 /usr/bin/sha256sum /usr/bin/find /usr/bin/id /usr/bin/true /usr/bin/false /usr/bin/head /usr/bin/tail \
 /usr/bin/touch /usr/bin/chmod /usr/bin/pwd /usr/bin/sh"
for b in $BINS; do if [ -e "$b" ] && [ ! -L "$b" ]; then cp -a "$b" "$R$b"; fi; done
ln -sf "$PYV" "$R/usr/bin/python3"; ln -sf python3 "$R/usr/bin/python"; ln -sf dash "$R/usr/bin/sh"
# the stdlib only (no site/dist-packages, no test suite)
tar -C / --exclude="usr/lib/$PYV/test" --exclude="usr/lib/$PYV/dist-packages" \
    --exclude="usr/lib/$PYV/idlelib" --exclude="usr/lib/$PYV/tkinter" --exclude="usr/lib/$PYV/lib2to3" \
    -cf - "usr/lib/$PYV" | tar -C "$R" -xf -
# shared libraries the binaries and the stdlib's extension modules need
{ for b in $BINS; do [ -e "$b" ] && ldd "$b" || true; done
  for so in /usr/lib/"$PYV"/lib-dynload/*.so; do ldd "$so" || true; done
} 2>/dev/null | grep -oE '/[^ ]+\.so[^ ]*' | sort -u | while read -r lib; do
    real="$(readlink -f "$lib")"; dest="$R$(readlink -f "$(dirname "$lib")")"
    mkdir -p "$dest"; cp -a "$real" "$dest/"
    if [ "$(basename "$lib")" != "$(basename "$real")" ]; then ln -sf "$(basename "$real")" "$dest/$(basename "$lib")"; fi
done
mkdir -p "$R/usr/lib/x86_64-linux-gnu"
cp -a /usr/lib/x86_64-linux-gnu/gconv "$R/usr/lib/x86_64-linux-gnu/" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
tar -C "$R" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'WORKDIR /workspace' - "$TAG" >/dev/null
echo "built $TAG" >&2
