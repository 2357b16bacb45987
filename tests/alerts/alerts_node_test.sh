#!/usr/bin/env bash
# alerts_node_test.sh - alerts through the real haven-node binary and its configuration file:
# a referrer refers a person over mutual TLS, and the shelter offered hears of it by e-mail
# (a real SMTP server requiring STARTTLS, the node checking its certificate against smtp_ca)
# and by a signed webhook, each once, with node_url's link and nothing of the person; the
# operator sets the channels with `haven alerts set` and the shelter reads its alerts with
# `haven alerts watch`. Then the node is killed (SIGKILL) right after a second referral
# committed and restarted: that alert arrives too, under one key per channel (a send cut short
# by the kill is repeated with its key, which the receiver keeps once).
#
#   tests/alerts/alerts_node_test.sh HAVEN_NODE HAVEN_CLI SOURCE_DIR
#
# The receivers are services/alerts/alerts_receiver.py (python3-aiosmtpd). Data in a fresh
# directory under $HAVEN_TEST_TMP (else /tmp), removed at exit with every process it started.
set -euo pipefail

node_bin=$1
cli=$2
src=$3
base=${HAVEN_TEST_TMP:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/alerts-node-XXXXXX")
node=""
rcv=""
SECRET=alerts-node-test-webhook-secret
NAME="Ioana Sentinel-Popescu"
NOTE="found at the bus station by Sentinel outreach"

cleanup() {
	[ -n "$node" ] && kill -TERM "$node" 2>/dev/null && wait "$node" 2>/dev/null || true
	[ -n "$rcv" ] && kill -TERM "$rcv" 2>/dev/null && wait "$rcv" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "alerts_node_test: FAIL: $*" >&2
	[ -f "$work/node.log" ] && tail -n 20 "$work/node.log" >&2
	exit 1
}

pki=$work/pki
sh "$src/deploy/pki.sh" "$pki" ca >/dev/null 2>&1
sh "$src/deploy/pki.sh" "$pki" server localhost >/dev/null 2>&1
for org in ngo-a shelter-a; do
	sh "$src/deploy/pki.sh" "$pki" client "$org" >/dev/null 2>&1
done

/usr/bin/python3 "$src/services/alerts/alerts_receiver.py" "$work" "$pki/server.pem" \
	"$pki/server.key" "$SECRET" 2>"$work/receiver.log" &
rcv=$!
for _ in $(seq 1 200); do
	[ -f "$work/ports" ] && break
	sleep 0.05
done
[ -f "$work/ports" ] || fail "the receiver did not start: $(cat "$work/receiver.log")"
read -r smtp_port hook_port <"$work/ports"

start_node() {
	local tries=0
	while :; do
		port=$((10000 + RANDOM % 10000))
		cat >"$work/haven.conf" <<EOF
data_dir = $work/data
listen = ipc://$work/data/run/haven.sock
listen = tls+tcp://127.0.0.1:$port
tls_ca = $pki/ca.pem
tls_cert = $pki/server.pem
tls_key = $pki/server.key
alerts.node_url = https://haven.test
alerts.smtp_url = smtp://localhost:$smtp_port
alerts.smtp_from = haven@haven.test
alerts.smtp_ca = $pki/ca.pem
alerts.webhook_allow_private = true
EOF
		"$node_bin" --config "$work/haven.conf" 2>>"$work/node.log" &
		node=$!
		for _ in $(seq 1 100); do
			"$cli" --data "$work/data" --timeout 500 health >/dev/null 2>&1 && return 0
			kill -0 "$node" 2>/dev/null || break
			sleep 0.1
		done
		kill -TERM "$node" 2>/dev/null || true
		wait "$node" 2>/dev/null || true
		node=""
		tries=$((tries + 1))
		[ $tries -lt 5 ] || fail "haven-node does not start"
	done
}

op() { "$cli" --data "$work/data" "$@"; }
as() {
	local org=$1
	shift
	"$cli" --url "tls+tcp://localhost:$port" --ca "$pki/ca.pem" --cert "$pki/$org.pem" \
		--key "$pki/$org.key" --org "$org" "$@"
}

# received ORG VIA: how many alerts for ORG came by VIA (smtp or webhook): distinct
# idempotency keys, as a receiver that keeps one message per key counts them.
received() {
	[ -f "$work/received.jsonl" ] || { echo 0; return; }
	sed -n "s/.*\"via\": \"$2\", \"key\": \"\([0-9]*\.$1\.[a-z]*\)\".*/\1/p" \
		"$work/received.jsonl" | sort -u | wc -l
}

# wait_for ORG VIA N: until N messages for ORG came by VIA (10 s at most).
wait_for() {
	for _ in $(seq 1 100); do
		[ "$(received "$1" "$2")" -ge "$3" ] && return 0
		sleep 0.1
	done
	fail "$1 got $(received "$1" "$2") $2 messages, not $3: $(cat "$work/received.jsonl" 2>/dev/null)"
}

start_node
op org register ngo-a --name "NGO A" --role referrer --region Rotterdam --cert "$pki/ngo-a.pem" >/dev/null
op org register shelter-a --name "Shelter A" --role provider --region Rotterdam \
	--cert "$pki/shelter-a.pem" >/dev/null
op service register --id svc-a --org shelter-a --type shelter --region Rotterdam \
	--population women --languages ro --total 5 --available 5 --contact "intake desk" >/dev/null
printf '%s\n' "$SECRET" >"$work/secret"
op alerts set shelter-a --email intake@shelter-a.test,night@shelter-a.test \
	--webhook "http://127.0.0.1:$hook_port/hook" --secret-file "$work/secret" >/dev/null

subject=$(as ngo-a subject create --name "$NAME" --language ro --contact "+40 700 000 000")
as ngo-a consent grant "$subject" --purpose referral,share-with-provider --accepting-provider \
	--category identity,contact --given-by subject --method verbal --language ro >/dev/null
as ngo-a referral create --subject "$subject" --urgency immediate --exploitation labour \
	--need shelter:women:ro --note "$NOTE" >/dev/null

wait_for shelter-a smtp 1
wait_for shelter-a webhook 1
grep -q '"tls": true' "$work/received.jsonl" || fail "the e-mail did not come over STARTTLS"
! grep -q '"sig_ok": false' "$work/received.jsonl" || fail "a webhook signature did not verify"
grep -q 'https://haven.test/#/offers/off-' "$work/received.jsonl" || fail "no link to the offer"
for secret in "$subject" Sentinel Ioana "bus station" "+40 700"; do
	! grep -qF -- "$secret" "$work/received.jsonl" || fail "a delivered alert holds '$secret'"
done
as shelter-a alerts watch >"$work/watch" || fail "alerts watch as shelter-a"
grep -q "OFFER_NEW" "$work/watch" || fail "the shelter's alerts: $(cat "$work/watch")"
# Another organisation sees none of the shelter's alerts.
as ngo-a alerts watch shelter-a >/dev/null 2>&1 && fail "ngo-a read shelter-a's alerts"

# The node dies right after the next event committed (before, during or after its sends); the
# restarted node sends what was not confirmed, under the same keys: one alert per key.
as ngo-a referral create --subject "$subject" --urgency immediate --exploitation labour \
	--need shelter:women:ro >/dev/null
kill -KILL "$node"
wait "$node" 2>/dev/null || true
node=""
start_node
wait_for shelter-a smtp 2
wait_for shelter-a webhook 2
sleep 1
[ "$(received shelter-a smtp)" -eq 2 ] || fail "e-mails: $(received shelter-a smtp), not 2"
[ "$(received shelter-a webhook)" -eq 2 ] || fail "webhooks: $(received shelter-a webhook), not 2"
# Every message is one of the four keys (a send cut short by the kill may repeat one of them).
[ "$(sed -n 's/.*"key": "\([^"]*\)".*/\1/p' "$work/received.jsonl" | sort -u | wc -l)" -eq 4 ] ||
	fail "keys: $(sed -n 's/.*"key": "\([^"]*\)".*/\1/p' "$work/received.jsonl" | sort -u)"

# `haven alerts test`: one TEST alert through each channel, and what became of it. The shelter
# (an organisation acting for itself) tests its own; both channels take it.
as shelter-a alerts test >"$work/test" || fail "alerts test as shelter-a: exit $?: $(cat "$work/test")"
grep -q '^email  *delivered' "$work/test" && grep -q '^webhook  *delivered' "$work/test" ||
	fail "alerts test: $(cat "$work/test")"
wait_for shelter-a smtp 3
wait_for shelter-a webhook 3
# Another organisation cannot test (and so probe) the shelter's channels.
as ngo-a alerts test shelter-a >/dev/null 2>&1 && fail "ngo-a tested shelter-a's channels"
# A webhook that cannot be reached: the test says so, with exit 14 (UNAVAILABLE), and the
# e-mail still goes.
op alerts set shelter-a --email intake@shelter-a.test --webhook "http://127.0.0.1:1/hook" \
	--secret-file "$work/secret" >/dev/null
rc=0
op alerts test shelter-a >"$work/test" 2>&1 || rc=$?
[ "$rc" -eq 14 ] || fail "alerts test with an unreachable webhook: exit $rc: $(cat "$work/test")"
grep -q '^webhook  *failed' "$work/test" && grep -q '^email  *delivered' "$work/test" ||
	fail "alerts test with an unreachable webhook: $(cat "$work/test")"
! grep -q "127.0.0.1:1" "$work/test" || fail "the failure names the address: $(cat "$work/test")"
# No channel at all (ngo-a set none): exit 9, and a message that says what to do. (The
# shelter's channels may be tested once in 15 s: a second test now is refused, which the
# alerts tests of the service pin.)
rc=0
op alerts test ngo-a >"$work/test" 2>&1 || rc=$?
[ "$rc" -eq 9 ] && grep -q "no channel is configured" "$work/test" ||
	fail "alerts test without channels: exit $rc: $(cat "$work/test")"
echo "alerts_node_test: ok"
