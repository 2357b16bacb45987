#!/usr/bin/env bash
# events_node_test.sh - GET /events (Server-Sent Events) on a real haven-node's HTTP listener,
# read by a real HTTP client (curl, libcurl): a shelter's person (a viewer) sees an offer on
# its stream within a second of the referral, as `id: SEQ` + `data: {json}` with nothing of the
# person referred; another organisation's stream sees nothing; Last-Event-ID resumes after an
# event; logout ends the stream; a ninth stream of one organisation gets 503; bad requests get
# a clear status (no credential 401, POST 405, a cross-origin cookie 403, a bad cursor 400).
#
#   tests/alerts/events_node_test.sh HAVEN_NODE HAVEN_CLI SOURCE_DIR
#
# Data in a fresh directory under $HAVEN_TEST_TMP (else /tmp), removed at exit with every
# process it started.
set -euo pipefail

node_bin=$1
cli=$2
src=$3
base=${HAVEN_TEST_TMP:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$base/events-node-XXXXXX")
node=""
pids=()
NAME="Ioana Sentinel-Popescu"

cleanup() {
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	[ -n "$node" ] && kill -TERM "$node" 2>/dev/null && wait "$node" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "events_node_test: FAIL: $*" >&2
	[ -f "$work/node.log" ] && tail -n 20 "$work/node.log" >&2
	exit 1
}

pki=$work/pki
sh "$src/deploy/pki.sh" "$pki" ca >/dev/null 2>&1
sh "$src/deploy/pki.sh" "$pki" server localhost >/dev/null 2>&1
for org in ngo-a shelter-a; do
	sh "$src/deploy/pki.sh" "$pki" client "$org" >/dev/null 2>&1
done

tries=0
while :; do
	port=$((10000 + RANDOM % 10000))
	hport=$((20000 + RANDOM % 10000))
	"$node_bin" --data "$work/data" --listen "ipc://$work/data/run/haven.sock" \
		--listen "tls+tcp://127.0.0.1:$port" --tls-ca "$pki/ca.pem" --tls-cert "$pki/server.pem" \
		--tls-key "$pki/server.key" --http-listen "http://127.0.0.1:$hport" 2>>"$work/node.log" &
	node=$!
	for _ in $(seq 1 100); do
		"$cli" --data "$work/data" --timeout 500 health >/dev/null 2>&1 && break 2
		kill -0 "$node" 2>/dev/null || break
		sleep 0.1
	done
	kill -TERM "$node" 2>/dev/null || true
	wait "$node" 2>/dev/null || true
	node=""
	tries=$((tries + 1))
	[ $tries -lt 5 ] || fail "haven-node does not start"
done
url=http://127.0.0.1:$hport

op() { "$cli" --data "$work/data" "$@"; }
as() {
	local org=$1
	shift
	"$cli" --url "tls+tcp://localhost:$port" --ca "$pki/ca.pem" --cert "$pki/$org.pem" \
		--key "$pki/$org.key" --org "$org" "$@"
}
# person ORG LOGIN ROLE: adds a person (as whoever the session file says), prints the URI.
person() {
	HAVEN_NEW_PASSWORD="pw of $2 1234" op person add "$1" "$2" --name "Person $2" --role "$3" |
		grep '^otpauth://'
}
# signin NAME URI: a session of NAME@ORG (NAME's prefix sa-, na-, sb- names ORG) in
# $work/sess-NAME; prints its token.
signin() {
	local org code
	case $1 in sa-*) org=shelter-a ;; na-*) org=ngo-a ;; sb-*) org=shelter-b ;; esac
	code=$(/usr/bin/python3 "$src/scripts/demo/totp.py" "$2")
	printf 'pw of %s 1234\n%s\n' "$1" "$code" |
		HAVEN_SESSION_FILE=$work/sess-$1 op login "$1@$org" --stdin >/dev/null
	sed -n 2p "$work/sess-$1"
}
# stream NAME CURL-ARGS...: a stream read into $work/NAME in the background.
stream() {
	local name=$1
	shift
	curl -sS -N -H 'Accept: text/event-stream' "$@" -D "$work/$name.head" -o "$work/$name" \
		"$url/events" 2>"$work/$name.err" &
	pids+=($!)
}
# status CURL-ARGS...: the HTTP status of a request to /events (2 s at most).
status() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true
}

op org register ngo-a --name "NGO A" --role referrer --region Rotterdam --cert "$pki/ngo-a.pem" >/dev/null
op org register shelter-a --name "Shelter A" --role provider --region Rotterdam \
	--cert "$pki/shelter-a.pem" >/dev/null
op org register shelter-b --name "Shelter B" --role provider --region Zeeland-West-Brabant >/dev/null
op service register --id svc-a --org shelter-a --type shelter --region Rotterdam \
	--population women --languages ro --total 5 --available 5 --contact "intake desk" >/dev/null

uri=$(person shelter-a sa-admin admin)
sa_admin=$(signin sa-admin "$uri")
uri=$(HAVEN_SESSION_FILE=$work/sess-sa-admin person shelter-a sa-viewer viewer)
sa_viewer=$(signin sa-viewer "$uri")
uri=$(person ngo-a na-admin admin)
na_admin=$(signin na-admin "$uri")
uri=$(person shelter-b sb-admin admin)
sb_admin=$(signin sb-admin "$uri")
[ -n "$sa_viewer" ] && [ -n "$sb_admin" ] || fail "no session tokens"

# Only the organisation's admin person sets its alert channels: not a case worker, not a viewer.
uri=$(HAVEN_SESSION_FILE=$work/sess-sa-admin person shelter-a sa-case case-worker)
signin sa-case "$uri" >/dev/null
for who in sa-case sa-viewer; do
	! HAVEN_SESSION_FILE=$work/sess-$who op alerts set shelter-a --email x@evil.example \
		>"$work/set.out" 2>&1 || fail "$who set shelter-a's channels"
	grep -q PERMISSION_DENIED "$work/set.out" || fail "$who: $(cat "$work/set.out")"
done
HAVEN_SESSION_FILE=$work/sess-sa-admin op alerts set shelter-a --email intake@shelter-a.test \
	>/dev/null || fail "shelter-a's admin cannot set its channels"
HAVEN_SESSION_FILE=$work/sess-sa-case op alerts show shelter-a | grep -q intake@shelter-a.test ||
	fail "the case worker cannot read the channels"

# Bad requests.
[ "$(status "$url/events")" = 401 ] || fail "no credential: not 401"
[ "$(status -X POST -H "Authorization: Bearer $sa_viewer" "$url/events")" = 405 ] ||
	fail "POST /events: not 405"
[ "$(status -H "Cookie: haven_session=$sa_viewer" -H "Origin: https://evil.example" \
	"$url/events")" = 403 ] || fail "a cross-origin cookie: not 403"
[ "$(status -H "Authorization: Bearer $sa_viewer" "$url/events?after=x")" = 400 ] ||
	fail "a bad cursor: not 400"
[ "$(status -H "Authorization: Bearer $sa_viewer" -H 'Last-Event-ID: -1' "$url/events")" = 400 ] ||
	fail "a bad Last-Event-ID: not 400"
[ "$(status -H "Authorization: Bearer not-a-token" "$url/events")" = 401 ] ||
	fail "a bad token: not 401"
[ "$(status -H 'Accept: image/png' -H "Authorization: Bearer $sa_viewer" "$url/events")" = 406 ] ||
	fail "Accept image/png: not 406"

# The viewer by its session cookie (same-origin), the other shelter by a bearer token.
stream sa -H "Cookie: haven_session=$sa_viewer" -H 'Sec-Fetch-Site: same-origin'
stream sb -H "Authorization: Bearer $sb_admin"
sleep 0.7
grep -qi '^content-type: text/event-stream' "$work/sa.head" || fail "sa: $(cat "$work/sa.head")"
grep -qi '^cache-control: no-store' "$work/sa.head" || fail "sa: not no-store"

subject=$(as ngo-a subject create --name "$NAME" --language ro --contact "+40 700 000 000")
as ngo-a consent grant "$subject" --purpose referral,share-with-provider --accepting-provider \
	--category identity,contact --given-by subject --method verbal --language ro >/dev/null
t0=$(date +%s%N)
as ngo-a referral create --subject "$subject" --urgency immediate --exploitation labour \
	--need shelter:women:ro --note "$NAME at the bus station" >/dev/null
for _ in $(seq 1 100); do
	grep -q '^data: ' "$work/sa" && break
	sleep 0.02
done
t1=$(date +%s%N)
grep -q '^data: .*offer' "$work/sa" || fail "no offer on shelter-a's stream: $(cat "$work/sa")"
[ $(((t1 - t0) / 1000000)) -lt 1500 ] || fail "the offer took $(((t1 - t0) / 1000000)) ms"
echo "events_node_test: the offer on the stream $(((t1 - t0) / 1000000)) ms after the referral call began"
grep -q '^id: [0-9][0-9]*$' "$work/sa" || fail "no id line: $(cat "$work/sa")"
for secret in "$subject" Sentinel Ioana "bus station" "+40 700"; do
	! grep -qF -- "$secret" "$work/sa" || fail "the stream holds '$secret'"
done
sleep 0.6
! grep -q '^data: ' "$work/sb" || fail "shelter-b saw shelter-a's event: $(cat "$work/sb")"

# Resuming after the event (Last-Event-ID) gives nothing again; after=0 replays it.
seq=$(sed -n 's/^id: //p' "$work/sa" | tail -n 1)
curl -sS -N --max-time 1.5 -H "Authorization: Bearer $sa_admin" -H "Last-Event-ID: $seq" \
	"$url/events?after=0" >"$work/resume" 2>/dev/null || true
! grep -q '^data: ' "$work/resume" || fail "Last-Event-ID $seq replayed: $(cat "$work/resume")"
curl -sS -N --max-time 1.5 -H "Authorization: Bearer $sa_admin" "$url/events?after=0" \
	>"$work/replay" 2>/dev/null || true
grep -q "^id: $seq\$" "$work/replay" || fail "after=0 did not replay $seq: $(cat "$work/replay")"

# The shelter accepts; the operator erases the subject: the provider that has her hears the
# consent is gone, on a stream its admin opened after the offer, and the holder that its
# subject was erased (neither hears anything of her).
stream sa2 -H "Authorization: Bearer $sa_admin" -H "Last-Event-ID: $seq"
stream na -H "Authorization: Bearer $na_admin"
offer=$(sed -n 's/^data: .*"target":"\(off-[0-9a-f]*\)".*/\1/p' "$work/sa" | head -n 1)
as shelter-a offer accept "$offer" >/dev/null || fail "shelter-a cannot accept $offer"
op subject erase "$subject" >/dev/null || fail "the operator cannot erase the subject"
for _ in $(seq 1 100); do
	grep -q 'CONSENT_WITHDRAWN' "$work/sa2" && break
	sleep 0.02
done
grep -q '^data: .*"kind":"CONSENT_WITHDRAWN".*"orgId":"shelter-a"' "$work/sa2" ||
	fail "the provider did not hear of the erasure: $(cat "$work/sa2")"
for _ in $(seq 1 50); do
	grep -q 'SUBJECT_ERASED' "$work/na" && break
	sleep 0.02
done
grep -q '^data: .*"kind":"SUBJECT_ERASED".*"orgId":"ngo-a"' "$work/na" ||
	fail "the holder did not hear of the erasure: $(cat "$work/na")"
for secret in "$subject" Sentinel Ioana; do
	! grep -qF -- "$secret" "$work/sa2" "$work/na" || fail "a stream holds '$secret'"
done

# A ninth stream of one organisation is refused (shelter-b has one open).
for i in 1 2 3 4 5 6 7; do
	stream sb$i -H "Authorization: Bearer $sb_admin"
done
sleep 0.7
[ "$(status -H "Authorization: Bearer $sb_admin" "$url/events")" = 503 ] ||
	fail "a ninth stream of shelter-b: not 503"
for i in 1 2 3 4 5 6 7; do
	grep -q '^HTTP/1.1 200' "$work/sb$i.head" || fail "stream sb$i: $(cat "$work/sb$i.head")"
done

# Logout ends the viewer's stream within a poll.
HAVEN_SESSION_FILE=$work/sess-sa-viewer op logout >/dev/null
sapid=${pids[0]}
for _ in $(seq 1 50); do
	kill -0 "$sapid" 2>/dev/null || break
	sleep 0.05
done
! kill -0 "$sapid" 2>/dev/null || fail "the stream stayed open after logout"
grep -q '^event: end' "$work/sa" || fail "no end event: $(cat "$work/sa")"
[ "$(status -H "Cookie: haven_session=$sa_viewer" "$url/events")" = 401 ] ||
	fail "a logged-out session: not 401"
echo "events_node_test: ok"
