#!/usr/bin/env bash
# The main job, end to end: set up, generate certificates, start `trioecho serve`,
# ping it over verified TLS, stop the server with SIGTERM (graceful), show both outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --runtime
[ -f certs/server.pem ] || .venv/bin/python scripts/gen_certs.py --out certs
log=$(mktemp)
.venv/bin/trioecho serve --host 127.0.0.1 --port 0 --cert certs/server.pem >"$log.out" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log" "$log.out"' EXIT
for _ in $(seq 100); do grep -q '^listening on' "$log.out" 2>/dev/null && break; sleep 0.1; done
cat "$log.out"
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$log.out" | head -n1)
[ -n "$port" ] || { echo "server did not start:"; cat "$log"; exit 1; }
set +e
.venv/bin/trioecho ping "localhost:$port" --cafile certs/ca.pem --count 5 --interval 0.2 --size 64,16k,1M
rc=$?
set -e
kill -TERM $pid; wait $pid || true
echo "--- server log ---"
cat "$log"
exit $rc
