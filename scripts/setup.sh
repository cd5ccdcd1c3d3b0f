#!/usr/bin/env bash
# Create .venv and install trioecho with its test tools; install the Debian
# packages the interop tests drive (openssl, gnutls-bin, socat, haproxy) when
# they are missing and we may (root).  Safe to run again.
#   scripts/setup.sh            everything (what the tests need)
#   scripts/setup.sh --runtime  only trioecho itself (what the demo needs)
set -euo pipefail
runtime_only=0
[ "${1:-}" = "--runtime" ] && runtime_only=1
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
pip_quiet() {  # pip's output only when it fails
  .venv/bin/python -m pip install -q "$@" >.venv/pip.log 2>&1 || { cat .venv/pip.log >&2; exit 1; }
}
pip_quiet --upgrade pip
if [ "$runtime_only" = 1 ]; then
  pip_quiet -e .
  exit 0
fi
pip_quiet -e '.[test]'
need=()
for tool in openssl:openssl gnutls-cli:gnutls-bin gnutls-serv:gnutls-bin socat:socat haproxy:haproxy; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]}: install them (apt-get install ${need[*]}) for the interop tests" >&2
  fi
fi
