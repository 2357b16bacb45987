#!/usr/bin/env bash
# web_test.sh - the web app in a real browser against a real node: starts haven-node on a fresh
# data directory (HTTPS Connect API with the web app on a random loopback port, a demo PKI,
# alerts to the alerts tests' real mail server and webhook receiver), loads the demo network,
# makes the demo people (scripts/demo/people.txt) as the operator, starts a second node with a
# 6 s idle timeout and one person (the idle session's end), and runs tests/web/web_test.mjs
# (puppeteer-core driving Debian's chromium, headless).
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
pid="" pid2="" rcv=""
cleanup() {
  local rc=$?
  for p in $pid $pid2 $rcv; do
    kill -TERM "$p" 2>/dev/null && { wait "$p" 2>/dev/null || true; }
  done
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

# The alerts tests' receivers: SMTP with STARTTLS (the demo server certificate) and webhooks
# signed with $secret; what they receive goes to $work/received.jsonl.
secret="web test webhook secret 2026"
/usr/bin/python3 "$src/services/alerts/alerts_receiver.py" "$work" "$work/pki/server.pem" \
  "$work/pki/server.key" "$secret" 2>"$work/receiver.log" &
rcv=$!
for _ in $(seq 1 100); do
  [ -f "$work/ports" ] && break
  sleep 0.05
done
[ -f "$work/ports" ] || { echo "web_test: the alerts receiver did not start: $(cat "$work/receiver.log")" >&2; exit 1; }
read -r smtp_port hook_port <"$work/ports"
printf '%s\n' "alerts.smtp_url = smtp://localhost:$smtp_port" "alerts.smtp_from = haven@haven.test" \
  "alerts.smtp_ca = $work/pki/ca.pem" "alerts.webhook_allow_private = true" >"$work/alerts.conf"

# start_node PORT-VAR PID-VAR DATA LOG ARGS...: a node with HTTPS on a free loopback port.
start_node() {
  local -n port_=$1 pid_=$2
  local dir=$3 log=$4
  shift 4
  for _ in 1 2 3 4 5; do
    port_=$((20000 + RANDOM % 10000))
    "$node_bin" --data "$dir" --listen "ipc://$dir/run/haven.sock" \
      --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key" --tls-ca "$work/pki/ca.pem" \
      --http-listen "127.0.0.1:$port_" --http-web-dir "$src/web" "$@" 2>"$log" &
    pid_=$!
    for _ in $(seq 1 50); do
      "$cli" --data "$dir" --timeout 1000 health >/dev/null 2>&1 && return 0
      kill -0 "$pid_" 2>/dev/null || break
      sleep 0.1
    done
    kill -TERM "$pid_" 2>/dev/null
    wait "$pid_" 2>/dev/null || true
    pid_=""
  done
  echo "web_test: the node did not start" >&2
  exit 1
}
start_node port pid "$data" "$work/node.log" --config "$work/alerts.conf" --signals.helpline "0800 2112"
data2=$work/data2
mkdir -m 700 "$data2"
start_node port2 pid2 "$data2" "$work/node2.log" --session-idle-s 6
# its one person, made while the demo network loads into the first node
{ "$cli" --data "$data2" org register idle-ngo --name "Idle NGO" --role referrer --region Rotterdam >/dev/null
  HAVEN_NEW_PASSWORD="demo ida 2026 idle" "$cli" --data "$data2" person add idle-ngo \
    ida.idle@idle-ngo --name "Ida Idle" --role case-worker | grep '^otpauth://' >"$work/idle.uri"
} &
idle_job=$!

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
rm -f "$shots"/*.png # this run's screenshots only
wait "$idle_job" || { echo "web_test: the idle node's person was not made" >&2; exit 1; }
echo "idle-ngo|ida.idle@idle-ngo|case-worker|demo ida 2026 idle|$(cat "$work/idle.uri")" >>"$people"
# HAVEN_WEB_ONLY=signal runs the signal page's test alone (while working on it).
[ "${HAVEN_WEB_ONLY:-}" = signal ] ||
HAVEN_URL="https://localhost:$port" HAVEN_IDLE_URL="https://localhost:$port2" HAVEN_PEOPLE="$people" \
  HAVEN_SHOTS="$shots" HAVEN_RECEIVED="$work/received.jsonl" HAVEN_HOOK="http://127.0.0.1:$hook_port/hook" \
  HAVEN_HOOK_SECRET="$secret" CHROMIUM="$chromium" NODE_PATH="$src/node_modules" node "$src/tests/web/web_test.mjs"
# The public signal page (issue 19): a signal in Polish on a phone, followed up by the region.
HAVEN_URL="https://localhost:$port" HAVEN_PEOPLE="$people" HAVEN_SHOTS="$shots" CHROMIUM="$chromium" \
  NODE_PATH="$src/node_modules" node "$src/tests/web/signal_test.mjs"
# The worker's reads of signals are in the node's audit log, which still verifies.
"$cli" --data "$data" audit show --limit 1000 >"$work/audit.txt"; grep -q 'Signals/ListSignals '  "$work/audit.txt" ||
  { echo "FAIL the outreach worker's reads of signals are not in the audit log" >&2; tail -5 "$work/audit.txt" >&2; exit 1; }
# So is the municipality's statistics query that was answered (the last month; this month's
# was refused, and a refusal answers nothing to audit).
grep -q 'Signals/Statistics ' "$work/audit.txt" ||
  { echo "FAIL the answered signal statistics query is not in the audit log" >&2; exit 1; }
# The badge's CountSignals (signal_test saw the count it gave) is no read of a signal: not in
# the audit log.
! grep -q 'Signals/CountSignals' "$work/audit.txt" ||
  { echo "FAIL CountSignals is in the audit log: a count opens no signal" >&2; exit 1; }
"$cli" --data "$data" audit verify >/dev/null || { echo "FAIL audit verify" >&2; exit 1; }
echo "ok   signal reads and statistics audited, the badge's counts not; the audit chain verifies"
