#!/usr/bin/env bash
# e2e_test.sh - the quickstart's scenario with haven-capacity, haven-consent and haven-referral
# as three processes over one data directory, partners over mutual TLS with real certificates,
# and crashes: haven-referral is killed (SIGKILL) in the middle of a burst of referrals and
# restarted, haven-capacity is killed while the others run and restarted. After each step the
# store must be consistent: every acknowledged referral exists exactly once, one referral per
# idempotency key, the places held in capacity are exactly the needs on offer, every consent
# is still there, the audit chain verifies, and available/held stay within their bounds.
#
#   tests/e2e/e2e_test.sh HAVEN_CAPACITY HAVEN_CONSENT HAVEN_REFERRAL HAVEN_CLI SOURCE_DIR
#
# Data in a fresh directory under $HAVEN_TEST_TMP (else $TMPDIR or /tmp), removed at exit with
# every process the test started. TLS ports are chosen at random in 10000..19999 (below the
# kernel's ephemeral range, apart from rpc_it's) and another is tried when a service cannot
# listen, so that runs in parallel do not collide. Needs bash, coreutils, sed, awk and
# openssl (deploy/pki.sh); ss is used when present. Exit 0 when every check passed.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) fails the test too

if [ $# -ne 5 ]; then
	echo "usage: e2e_test.sh HAVEN_CAPACITY HAVEN_CONSENT HAVEN_REFERRAL HAVEN_CLI SOURCE_DIR" >&2
	exit 64
fi
declare -A bin=([capacity]=$1 [consent]=$2 [referral]=$3)
cli=$4
src=$5

BURST=40    # referrals created in the crash burst
WORKERS=4   # clients creating them at once
KILL_AT=12  # haven-referral is killed once this many were acknowledged

declare -A pid=()   # service -> pid of its process
declare -A port=()  # service -> its tls+tcp:// port
others=()           # other background processes of the test (burst clients, the monitor)
work=""
started=$(date +%s)

# ---- cleanup: every process the test started, and its directory -----------------------------

# Stops a process first (so that it starts nothing new), then its children, then kills it.
kill_tree() {
	local p=$1 c
	kill -STOP "$p" 2>/dev/null || return 0
	for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
		kill_tree "$c"
	done
	kill -KILL "$p" 2>/dev/null || true
}

cleanup() {
	local rc=$? p f
	set +e
	trap - EXIT
	for p in "${others[@]}" "${pid[@]}"; do
		kill_tree "$p"
	done
	wait 2>/dev/null
	if [ "$rc" -ne 0 ] && [ -n "$work" ] && [ -d "$work/logs" ]; then
		for f in "$work"/logs/*.log; do
			[ -f "$f" ] || continue
			echo "---- last lines of $(basename "$f")" >&2
			tail -n 30 "$f" >&2
		done
	fi
	if [ -n "$work" ]; then
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '== %s\n' "$*"; }
ok() { printf 'ok   %3ds  %s\n' $(($(date +%s) - started)) "$*"; }
fail() {
	printf 'FAIL %s\n' "$*" >&2
	exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

base=${HAVEN_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
work=$(mktemp -d "$base/e2e.XXXXXX")
# ipc:// paths must fit in a sockaddr_un (107 bytes): DATA/run/referral-events.sock.
if [ $((${#work} + 35)) -gt 100 ]; then
	rmdir "$work"
	work=$(mktemp -d /tmp/haven-e2e.XXXXXX)
fi
chmod 700 "$work"
data=$work/data
run=$data/run
pki=$work/pki
burst=$work/burst
mkdir -p "$work/logs" "$burst"
mkdir -m 700 "$data"
: >"$work/acked"      # "idempotency-key referral-id" of every create the node acknowledged
: >"$work/consents"   # "subject consent-id" of every consent granted
: >"$work/violations" # capacity figures out of bounds, as the monitor saw them
: >"$work/samples"

# ---- calling the node ----------------------------------------------------------------------

# The operator, over a service's own ipc:// socket.
op() {
	local s=$1
	shift
	"$cli" --url "ipc://$run/$s.sock" "$@"
}
# An organisation over mutual TLS to a service, logged in with its key.
as() {
	local s=$1 org=$2
	shift 2
	"$cli" --url "tls+tcp://localhost:${port[$s]}" --ca "$pki/ca.pem" --cert "$pki/$org.pem" \
		--key "$pki/$org.key" --org "$org" "$@"
}
# Runs a command that must succeed and prints its standard output.
must() {
	local rc=0
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	if [ "$rc" -ne 0 ]; then
		fail "exit $rc from: $*"$'\n'"$(cat "$work/err")"
	fi
	cat "$work/out"
}
# Runs a command that must fail with exit code $1 (a gRPC status code).
must_fail() {
	local want=$1 rc=0
	shift
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "expected exit $want, got $rc from: $*"$'\n'"$(cat "$work/out" "$work/err")"
	fi
}

# The CLI prints JSON indented, one member a line, keys sorted: sed and awk read it.
jstr() { sed -n "s/^ *\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }
jnum() { sed -n "s/^ *\"$1\": \(-\{0,1\}[0-9][0-9]*\),\{0,1\}\$/\1/p" | head -n 1; }

# `referral list --json` (or one referral) -> one line per need:
#   referral key state service provider offer type
# (keys are sorted: a referral's id comes before its idempotency_key and its needs; in a need,
# offer_id, provider_org, service_id and state come before type; events have none of these
# but offer_id, and come before the needs; "" is printed as -).
needs_of() {
	awk '
	function val(s) { sub(/^[^:]*: */, "", s); sub(/,$/, "", s); gsub(/"/, "", s); return s == "" ? "-" : s }
	/^ *"id": "ref-/         { ref = val($0) }
	/^ *"idempotency_key": / { key = val($0) }
	/^ *"offer_id": /        { off = val($0) }
	/^ *"provider_org": /    { prov = val($0) }
	/^ *"service_id": /      { svc = val($0) }
	/^ *"state": /           { st = val($0) }
	/^ *"type": /            { print ref, key, st, svc, prov, off, val($0) }
	'
}
# `capacity find --json` -> one line per service: id available held maximum.
views_of() {
	awk '
	function val(s) { sub(/^[^:]*: */, "", s); sub(/,$/, "", s); gsub(/"/, "", s); return s }
	/^ *"available": / { a = val($0) }
	/^ *"held": /      { h = val($0) }
	/^ *"id": /        { id = val($0) }
	/^ *"maximum": /   { print id, a, h, val($0) }
	'
}

# ---- starting the services -------------------------------------------------------------------

pick_port() {
	local p i used
	for i in $(seq 1 100); do
		p=$((10000 + RANDOM % 10000))
		used=" ${port[*]} "
		case "$used" in *" $p "*) continue ;; esac
		if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
			continue
		fi
		echo "$p"
		return 0
	done
	echo $((10000 + RANDOM % 10000))
}

# Starts a service on its ipc:// socket and on tls+tcp:// (its old port first when it had one,
# another when that one is taken) and waits until it answers health on both.
start_service() {
	local name=$1 log=$work/logs/$1.log p off tries i
	for tries in $(seq 1 10); do
		p=${port[$name]:-}
		if [ -z "$p" ] || [ "$tries" -gt 1 ]; then
			p=$(pick_port)
		fi
		off=$(stat -c %s "$log" 2>/dev/null || echo 0)
		"${bin[$name]}" --data "$data" --listen "ipc://$run/$name.sock" \
			--listen "tls+tcp://127.0.0.1:$p" --tls-ca "$pki/ca.pem" \
			--tls-cert "$pki/server.pem" --tls-key "$pki/server.key" >>"$log" 2>&1 &
		pid[$name]=$!
		port[$name]=$p
		for i in $(seq 1 300); do
			kill -0 "${pid[$name]}" 2>/dev/null || break
			if "$cli" --url "ipc://$run/$name.sock" --timeout 2000 health >/dev/null 2>&1; then
				# Anyone with a certificate of the node's CA may ask for health.
				must "$cli" --url "tls+tcp://localhost:$p" --ca "$pki/ca.pem" \
					--cert "$pki/fairwork-ngo.pem" --key "$pki/fairwork-ngo.key" health >/dev/null
				ok "haven-$name is up (pid ${pid[$name]}, ipc and tls+tcp://127.0.0.1:$p)"
				return 0
			fi
			sleep 0.1
		done
		if kill -0 "${pid[$name]}" 2>/dev/null; then
			fail "haven-$name does not answer health within 30 s"
		fi
		wait "${pid[$name]}" 2>/dev/null || true
		if tail -c +$((off + 1)) "$log" | grep -q 'cannot listen on tls+tcp'; then
			say "port $p is taken; haven-$name tries another"
			continue
		fi
		fail "haven-$name stopped at start (log: $log)"
	done
	fail "haven-$name: no free port in 10 tries"
}

# SIGKILL: no clean shutdown, no chance to finish a transaction.
crash() {
	local name=$1
	kill -KILL "${pid[$name]}"
	wait "${pid[$name]}" 2>/dev/null || true
	ok "haven-$name killed with SIGKILL"
}

# SIGTERM: in-flight calls finish, the store closes; the exit code must be 0.
stop_service() {
	local name=$1 rc=0
	kill -TERM "${pid[$name]}"
	wait "${pid[$name]}" || rc=$?
	unset "pid[$name]"
	[ "$rc" -eq 0 ] || fail "haven-$name exited with $rc after SIGTERM"
	ok "haven-$name stopped cleanly"
}

# ---- the consistency checks ------------------------------------------------------------------

declare -A base=()  # service -> available + places confirmed (accepted offers) so far
services=(svc-zwb-bed svc-ams-bed svc-nn-bed svc-rdam-law)
providers=(safehouse-zwb shelter-ams shelter-nn legalaid-rdam)
expect_refs=0

# Fetches every referral of the referrer and every service's figures.
snapshot() {
	needs=$(must as referral fairwork-ngo --json referral list | needs_of)
	views=$(must op capacity --json capacity find | views_of)
}

count_needs() { # STATE-REGEX [SERVICE]
	awk -v st="^($1)\$" -v s="${2:-}" '$3 ~ st && (s == "" || $4 == s)' <<<"$needs" | wc -l
}

check_consistent() {
	local label=$1 dup n got svc line a h m offered confirmed want have subject
	snapshot
	# Referrals: exactly the ones asked for, one per idempotency key, each acknowledged one as
	# it was acknowledged.
	n=$(awk '{ print $1 }' <<<"$needs" | sort -u | wc -l)
	[ "$n" -eq "$expect_refs" ] || fail "$label: $n referrals, expected $expect_refs"
	dup=$(awk '{ print $1, $2 }' <<<"$needs" | sort -u | awk '{ print $2 }' | sort | uniq -d)
	[ -z "$dup" ] || fail "$label: more than one referral for idempotency key(s): $dup"
	got=$(awk 'NR == FNR { ref[$2] = $1; next } ref[$1] != $2 { print $1, $2, "->", ref[$1] }' \
		- "$work/acked" <<<"$needs")
	[ -z "$got" ] || fail "$label: keys answered with another referral than the node has (key answered -> now):"$'\n'"$got"
	# Capacity: every hold is an offered need and the other way round; every accepted offer
	# took one place; 0 <= held <= available <= maximum.
	for svc in "${services[@]}"; do
		line=$(grep "^$svc " <<<"$views" || true)
		[ -n "$line" ] || fail "$label: no service $svc in capacity find"
		read -r _ a h m <<<"$line"
		if [ "$h" -lt 0 ] || [ "$a" -lt "$h" ] || [ "$m" -lt "$a" ]; then
			fail "$label: $svc out of bounds: available $a, held $h, maximum $m"
		fi
		offered=$(count_needs offered "$svc")
		confirmed=$(count_needs 'accepted|placed|completed' "$svc")
		[ "$h" -eq "$offered" ] ||
			fail "$label: $svc holds $h places, but $offered needs are offered there"
		[ $((a + confirmed)) -eq "${base[$svc]}" ] ||
			fail "$label: $svc has $a available and $confirmed placements, expected ${base[$svc]} in all"
	done
	# Offers: the providers' open offers are exactly the offered needs' offers.
	want=$(awk '$3 == "offered" { print $6 }' <<<"$needs" | sort)
	have=$(for p in "${providers[@]}"; do
		must as referral "$p" --json offer list --open | jstr_all_offers
	done | sort)
	[ "$want" = "$have" ] || fail "$label: open offers differ from offered needs:"$'\n'"needs: $want"$'\n'"offers: $have"
	# Consents: every one granted is there, once.
	for subject in $(awk '{ print $1 }' "$work/consents" | sort -u); do
		want=$(awk -v s="$subject" '$1 == s { print $2 }' "$work/consents" | sort)
		have=$(must as consent fairwork-ngo --json consent list "$subject" |
			sed -n 's/^    "id": "\([0-9a-f]*\)".*/\1/p' | sort)
		[ "$want" = "$have" ] || fail "$label: consents of subject $subject: expected [$want], found [$have]"
	done
	must op consent audit verify >/dev/null
	ok "$label: $expect_refs referrals, one per key; holds = offered needs ($(count_needs offered)); $(wc -l <"$work/consents") consents; audit chain intact"
}
jstr_all_offers() { sed -n 's/^ *"id": "\(off-[^"]*\)".*/\1/p'; }

held_of() { must op capacity --json service show "$1" | jnum held; }

# ---- 1. PKI and the three services -----------------------------------------------------------

say "a PKI: node CA, server certificate for localhost, one client certificate per partner"
orgs=(fairwork-ngo safehouse-zwb shelter-ams shelter-nn legalaid-rdam municipality-rdam)
{
	"$src/deploy/pki.sh" "$pki" ca
	"$src/deploy/pki.sh" "$pki" server localhost
	for o in "${orgs[@]}"; do
		"$src/deploy/pki.sh" "$pki" client "$o"
	done
} >"$work/logs/pki.log" 2>&1 || fail "deploy/pki.sh failed: $(cat "$work/logs/pki.log")"

# One after the other: the first start of an empty data directory makes the keys (see the report of issue 6 on starting them at once).
say "haven-capacity, haven-consent and haven-referral on one data directory"
start_service capacity
start_service consent
start_service referral

# ---- 2. the quickstart's scenario, each call to the process that serves it -------------------

say "the demo network (operator over ipc to haven-capacity)"
reg() { must op capacity org register "$1" --name "$2" --role "$3" --region "$4" --cert "$pki/$1.pem" >/dev/null; }
reg fairwork-ngo "FairWork outreach" referrer Rotterdam
reg safehouse-zwb "Safe House Zeeland-West-Brabant" provider Zeeland-West-Brabant
reg shelter-ams "Shelter Amsterdam" provider Amsterdam
reg shelter-nn "Shelter Noord" provider Noord-Nederland
reg legalaid-rdam "Legal Aid Rotterdam" provider Rotterdam
reg municipality-rdam "Municipality of Rotterdam" municipality Rotterdam
svc() { must op capacity service register --id "$@" >/dev/null; }
svc svc-zwb-bed --org safehouse-zwb --type shelter --region Zeeland-West-Brabant \
	--population women,families --languages nl,en,ro --total 6 --available 2 \
	--contact "intake desk 0800-0001" --specialisation labour
svc svc-ams-bed --org shelter-ams --type shelter --region Amsterdam \
	--population women --languages nl,en --total 10 --available 3 --contact "intake desk 0800-0002"
svc svc-nn-bed --org shelter-nn --type shelter --region Noord-Nederland \
	--population women,men --languages nl --total 16 --available 4 --contact "intake desk 0800-0003"
svc svc-rdam-law --org legalaid-rdam --type legal-aid --region Rotterdam \
	--population women,men,minors --languages nl,en,ro --total 20 --available 5 \
	--contact "legal desk 0800-0004"
base=([svc-zwb-bed]=2 [svc-ams-bed]=3 [svc-nn-bed]=4 [svc-rdam-law]=5)
ok "6 partners and 4 services registered"

# A subject with consent to be referred and to share with the provider that accepts (consent
# process, the referrer over TLS). Prints the subject id.
new_subject() {
	local subject consent
	subject=$(must as consent fairwork-ngo subject create --name "Demo Person" --language ro \
		--contact "via outreach worker")
	consent=$(must as consent fairwork-ngo --json consent grant "$subject" \
		--purpose referral,share-with-provider --accepting-provider --category identity,contact \
		--given-by subject --method verbal-with-interpreter --language ro | jstr id)
	[ -n "$consent" ] || fail "consent grant printed no id"
	echo "$subject $consent" >>"$work/consents"
	echo "$subject"
}
# referral create as the referrer over TLS; records the acknowledged id. The reply (JSON) is
# left in $created, the id in $created_id.
create_referral() {
	local key=$1
	shift
	created=$(must as referral fairwork-ngo --json referral create --key "$key" "$@")
	created_id=$(jstr id <<<"$created")
	[ -n "$created_id" ] || fail "referral create printed no id"
	echo "$key $created_id" >>"$work/acked"
	expect_refs=$((expect_refs + 1))
}

say "fairwork-ngo records a person and her consent (haven-consent), refers her (haven-referral)"
subject=$(new_subject)
create_referral e2e-walk --subject "$subject" --urgency immediate --exploitation labour \
	--need shelter:women:ro --need legal-aid:women:ro --exclude Amsterdam \
	--note "found during an inspection"
ref=$created_id
walk=$(needs_of <<<"$created")
[ "$(awk '$3 == "offered" { print $4 }' <<<"$walk" | sort | tr '\n' ' ')" = "svc-rdam-law svc-zwb-bed " ] ||
	fail "the walk's needs are not offered to svc-zwb-bed and svc-rdam-law: $walk"
ok "referral $ref: shelter offered in Zeeland-West-Brabant (Amsterdam excluded), lawyer in Rotterdam"
check_consistent "after the referral"

say "the providers accept their offers over their own TLS identities"
offer=$(must as referral safehouse-zwb --json offer list --open | jstr_all_offers | head -n 1)
law=$(must as referral legalaid-rdam --json offer list --open | jstr_all_offers | head -n 1)
if [ -z "$offer" ] || [ -z "$law" ]; then fail "the providers see no open offers"; fi
must as referral safehouse-zwb offer accept "$offer" >/dev/null
must as referral legalaid-rdam offer accept "$law" >/dev/null
ok "offers $offer and $law accepted"

say "the accepting shelter reads what consent covers (haven-consent asks the referral tables)"
out=$(must as consent safehouse-zwb subject show "$subject")
grep -q '^name *Demo Person$' <<<"$out" || fail "safehouse-zwb was shown no name:"$'\n'"$out"
must_fail 7 as consent shelter-nn subject show "$subject"
ok "safehouse-zwb may read the subject; shelter-nn is refused (PERMISSION_DENIED)"

say "she arrives: placed"
must as referral safehouse-zwb placement placed "$offer" >/dev/null
state=$(must as referral fairwork-ngo --json referral show "$ref" | needs_of | awk '$4 == "svc-zwb-bed" { print $3 }')
[ "$state" = placed ] || fail "the shelter need is '$state', not placed"
ok "the shelter need is placed"

say "the municipality sees numbers only"
must as capacity municipality-rdam capacity summary --region Rotterdam >/dev/null
# Statistics cover finished ISO weeks and months (Europe/Amsterdam) only: the week before last answers,
# this week, in which the referral was made, is refused (FAILED_PRECONDITION).
must as referral municipality-rdam stats --period "$(TZ=Europe/Amsterdam date -d "$(date +%Y-%m-15) -1 month" +%Y-%m)" >/dev/null
must_fail 9 as referral municipality-rdam stats --period "$(TZ=Europe/Amsterdam date +%Y-%m)"
must_fail 7 as referral municipality-rdam referral show "$ref"
must_fail 7 as consent municipality-rdam subject show "$subject"
ok "summary and last week's statistics answered; this week, the referral and the person refused"
out=$(must op consent audit show --subject "$subject")
grep -q 'safehouse-zwb .*Consent/GetSubject .* OK *$' <<<"$out" ||
	fail "the audit log has no entry for safehouse-zwb reading the subject:"$'\n'"$out"
ok "the audit log shows who read her data"
# A backup copies every record: it is an access, recorded before the copy is made (so the
# backup holds its own record).
must op consent admin backup "$work/backup-audited" >/dev/null
out=$(must op consent audit show)
grep -q 'Admin/Backup .* OK *$' <<<"$out" ||
	fail "the audit log has no entry for the backup:"$'\n'"$(tail -n 5 <<<"$out")"
ok "a backup is in the audit log"
check_consistent "after the walk"

say "a withdrawal in haven-consent reaches haven-referral (pub/sub over ipc)"
wsubject=$(new_subject)
create_referral e2e-withdrawn --subject "$wsubject" --urgency planned --exploitation labour \
	--need legal-aid:women
wref=$created_id
woffer=$(awk '$3 == "offered" { print $6 }' <<<"$(needs_of <<<"$created")")
[ -n "$woffer" ] || fail "referral $wref has no open offer to withdraw"
wprov=$(awk '$3 == "offered" { print $5 }' <<<"$(needs_of <<<"$created")")
# Both sides' alert cursors before the withdrawal.
prov_seen=$(must as referral "$wprov" --json alerts watch | jnum cursor)
ngo_seen=$(must as referral fairwork-ngo --json alerts watch | jnum cursor)
wconsent=$(awk -v s="$wsubject" '$1 == s { print $2 }' "$work/consents")
must as consent fairwork-ngo consent withdraw "$wconsent" >/dev/null
for i in $(seq 1 100); do
	out=$(must as referral fairwork-ngo --json referral show "$wref")
	if grep -q '"reason": "consent withdrawn"' <<<"$out"; then
		break
	fi
	[ "$i" -lt 100 ] || fail "referral $wref shows no consent withdrawal 10 s after it"
	sleep 0.1
done
[ "$(needs_of <<<"$out" | awk '{ print $3 }')" = cancelled ] ||
	fail "the need of referral $wref was not cancelled by the withdrawal: $(needs_of <<<"$out")"
ok "referral $wref records the withdrawal; its need is cancelled"
# The open offer is gone (its place released: check_consistent below) and both sides are told.
must as referral "$wprov" --json offer list --open | jstr_all_offers | grep -qx "$woffer" &&
	fail "offer $woffer is still open after the withdrawal"
out=$(must as referral "$wprov" alerts watch --after "$prov_seen")
grep -q "CONSENT_WITHDRAWN .*#/offers/$woffer\$" <<<"$out" ||
	fail "$wprov was not told that offer $woffer was withdrawn:"$'\n'"$out"
out=$(must as referral fairwork-ngo alerts watch --after "$ngo_seen")
grep -q "CONSENT_WITHDRAWN .*#/referrals/$wref\$" <<<"$out" ||
	fail "fairwork-ngo was not told that referral $wref lost its consent:"$'\n'"$out"
ok "offer $woffer withdrawn; $wprov and fairwork-ngo told (CONSENT_WITHDRAWN)"
must_fail 9 as referral fairwork-ngo referral create --key e2e-after-withdrawal --subject "$wsubject" \
	--urgency planned --exploitation labour --need legal-aid:women
ok "no new referral for her without consent (FAILED_PRECONDITION)"
check_consistent "after the withdrawal"

# ---- 3. SIGKILL haven-referral in the middle of a burst of referrals -------------------------

say "$BURST referrals from $WORKERS clients at once; haven-referral is killed after $KILL_AT answers"
# It stays down for longer than a client's timeout (2 s), so that the calls in flight and the
# next ones fail, and comes back while the clients still run.
subjects=()
for i in 1 2 3 4 5; do
	subjects+=("$(new_subject)")
done
run_id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
keys=()
for i in $(seq 0 $((BURST - 1))); do
	keys+=("e2e-burst-$run_id-$i")
done

# Samples every service's figures while the crashes happen, until $work/stop-monitor exists.
monitor() {
	local v
	while [ ! -e "$work/stop-monitor" ]; do
		if v=$("$cli" --url "ipc://$run/capacity.sock" --timeout 2000 --json capacity find 2>/dev/null); then
			views_of <<<"$v" | awk '$3 < 0 || $2 < $3 || $4 < $2 || $2 < 0' >>"$work/violations"
			echo . >>"$work/samples"
		fi
		sleep 0.2
	done
}
monitor &
monitor_pid=$!
others+=("$monitor_pid")

burst_args() { # KEY-INDEX
	echo --subject "${subjects[$(($1 % ${#subjects[@]}))]}" --urgency urgent --exploitation labour \
		--need shelter:women --need legal-aid:women
}
burst_client() {
	local w=$1 i rc
	for ((i = w; i < BURST; i += WORKERS)); do
		rc=0
		# shellcheck disable=SC2046
		as referral fairwork-ngo --timeout 2000 --json referral create --key "${keys[$i]}" \
			$(burst_args "$i") >"$burst/${keys[$i]}.out" 2>"$burst/${keys[$i]}.err" || rc=$?
		echo "$rc" >"$burst/${keys[$i]}.rc"
	done
}
clients=()
for w in $(seq 0 $((WORKERS - 1))); do
	burst_client "$w" &
	clients+=($!)
	others+=($!)
done
t0=$(now_ms)
while [ "$(grep -lx 0 "$burst"/*.rc 2>/dev/null | wc -l)" -lt "$KILL_AT" ]; do
	[ $(($(now_ms) - t0)) -lt 60000 ] || fail "fewer than $KILL_AT referrals answered within 60 s"
	sleep 0.02
done
crash referral
kill_ms=$(now_ms)
for f in "$burst"/*.rc; do
	basename "$f" .rc
done >"$work/before-kill"
at_kill=$(wc -l <"$work/before-kill")
[ "$at_kill" -lt "$BURST" ] || fail "the burst ended before the kill; nothing was tested"
ok "$at_kill of $BURST creates had returned when haven-referral was killed"
sleep 2.5
start_service referral
for p in "${clients[@]}"; do
	wait "$p" || fail "a burst client failed"
done
expect_refs=$((expect_refs + BURST))

# Every create: acknowledged (recorded), or failed with UNAVAILABLE / DEADLINE_EXCEEDED only.
# An answer after the restart for a referral made before the kill: the node committed it, the
# first answer was lost with the process, and the client's retry was answered by the key.
failed=()
resent=0
declare -A codes=()
for i in $(seq 0 $((BURST - 1))); do
	key=${keys[$i]}
	rc=$(cat "$burst/$key.rc")
	if [ "$rc" -eq 0 ]; then
		id=$(jstr id <"$burst/$key.out")
		[ -n "$id" ] || fail "create $key succeeded without an id"
		echo "$key $id" >>"$work/acked"
		if ! grep -qx "$key" "$work/before-kill" &&
			[ "$(jnum created_ms <"$burst/$key.out")" -lt "$kill_ms" ]; then
			resent=$((resent + 1))
		fi
	else
		case "$rc" in
		4 | 14) ;;
		*) fail "create $key failed with exit $rc, not UNAVAILABLE or DEADLINE_EXCEEDED: $(cat "$burst/$key.err")" ;;
		esac
		codes[$rc]=$((${codes[$rc]:-0} + 1))
		failed+=("$i")
	fi
done
summary=""
for rc in "${!codes[@]}"; do
	summary+=" ${codes[$rc]} with exit $rc"
done
ok "$((BURST - ${#failed[@]})) creates acknowledged ($resent made before the kill, answered after it), ${#failed[@]} failed cleanly${summary:+:$summary}"
[ "${#failed[@]}" -gt 0 ] || fail "no create failed: the clients did not see the crash"

say "the failed creates again, with the same idempotency keys"
earlier=0
for i in "${failed[@]}"; do
	key=${keys[$i]}
	# As a client does: retried with the same key while the node is not (yet) answering in
	# time (a loaded machine, the restarted service still catching up); the key makes each
	# retry safe.
	for attempt in 1 2 3 4 5; do
		rc=0
		# shellcheck disable=SC2046
		as referral fairwork-ngo --timeout 10000 --json referral create --key "$key" \
			$(burst_args "$i") >"$work/out" 2>"$work/err" || rc=$?
		case "$rc" in
		0) break ;;
		4 | 14) [ "$attempt" -lt 5 ] || fail "create $key still failed with exit $rc after 5 tries: $(cat "$work/err")" ;;
		*) fail "create $key failed with exit $rc on a retry: $(cat "$work/err")" ;;
		esac
		sleep 1
	done
	out=$(cat "$work/out")
	id=$(jstr id <<<"$out")
	[ -n "$id" ] || fail "create $key succeeded without an id"
	echo "$key $id" >>"$work/acked"
	# Made before the kill: the node committed it, the answer was lost.
	[ "$(jnum created_ms <<<"$out")" -ge "$kill_ms" ] || earlier=$((earlier + 1))
done
ok "${#failed[@]} retried; $earlier of them had been committed before the kill and came back as they were"
check_consistent "after the crash of haven-referral"
n=$(grep -c '"msg":"ready' "$work/logs/referral.log")
[ "$n" -eq 2 ] || fail "haven-referral started $n times, not twice"

# ---- 4. SIGKILL haven-capacity while the others run ------------------------------------------

# Raises a service's figure by one place as its provider (over TLS to haven-capacity) and
# waits until haven-referral offered it to a waiting need; $took is the milliseconds it took.
free_one_place() {
	local svc=$1 org=$2 a h h2 t
	out=$(must op capacity --json service show "$svc")
	a=$(jnum available <<<"$out")
	h=$(jnum held <<<"$out")
	t=$(now_ms)
	must as capacity "$org" capacity set "$svc" $((a + 1)) >/dev/null
	base[$svc]=$((${base[$svc]} + 1))
	while :; do
		h2=$(held_of "$svc")
		[ "$h2" -le "$h" ] || break
		[ $(($(now_ms) - t)) -lt 15000 ] || fail "a place freed in $svc was not offered within 15 s"
		sleep 0.05
	done
	took=$(($(now_ms) - t))
}
# Three places, one after the other: at least one is offered within 2 s when haven-referral
# hears CapacityChanged (its timer alone routes every 5 s).
free_places() {
	local label=$1 i fast=0 all=""
	snapshot
	[ "$(awk '$3 == "waiting" && $7 == "shelter"' <<<"$needs" | wc -l)" -ge 3 ] ||
		fail "$label: fewer than 3 shelter needs waiting"
	for i in 1 2 3; do
		free_one_place svc-nn-bed shelter-nn
		all+=" ${took}ms"
		[ "$took" -gt 2000 ] || fast=$((fast + 1))
		sleep 0.$((RANDOM % 9 + 1))
	done
	[ "$fast" -gt 0 ] ||
		fail "$label: freed places were offered only after$all: haven-referral does not hear haven-capacity's CapacityChanged"
	ok "$label: 3 freed places offered to waiting needs after$all"
}

say "places freed in haven-capacity are offered by haven-referral"
free_places "before the crash"
check_consistent "after routing freed places"

say "haven-capacity killed while haven-consent and haven-referral run"
crash capacity
# A call to it fails with a status within its timeout (2 s), it does not hang.
fails_cleanly() {
	local what=$1 t rc=0
	shift
	t=$(now_ms)
	timeout 30 "$@" >/dev/null 2>"$work/err" || rc=$?
	[ "$rc" -ne 124 ] || fail "$what hung with haven-capacity down"
	[ "$rc" -eq 14 ] || [ "$rc" -eq 4 ] ||
		fail "$what with haven-capacity down: exit $rc, not UNAVAILABLE or DEADLINE_EXCEEDED: $(cat "$work/err")"
	ok "$what failed cleanly with exit $rc after $(($(now_ms) - t)) ms"
}
fails_cleanly "the operator's capacity show" "$cli" --url "ipc://$run/capacity.sock" \
	--timeout 2000 capacity show svc-nn-bed
fails_cleanly "shelter-nn's capacity show" "$cli" --url "tls+tcp://localhost:${port[capacity]}" \
	--ca "$pki/ca.pem" --cert "$pki/shelter-nn.pem" --key "$pki/shelter-nn.key" --org shelter-nn \
	--timeout 2000 capacity show svc-nn-bed
s=$(new_subject)
create_referral "e2e-capacity-down-$run_id" --subject "$s" --urgency immediate \
	--exploitation sexual --need shelter:women
ok "haven-referral creates and routes referrals while haven-capacity is down"
must as referral shelter-nn offer list --open >/dev/null
must as consent fairwork-ngo consent check "$s" --purpose referral >/dev/null
ok "haven-referral and haven-consent serve their partners"
start_service capacity
sleep 0.5 # haven-referral's subscription dials again (nng: every 100 ms)
check_consistent "after the crash of haven-capacity"
free_places "after haven-capacity restarted"

touch "$work/stop-monitor"
wait "$monitor_pid" || fail "the monitor failed"
[ -s "$work/samples" ] || fail "the monitor never read the figures"
[ ! -s "$work/violations" ] || fail "capacity figures out of bounds (id available held maximum): $(sort -u "$work/violations")"
ok "$(wc -l <"$work/samples") samples of every service's figures during the crashes, all within 0 <= held <= available <= maximum"
check_consistent "at the end"

# ---- a clean stop, and everything still there after a clean start ----------------------------

say "SIGTERM, then all three again on the same data"
for s in referral consent capacity; do
	stop_service "$s"
done
start_service capacity
start_service consent
start_service referral
check_consistent "after a clean restart"
for s in referral consent capacity; do
	stop_service "$s"
done
if grep -l -e 'Demo Person' -e 'via outreach worker' "$work"/logs/*.log; then
	fail "personal data in a service's log"
fi
ok "no personal data in the services' logs"
say "passed in $(($(date +%s) - started)) s"
