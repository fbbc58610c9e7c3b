#!/usr/bin/env bash
# A throwaway OpenSSH server for devloop's SSH tests: 127.0.0.1:${PORT:-2222}, key-only auth,
# its own host key, client key and sshd_config in STATE_DIR. Touches nothing else but /run/sshd.
#
# Usage: bash tests/infra/sshd-up.sh [STATE_DIR]      (default /tmp/devloop-test/sshd)
# Idempotent: a server already running from STATE_DIR is reused.
# Prints (and writes to STATE_DIR/env) what the tests need:
#   SSHD_DIR=...  SSHD_PORT=...  SSHD_USER=...  SSHD_CLIENT_KEY=...  SSHD_HOST_PUBKEY=...
set -euo pipefail
D="${1:-${DEVLOOP_TEST_SSHD_DIR:-/tmp/devloop-test/sshd}}"
PORT="${PORT:-2222}"
USER_NAME="${SSH_USER:-$(id -un)}"

alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1; [ -n "$s" ] && [ "${s#Z}" = "$s" ]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

print_env() {
  cat > "$D/env" <<ENV
SSHD_DIR=$D
SSHD_PORT=$PORT
SSHD_USER=$USER_NAME
SSHD_CLIENT_KEY=$D/client_ed25519
SSHD_HOST_PUBKEY=$(cut -d' ' -f1,2 "$D/host_ed25519.pub")
ENV
  cat "$D/env"
}

# Reuse a server this state folder already runs.
if [ -f "$D/sshd.nohup.pid" ] && alive "$(cat "$D/sshd.nohup.pid")" && port_open; then
  print_env
  exit 0
fi

if [ ! -x /usr/sbin/sshd ]; then
  # Another process (a background build) may hold the apt/dpkg lock: wait for it.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends openssh-server >/dev/null
fi

mkdir -p "$D"; chmod 700 "$D"
[ -f "$D/host_ed25519" ]   || ssh-keygen -q -t ed25519 -N '' -C devloop-test-host   -f "$D/host_ed25519"
[ -f "$D/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C devloop-test-client -f "$D/client_ed25519"
cp "$D/client_ed25519.pub" "$D/authorized_keys"; chmod 600 "$D/authorized_keys"
cat > "$D/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $D/host_ed25519
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
AllowUsers $USER_NAME
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp internal-sftp
AcceptEnv LANG LC_*
LogLevel VERBOSE
CFG
mkdir -p /run/sshd && chmod 755 /run/sshd   # privilege-separation dir; sshd refuses to start without it
/usr/sbin/sshd -t -f "$D/sshd_config"
if port_open; then
  echo "sshd-up: 127.0.0.1:$PORT is taken by another process; set PORT=... to use another port" >&2
  exit 1
fi
nohup /usr/sbin/sshd -D -e -f "$D/sshd_config" > "$D/sshd.log" 2>&1 < /dev/null &
echo $! > "$D/sshd.nohup.pid"
for _ in $(seq 1 100); do port_open && break; sleep 0.1; done
port_open || { echo "sshd-up: sshd did not come up on 127.0.0.1:$PORT" >&2; cat "$D/sshd.log" >&2; exit 1; }
print_env
