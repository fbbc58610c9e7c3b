#!/usr/bin/env bash
# Set up and run devloop's whole test suite on a fresh Debian machine:
#   a virtualenv with devloop and its test extra, the real services the tests use (a private
#   Docker engine, an OpenSSH server on 127.0.0.1, a one-node Kubernetes built from Debian's
#   source package and cached), then pytest. Extra arguments go to pytest.
# Opt-outs (the tests then skip loudly): DEVLOOP_NO_SERVICES=1 starts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DEVLOOP_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e '.[test]'

if [ "${DEVLOOP_NO_SERVICES:-0}" != "1" ]; then
  services_env="$(bash tests/infra/services-up.sh)"
  eval "$services_env"
  trap 'bash tests/infra/services-down.sh' EXIT
fi

set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
