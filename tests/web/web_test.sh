#!/usr/bin/env bash
# web_test.sh - the web app in a real browser against a real node: starts haven-node on a fresh
# data directory (HTTPS Connect API with the web app on a random loopback port, a demo PKI),
# loads the demo network, makes the demo people (scripts/demo/people.txt) as the operator, and
# runs tests/web/web_test.mjs (puppeteer-core driving Debian's chromium, headless).
#
#   tests/web/web_test.sh HAVEN_NODE HAVEN_CLI SOURCE_DIR SCREENSHOT_DIR
#
# Exit 0 when every check passed; 77 (skipped) when chromium, node or the npm packages are
# missing and HAVEN_WEB_REQUIRED is not set (scripts/test.sh sets it).
set -euo pipefail
node_bin=$1 cli=$2 src=$3 shots=$4

chromium=${CHROMIUM:-$(command -v chromium || true)}
if [ -z "$chromium" ] || ! command -v node >/dev/null || [ ! -d "$src/node_modules/puppeteer-core" ]; then
  echo "web_test: needs chromium, node and the npm packages (scripts/web.sh)" >&2
  [ -n "${HAVEN_WEB_REQUIRED:-}" ] && exit 1
  exit 77
fi
[ -f "$src/web/vendor/qrcode.mjs" ] || node "$src/web/tools/vendor.mjs" >/dev/null

work=$(mktemp -d "${HAVEN_TEST_TMP:-${TMPDIR:-/tmp}}/haven-web.XXXXXX")
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
"$src/deploy/pki.sh" "$work/pki" ca >/dev/null 2>&1
"$src/deploy/pki.sh" "$work/pki" server localhost >/dev/null 2>&1

for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 10000))
  "$node_bin" --data "$data" --listen "ipc://$data/run/haven.sock" \
    --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key" --tls-ca "$work/pki/ca.pem" \
    --http-listen "127.0.0.1:$port" --http-web-dir "$src/web" --signals.helpline "0800 2112" \
    2>"$work/node.log" &
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
[ -n "$pid" ] || { echo "web_test: the node did not start" >&2; exit 1; }

"$src/scripts/demo/load.sh" "$cli" "$data" >/dev/null
# The demo people, made by the operator; one more provider person (shelter-nn) to try another
# provider's offer, and a network admin for the operator pages.
people=$work/people.txt
{ grep -v '^#' "$src/scripts/demo/people.txt"
  echo "shelter-nn|nina.night@shelter-nn|Nina Night|case-worker|demo nina 2026"
  echo "haven-ops|olaf.ops@haven-ops|Olaf Ops|admin|demo olaf 2026"
} | while IFS='|' read -r org login name role pw; do
  [ -n "$org" ] || continue
  if [ "$org" = haven-ops ] && ! "$cli" --data "$data" org show haven-ops >/dev/null 2>&1; then
    "$cli" --data "$data" org register haven-ops --name "Network operations" --role admin \
      --region Midden-Nederland >/dev/null
  fi
  out=$(HAVEN_NEW_PASSWORD=$pw "$cli" --data "$data" person add "$org" "$login" --name "$name" --role "$role")
  printf '%s|%s|%s|%s|%s\n' "$org" "$login" "$role" "$pw" "$(grep '^otpauth://' <<<"$out")"
done >"$people"

mkdir -p "$shots"
# HAVEN_WEB_ONLY=signal runs the signal page's test alone (while working on it).
[ "${HAVEN_WEB_ONLY:-}" = signal ] ||
HAVEN_URL="https://localhost:$port" HAVEN_PEOPLE="$people" HAVEN_SHOTS="$shots" CHROMIUM="$chromium" \
  NODE_PATH="$src/node_modules" node "$src/tests/web/web_test.mjs"
# The public signal page (issue 19): a signal in Polish on a phone, followed up by the region.
HAVEN_URL="https://localhost:$port" HAVEN_PEOPLE="$people" HAVEN_SHOTS="$shots" CHROMIUM="$chromium" \
  NODE_PATH="$src/node_modules" node "$src/tests/web/signal_test.mjs"
# The worker's reads of signals are in the node's audit log, which still verifies.
"$cli" --data "$data" audit show --limit 1000 >"$work/audit.txt"; grep -q 'Signals/ListSignals '  "$work/audit.txt" ||
  { echo "FAIL the outreach worker's reads of signals are not in the audit log" >&2; tail -5 "$work/audit.txt" >&2; exit 1; }
"$cli" --data "$data" audit verify >/dev/null || { echo "FAIL audit verify" >&2; exit 1; }
echo "ok   signal reads audited; the audit chain verifies"
