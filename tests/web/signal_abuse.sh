#!/usr/bin/env bash
# signal_abuse.sh - the abuse limits of the public signal page over HTTP (issue 19): starts
# haven-node on plain HTTP on loopback behind a "trusted proxy" (http_trusted_proxy: the test
# plays nginx and sets X-Forwarded-For), with a small overall limit, and runs
# signal_abuse.mjs: per-address and overall limits of Challenge, Submit and People/Login, the
# size limits, and a scan of the LMDB file and the node's log for the sender's address and the
# contact they typed. Needs node only (no browser); 77 (skipped) without it.
#
#   tests/web/signal_abuse.sh HAVEN_NODE HAVEN_CLI SOURCE_DIR
set -euo pipefail
node_bin=$1 cli=$2 src=$3
command -v node >/dev/null || { echo "signal_abuse: needs node" >&2; exit 77; }

work=$(mktemp -d "${HAVEN_TEST_TMP:-${TMPDIR:-/tmp}}/haven-abuse.XXXXXX")
pid=""
cleanup() {
  local rc=$?
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  if [ "$rc" -ne 0 ] && [ -f "$work/node.log" ]; then
    echo "---- last lines of node.log" >&2
    tail -n 20 "$work/node.log" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
chmod 700 "$work"
data=$work/data
mkdir -m 700 "$data"

# A proxy that is not on this machine is refused: the header could then come from anyone.
mkdir -m 700 "$work/bad"
if "$node_bin" --data "$work/bad" --listen "ipc://$work/bad/haven.sock" \
    --http-listen "http://127.0.0.1:0" --http-trusted-proxy 192.0.2.1 2>"$work/bad.log"; then
  echo "FAIL a trusted proxy off this machine was accepted" >&2; exit 1
fi
grep -q "must be a loopback address" "$work/bad.log" ||
  { echo "FAIL no clear error for a trusted proxy off this machine" >&2; tail -3 "$work/bad.log" >&2; exit 1; }
echo "ok   a trusted proxy off this machine is refused at start"

for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 10000))
  "$node_bin" --data "$data" --listen "ipc://$data/run/haven.sock" \
    --http-listen "http://127.0.0.1:$port" --http-trusted-proxy 127.0.0.1 \
    --signals.difficulty 12 --signals.submits-per-min 12 --signals.per-address-per-min 2 \
    --metrics-listen 127.0.0.1:0 2>"$work/node.log" &
  pid=$!
  for _ in $(seq 1 50); do
    "$cli" --data "$data" --timeout 1000 health >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && break
  wait "$pid" 2>/dev/null || true
  pid=""
done
[ -n "$pid" ] || { echo "signal_abuse: the node did not start" >&2; exit 1; }

HAVEN_URL="http://127.0.0.1:$port" HAVEN_STORE="$data/store/data.mdb" HAVEN_LOG="$work/node.log" \
  node "$src/tests/web/signal_abuse.mjs"

# Every limit that refused above is counted on the metrics page (an operator's alert).
mport=$(sed -n 's/.*metrics: serving .*(port \([0-9]*\)).*/\1/p' "$work/node.log" | head -n 1)
[ -n "$mport" ] || { echo "FAIL the node logged no metrics port" >&2; exit 1; }
page=$(node -e 'fetch(process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t))' \
  "http://127.0.0.1:$mport/metrics")
for want in 'haven_signals_limit_refusals_total{limiter="challenge",bucket="source"}' \
    'haven_signals_limit_refusals_total{limiter="submit",bucket="source"}' \
    'haven_signals_limit_refusals_total{limiter="submit",bucket="overall"}' \
    'haven_people_limit_refusals_total{limiter="login",bucket="source"}'; do
  n=$(printf '%s\n' "$page" | awk -v k="$want" '$1 == k { print $2 }')
  if [ -z "$n" ] || [ "$n" = 0 ]; then
    echo "FAIL $want is '${n:-missing}' after the refusals above" >&2; exit 1
  fi
  echo "ok   $want $n"
done
