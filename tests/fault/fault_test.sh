#!/usr/bin/env bash
# fault_test.sh - a real haven-node under faults (issue 17; docs/reliability.md):
#
#   fault_test.sh MODE HAVEN_NODE HAVEN_CLI LIBIOFAIL POWERCUT SOURCE_DIR
#
#   crashloop  clients create referrals (idempotency keys), accept offers, set capacity, record
#              subjects and grant and withdraw consent while the node is killed with SIGKILL
#              at a random moment, FAULT_CYCLES times (default 50); after each restart: every
#              acknowledged write is there exactly once, the unacknowledged ones retried with
#              their keys come back once, no place double-booked (held = offered needs,
#              available + accepted = what was given), capacity as last acknowledged, every
#              acknowledged consent and withdrawal there, the audit chain verifies, and the node
#              answered within FAULT_START_MS (default 30000: a loaded CI machine) of its
#              start, measured by the clock.
#   powercut   the same with the store, the keys and the audit checkpoints under iofail.c's
#              undo log: at each kill every write not yet fsynced is rolled back (powercut)
#              before the restart, as a power cut would lose it (FAULT_CYCLES, default 12).
#   iofail     each write, fsync/fdatasync, file creation, rename and mmap of the store, the key
#              files, the audit checkpoint file and a backup fails in turn (EIO, ENOSPC sticky
#              as a full disk, EDQUOT) while a client makes one write of each kind: every call
#              answers 0 or a clear status with a message, the node serves on or stops with an
#              error (never a signal), and after a restart without faults every acknowledged
#              write is there once and the audit chain verifies. A counting run lists the calls
#              first; FAULT_IOFAIL_ALL=1 tries every one of them (the long form), else a sample
#              of each kind (first, second, last).
#
# Prints one "ok" line per cycle or fault and a summary line "fault MODE: ..." with the figures
# docs/reliability.md reports. Data in a fresh directory under $HAVEN_TEST_TMP (else $TMPDIR or
# /tmp), removed at exit with every process the test started (kept when FAULT_KEEP is set, to
# look into). Exit 0 when every check passed.
set -euo pipefail
shopt -s inherit_errexit

if [ $# -ne 6 ]; then
	echo "usage: fault_test.sh crashloop|powercut|iofail HAVEN_NODE HAVEN_CLI LIBIOFAIL POWERCUT SOURCE_DIR" >&2
	exit 64
fi
mode=$1 node=$2 cli=$3 shim=$4 powercut=$5 src=$6
case "$mode" in
crashloop) CYCLES=${FAULT_CYCLES:-50} ;;
powercut) CYCLES=${FAULT_CYCLES:-12} ;;
iofail) CYCLES=0 ;;
*)
	echo "fault_test.sh: unknown mode '$mode'" >&2
	exit 64
	;;
esac
START_MS=${FAULT_START_MS:-30000}
# The shim in a sanitized node: ASan wants its runtime first in the library list.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

node_pid=""
others=()
watcher=""
work=""
started=$(date +%s)
# A client call that runs this long has hung (every call has a deadline of at most 20 s): the
# hang watcher takes its threads' stacks and kills it, so the test fails at once with the
# stacks instead of waiting for ctest's timeout.
HANG_S=${FAULT_HANG_S:-60}

cleanup() {
	local rc=$? p
	set +e
	trap - EXIT
	for p in "${others[@]}" $watcher $node_pid; do
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ -n "$work" ] && [ -s "$work/hangs" ]; then
		echo "---- hung client calls (killed by the hang watcher)" >&2
		cat "$work/hangs" >&2
	fi
	if [ "$rc" -ne 0 ] && [ -n "$work" ] && [ -f "$work/node.log" ]; then
		echo "---- last lines of the node's log" >&2
		tail -n 30 "$work/node.log" >&2
	fi
	if [ -n "$work" ] && [ -n "${FAULT_KEEP:-}" ]; then
		echo "fault_test.sh: kept $work (FAULT_KEEP)" >&2
	elif [ -n "$work" ]; then
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

ok() { printf 'ok   %3ds  %s\n' $(($(date +%s) - started)) "$*"; }
fail() {
	printf 'FAIL %s\n' "$*" >&2
	exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

base=${HAVEN_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
work=$(mktemp -d "$base/fault.XXXXXX")
if [ $((${#work} + 30)) -gt 100 ]; then
	rmdir "$work"
	work=$(mktemp -d /tmp/haven-fault.XXXXXX)
fi
chmod 700 "$work"
data=$work/data
pki=$work/pki
mkdir -m 700 "$data"
: >"$work/acked-refs"     # key referral-id: creates the node acknowledged
: >"$work/acked-accepts"  # offer ids the node acknowledged accepting
: >"$work/acked-consents" # subject consent-id
: >"$work/acked-withdrawn" # consent ids acknowledged withdrawn
: >"$work/bad"            # calls answered with a status a fault must not give

# ---- calling the node ----------------------------------------------------------------------

op() { "$cli" --url "ipc://$data/run/haven.sock" --timeout "${T:-10000}" "$@"; }
as() {
	local org=$1
	shift
	"$cli" --url "tls+tcp://localhost:$port" --ca "$pki/ca.pem" --cert "$pki/$org.pem" \
		--key "$pki/$org.key" --org "$org" --timeout "${T:-10000}" "$@"
}
must() {
	local rc=0
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	[ "$rc" -eq 0 ] || fail "exit $rc from: $*"$'\n'"$(cat "$work/err")"
	cat "$work/out"
}
jstr() { sed -n "s/^ *\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }
# The e2e test's readers of the CLI's JSON (indented, keys sorted): one line per need
#   referral key state service provider offer type
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
# id available held maximum, one line per service
views_of() {
	awk '
	function val(s) { sub(/^[^:]*: */, "", s); sub(/,$/, "", s); gsub(/"/, "", s); return s }
	/^ *"available": / { a = val($0) }
	/^ *"held": /      { h = val($0) }
	/^ *"id": /        { id = val($0) }
	/^ *"maximum": /   { print id, a, h, val($0) }
	'
}
offer_ids() { sed -n 's/^ *"id": "\(off-[^"]*\)".*/\1/p'; }

# hang_watch: in the background, takes the stacks of any client of this test (the CLI, named
# "haven", with this test's directory on its command line) older than $HANG_S s, then kills it.
hang_watch() {
	local pid age cmd
	while sleep 2; do
		for pid in $(pgrep -x haven 2>/dev/null); do
			cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || continue
			[[ "$cmd" == *"$work/"* ]] || continue
			age=$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ') || continue
			[ -n "$age" ] && [ "$age" -ge "$HANG_S" ] || continue
			{
				echo "client $pid ran ${age}s: $cmd"
				if command -v gdb >/dev/null 2>&1; then
					timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt' 2>&1 |
						grep -E '^(Thread|#)'
				fi
			} >>"$work/hangs" 2>&1
			kill -KILL "$pid" 2>/dev/null || true
		done
	done
}
hang_watch &
watcher=$!

# ---- the node --------------------------------------------------------------------------------

port=""
pick_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 10000))
		if ! command -v ss >/dev/null 2>&1 || [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
			break
		fi
	done
	echo "$p"
}

# start_node [ENV=VALUE]...: starts haven-node (with the given environment, e.g. the shim) on
# ipc:// and tls+tcp://, waits until it answers health; returns 1 when the node exited
# instead (its exit code in $node_rc), 0 with the milliseconds it took in $start_took.
start_node() {
	local t0 off
	[ -n "$port" ] || port=$(pick_port)
	for _ in 1 2 3 4 5; do
		t0=$(now_ms)
		off=$(stat -c %s "$work/node.log" 2>/dev/null || echo 0)
		env "$@" "$node" --data-dir "$data" --listen "ipc://$data/run/haven.sock" \
			--listen "tls+tcp://127.0.0.1:$port" --tls-ca "$pki/ca.pem" \
			--tls-cert "$pki/server.pem" --tls-key "$pki/server.key" >>"$work/node.log" 2>&1 &
		node_pid=$!
		while [ $(($(now_ms) - t0)) -le "$START_MS" ]; do
			if ! kill -0 "$node_pid" 2>/dev/null; then
				node_rc=0
				wait "$node_pid" || node_rc=$?
				node_pid=""
				if tail -c +$((off + 1)) "$work/node.log" | grep -q 'cannot listen on tls+tcp'; then
					port=$(pick_port)
					continue 2
				fi
				return 1
			fi
			if T=1000 op health >/dev/null 2>&1; then
				start_took=$(($(now_ms) - t0))
				return 0
			fi
			sleep 0.02
		done
		fail "the node does not answer health within $START_MS ms of its start"
	done
	fail "no free port in 5 tries"
}
kill_node() {
	[ -n "$node_pid" ] || return 0
	kill -KILL "$node_pid" 2>/dev/null || true
	wait "$node_pid" 2>/dev/null || true
	node_pid=""
}
# SIGTERM; $node_rc is its exit code (0: stopped cleanly). A node that has not stopped 60 s
# later has hung in its shutdown: its stacks are shown and the test fails.
stop_node() {
	local t0
	node_rc=0
	[ -n "$node_pid" ] || return 0
	kill -TERM "$node_pid" 2>/dev/null || true
	t0=$(now_ms)
	while kill -0 "$node_pid" 2>/dev/null && [ -z "$(ps -o stat= -p "$node_pid" | grep Z)" ]; do
		if [ $(($(now_ms) - t0)) -gt 60000 ]; then
			{
				echo "the node did not stop within 60 s of SIGTERM"
				timeout 60 gdb -p "$node_pid" -batch -ex 'thread apply all bt' 2>&1 |
					grep -E '^(Thread|#)'
			} >>"$work/hangs" 2>&1
			fail "the node hangs in its shutdown"
		fi
		sleep 0.05
	done
	wait "$node_pid" || node_rc=$?
	node_pid=""
}

# ---- setup: PKI, partners, services, subjects with consent -----------------------------------

orgs=(ngo shelter-a shelter-b clinic)
{
	"$src/deploy/pki.sh" "$pki" ca
	"$src/deploy/pki.sh" "$pki" server localhost
	for o in "${orgs[@]}"; do
		"$src/deploy/pki.sh" "$pki" client "$o"
	done
} >"$work/pki.log" 2>&1 || fail "deploy/pki.sh failed: $(cat "$work/pki.log")"
start_node || fail "the node did not start (exit $node_rc)"
reg() { must op org register "$1" --name "$1" --role "$2" --region "$3" --cert "$pki/$1.pem" >/dev/null; }
reg ngo referrer Rotterdam
reg shelter-a provider Rotterdam
reg shelter-b provider Zeeland-West-Brabant
reg clinic provider Rotterdam
must op service register --id svc-a --org shelter-a --type shelter --region Rotterdam \
	--population women,men --languages nl,en --total 400 --available 30 --contact "desk a" >/dev/null
must op service register --id svc-b --org shelter-b --type shelter --region Zeeland-West-Brabant \
	--population women,men --languages nl,en --total 400 --available 30 --contact "desk b" >/dev/null
must op service register --id svc-med --org clinic --type medical --region Rotterdam \
	--population women,men --total 100 --available 1 --contact "desk c" >/dev/null
declare -A given=([svc-a]=30 [svc-b]=30)
cap_acked=1
subjects=()
for i in 1 2 3; do
	s=$(must as ngo subject create --name "Fault Person $i" --language nl)
	c=$(must as ngo --json consent grant "$s" --purpose referral,share-with-provider \
		--accepting-provider --category identity,contact --given-by subject --method verbal \
		--language nl | jstr id)
	[ -n "$c" ] || fail "consent grant printed no id"
	echo "$s $c" >>"$work/acked-consents"
	subjects+=("$s")
done
ok "node up in ${start_took} ms; 4 partners, 3 services, ${#subjects[@]} subjects with consent"

# ---- the checks ------------------------------------------------------------------------------

# check LABEL: everything acknowledged is there once, and the invariants hold.
check() {
	local label=$1 n dup got svc line a h m offered confirmed want have s c
	needs=$(must as ngo --json referral list | needs_of)
	views=$(must op --json capacity find | views_of)
	n=$(awk '{ print $1 }' <<<"$needs" | sort -u | grep -c . || true)
	want=$(sort -u "$work/acked-refs" | grep -c . || true)
	[ "$n" -eq "$want" ] || fail "$label: $n referrals, $want acknowledged"
	dup=$(awk '{ print $1, $2 }' <<<"$needs" | sort -u | awk '{ print $2 }' | sort | uniq -d)
	[ -z "$dup" ] || fail "$label: more than one referral for key(s) $dup"
	got=$(awk 'NR == FNR { ref[$2] = $1; next } ref[$1] != $2 { print $1, $2, "->", ref[$1] }' \
		- "$work/acked-refs" <<<"$needs")
	[ -z "$got" ] || fail "$label: acknowledged keys answered otherwise now:"$'\n'"$got"
	for svc in svc-a svc-b; do
		line=$(grep "^$svc " <<<"$views" || true)
		read -r _ a h m <<<"$line"
		if [ "$h" -lt 0 ] || [ "$a" -lt "$h" ] || [ "$m" -lt "$a" ]; then
			fail "$label: $svc out of bounds: available $a, held $h, maximum $m"
		fi
		offered=$(awk -v s="$svc" '$3 == "offered" && $4 == s' <<<"$needs" | grep -c . || true)
		confirmed=$(awk -v s="$svc" '$3 ~ /^(accepted|placed|completed)$/ && $4 == s' <<<"$needs" | grep -c . || true)
		[ "$h" -eq "$offered" ] || fail "$label: $svc holds $h places for $offered offered needs"
		[ $((a + confirmed)) -eq "${given[$svc]}" ] ||
			fail "$label: $svc: $a available + $confirmed accepted, ${given[$svc]} given"
	done
	a=$(grep '^svc-med ' <<<"$views" | awk '{ print $2 }')
	case " $cap_acked ${cap_pending:-} " in
	*" $a "*) cap_acked=$a ;;
	*) fail "$label: svc-med has $a available; acknowledged $cap_acked${cap_pending:+, in flight $cap_pending}" ;;
	esac
	cap_pending=""
	want=$(awk '$3 == "offered" { print $6 }' <<<"$needs" | sort)
	have=$( (must as shelter-a --json offer list --open; must as shelter-b --json offer list --open) |
		offer_ids | sort)
	[ "$want" = "$have" ] || fail "$label: open offers differ from offered needs: [$want] [$have]"
	while read -r c; do
		[ -n "$c" ] || continue
		awk -v o="$c" '$6 == o && $3 ~ /^(accepted|placed|completed)$/ { f = 1 } END { exit !f }' \
			<<<"$needs" || fail "$label: acknowledged accept of $c is not there"
	done <"$work/acked-accepts"
	check_consents "$label" "${touched[@]}"
	# A walk of every entry: with a thousand cycles of checks the log holds millions (about 8 s
	# to walk 3.4 million on this machine alone); the usual 10 s is not enough under load.
	T=300000 must op audit verify >/dev/null
}
# check_consents LABEL SUBJECT...: every acknowledged consent of these subjects is there, at
# most one more (a grant in flight at the kill) and every acknowledged withdrawal holds.
check_consents() {
	local label=$1 s list ids extra c
	shift
	for s in "$@"; do
		list=$(must as ngo --json consent list "$s")
		ids=$(sed -n 's/^    "id": "\([0-9a-f]*\)".*/\1/p' <<<"$list" | sort)
		extra=$(comm -13 <(awk -v s="$s" '$1 == s { print $2 }' "$work/acked-consents" | sort) <(echo "$ids"))
		for c in $(awk -v s="$s" '$1 == s { print $2 }' "$work/acked-consents"); do
			grep -qx "$c" <<<"$ids" || fail "$label: acknowledged consent $c of $s is gone"
		done
		[ "$(grep -c . <<<"$extra" || true)" -le 1 ] || fail "$label: unacknowledged consents $extra"
		for c in $(grep -xF -f <(echo "$ids") "$work/acked-withdrawn" || true); do
			awk -v c="$c" '/"id": / { cur = $0 } /"withdrawn_at_ms": [1-9]/ && index(cur, c) { f = 1 }
				END { exit !f }' <<<"$list" || fail "$label: acknowledged withdrawal of $c does not hold"
		done
	done
}

# ---- the workload ---------------------------------------------------------------------------

# A call in the workload: 0 acknowledged; 4 or 14 (the node died or is dying) stop the client;
# anything else is recorded as bad. $1 is the client's name.
wcall() {
	local who=$1 rc=0
	shift
	# A short timeout: a call to the killed node fails soon and the cycle goes on.
	T=2000 "$@" >"$work/$who.out" 2>"$work/$who.err" || rc=$?
	case "$rc" in
	0) return 0 ;;
	4 | 14) return 1 ;;
	16)
		# A sign-in whose Challenge the killed process answered and whose Authenticate
		# the new one got: challenges live in the process (auth.c), so the new one
		# refuses it. The partner signs in again; so does this client, next cycle.
		grep -q '^haven: login: UNAUTHENTICATED' "$work/$who.err" && return 1
		echo "$who: exit $rc from $*: $(head -c 300 "$work/$who.err")" >>"$work/bad"
		return 1
		;;
	*)
		echo "$who: exit $rc from $*: $(head -c 300 "$work/$who.err")" >>"$work/bad"
		return 1
		;;
	esac
}
refer_args() { echo --subject "${subjects[$(($1 % 3))]}" --urgency urgent --exploitation labour --need shelter:women; }
w_refer() {
	local i=0 key
	while [ ! -e "$work/stop" ]; do
		key=fl-$cycle-$i
		echo "$key $i" >"$work/pending-ref"
		# shellcheck disable=SC2046
		wcall refer as ngo --json referral create --key "$key" $(refer_args "$i") || return 0
		echo "$key $(jstr id <"$work/refer.out")" >>"$work/acked-refs"
		rm -f "$work/pending-ref"
		i=$((i + 1))
	done
}
w_accept() {
	local org off
	while [ ! -e "$work/stop" ]; do
		for org in shelter-a shelter-b; do
			wcall accept as "$org" --json offer list --open || return 0
			off=$(offer_ids <"$work/accept.out" | head -n 1)
			[ -n "$off" ] || continue
			wcall accept as "$org" offer accept "$off" || return 0
			echo "$off" >>"$work/acked-accepts"
		done
	done
}
w_capacity() {
	local v
	while [ ! -e "$work/stop" ]; do
		v=$(((RANDOM % 90) + 1))
		echo "$v" >"$work/pending-cap"
		wcall cap as clinic capacity set svc-med "$v" || return 0
		echo "$v" >"$work/acked-cap"
		rm -f "$work/pending-cap"
	done
}
w_consent() {
	local s c
	while [ ! -e "$work/stop" ]; do
		wcall consent as ngo subject create --name "Fault Subject" || return 0
		s=$(cat "$work/consent.out")
		echo "$s" >>"$work/touched"
		wcall consent as ngo --json consent grant "$s" --purpose referral --accepting-provider \
			--category identity --given-by subject --method verbal --language nl || return 0
		c=$(jstr id <"$work/consent.out")
		echo "$s $c" >>"$work/acked-consents"
		wcall consent as ngo consent withdraw "$c" || return 0
		echo "$c" >>"$work/acked-withdrawn"
	done
}

# After a restart: the creates in flight again with their keys (must be answered now, with
# the referral made before the kill when there was one), and what the capacity client had in
# flight noted for the check.
# The tls+tcp:// listener after the restart. libnng 1.5.2 can stop a listener for good when a
# client drops while its connection negotiates (here: the clients killed with the node, or
# retrying into the new one); the node's watchdog (rpc_nng.c, "the listener watchdog") calls
# each listener every 2 s and listens again after 3 failures, so the listener must answer again
# within about 8 s. A first call that gets no answer and a later one that does is such a stall
# recovered (counted; the node logs each time it listens again). No answer over tls+tcp:// for
# three calls of 8 s while ipc:// answers fails the test.
tls_recovered=0
tls_check() {
	local rc=0 t0 attempt
	t0=$(now_ms)
	for attempt in 1 2 3; do
		rc=0
		"$cli" --url "tls+tcp://localhost:$port" --ca "$pki/ca.pem" --cert "$pki/ngo.pem" \
			--key "$pki/ngo.key" --timeout 8000 health >/dev/null 2>"$work/tls.err" || rc=$?
		if [ "$rc" -eq 0 ]; then
			if [ "$attempt" -gt 1 ]; then
				tls_recovered=$((tls_recovered + 1))
				ok "$1: the tls+tcp:// listener had stopped answering; answered again after $(($(now_ms) - t0)) ms"
			fi
			return 0
		fi
		T=3000 op health >/dev/null 2>&1 || fail "$1: neither tls+tcp:// nor ipc:// answers"
	done
	fail "$1: the tls+tcp:// listener does not answer for $(($(now_ms) - t0)) ms while ipc:// does (exit $rc: $(cat "$work/tls.err"))"
}

resolve_pending() {
	local key i rc
	if [ -f "$work/pending-ref" ]; then
		read -r key i <"$work/pending-ref"
		# Patient: on a loaded machine (sanitizers, parallel tests) a sign-in and a create
		# over TLS can take seconds; each try is a fresh sign-in.
		for attempt in 1 2 3 4 5; do
			rc=0
			# shellcheck disable=SC2046
			T=20000 as ngo --json referral create --key "$key" $(refer_args "$i") \
				>"$work/out" 2>"$work/err" || rc=$?
			[ "$rc" -eq 0 ] && break
			[ "$rc" -eq 14 ] || [ "$rc" -eq 4 ] || fail "retry of $key: exit $rc: $(cat "$work/err")"
			[ "$attempt" -lt 5 ] || fail "retry of $key still fails with exit $rc: $(cat "$work/err")"
			sleep 0.5
		done
		echo "$key $(jstr id <"$work/out")" >>"$work/acked-refs"
		rm -f "$work/pending-ref"
		retried=$((retried + 1))
	fi
	if [ -f "$work/acked-cap" ]; then
		cap_acked=$(cat "$work/acked-cap")
		rm -f "$work/acked-cap"
	fi
	cap_pending=""
	if [ -f "$work/pending-cap" ]; then
		cap_pending=$(cat "$work/pending-cap")
		rm -f "$work/pending-cap"
	fi
	touched=()
	if [ -f "$work/touched" ]; then
		mapfile -t touched <"$work/touched"
		rm -f "$work/touched"
	fi
}

# ---- crash loop and power cuts ---------------------------------------------------------------

env=()
crash_cycles() {
	local undo="" max_start=0 total_start=0 cuts="" pids p ms acked0
	retried=0
	touched=("${subjects[@]}")
	if [ "$mode" = powercut ]; then
		undo=$work/undo.log
		env=(LD_PRELOAD="$shim" IOFAIL_UNDO="$undo" IOFAIL_PATH="$data/")
		stop_node
		[ "$node_rc" -eq 0 ] || fail "the node exited with $node_rc on SIGTERM"
		start_node "${env[@]}" || fail "the node under the undo log did not start"
	fi
	check "before the first cycle"
	for cycle in $(seq 1 "$CYCLES"); do
		rm -f "$work/stop"
		acked0=$(wc -l <"$work/acked-refs")
		pids=()
		w_refer & pids+=($!)
		w_accept & pids+=($!)
		w_capacity & pids+=($!)
		w_consent & pids+=($!)
		others=("${pids[@]}")
		ms=$((100 + RANDOM % 1400))
		sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
		kill_node
		touch "$work/stop"
		if [ -n "$undo" ]; then
			cuts=$("$powercut" "$undo") || fail "powercut failed: $cuts"
		fi
		# The clients' calls in flight retry (UNAVAILABLE, with their keys) into the new
		# process, as a partner's client does.
		start_node "${env[@]}" || fail "cycle $cycle: the node did not start again (exit $node_rc)"
		for p in "${pids[@]}"; do
			wait "$p" || fail "a workload client failed"
		done
		others=()
		[ ! -s "$work/bad" ] || fail "cycle $cycle: a call failed with a status a crash must not give:"$'\n'"$(cat "$work/bad")"
		[ ! -s "$work/hangs" ] || fail "cycle $cycle: a client call hung (stacks below)"
		tls_check "cycle $cycle"
		[ "$start_took" -le "$max_start" ] || max_start=$start_took
		total_start=$((total_start + start_took))
		resolve_pending
		check "cycle $cycle"
		[ ! -s "$work/hangs" ] || fail "cycle $cycle: a client call hung (stacks below)"
		ok "cycle $cycle: killed after $ms ms, $(($(wc -l <"$work/acked-refs") - acked0)) creates acknowledged${cuts:+, $cuts}, restarted in $start_took ms, all checks hold"
	done
	stop_node
	[ "$node_rc" -eq 0 ] || fail "the node exited with $node_rc on SIGTERM"
	start_node || fail "the node did not start"
	mapfile -t touched < <(awk '{ print $1 }' "$work/acked-consents" | sort -u)
	check "at the end (every subject)"
	stop_node
	echo "fault $mode: $CYCLES cycles; $(wc -l <"$work/acked-refs") referrals, $(wc -l <"$work/acked-accepts") accepts, $(wc -l <"$work/acked-consents") consents, $(wc -l <"$work/acked-withdrawn") withdrawals acknowledged; $retried creates retried by key after a kill; start max $max_start ms, mean $((total_start / CYCLES)) ms; tls+tcp:// listener stalls recovered by the node's watchdog $tls_recovered (it listened again $(grep -c 'stopped accepting connections' "$work/node.log" || true) times); 0 errors"
}

if [ "$mode" != iofail ]; then
	crash_cycles
	exit 0
fi

# ---- I/O faults in turn -------------------------------------------------------------------

# The file classes a fault is aimed at (IOFAIL_PATH) and the calls tried on each.
declare -A class_path=([store]="$data/store/" [keys]="$data/keys/"
	[checkpoints]="$data/audit.checkpoints" [backup]="$work/backup/")
classes=(store keys checkpoints backup)
ops=(write fsync fdatasync ftruncate create rename mmap)

# One write of each kind as a client makes it; each answer is 0 or a status with a message.
# Sets io_ref (0: the create was acknowledged), io_cap, io_subject and io_backup.
io_sequence() {
	local tag=$1 rc
	io_cap=$((RANDOM % 90 + 1))
	rc=0
	T=3000 as clinic capacity set svc-med "$io_cap" >"$work/out" 2>"$work/err" || rc=$?
	io_status "capacity set" "$rc"
	if [ "$rc" -eq 0 ]; then cap_acked=$io_cap; else cap_pending=$io_cap; fi
	io_ref=14 io_subject="" io_backup=14
	io_alive || return 0
	io_ref=0
	T=3000 as ngo --json referral create --key "io-$tag" $(refer_args 0) >"$work/out" 2>"$work/err" || io_ref=$?
	io_status "referral create" "$io_ref"
	[ "$io_ref" -ne 0 ] || echo "io-$tag $(jstr id <"$work/out")" >>"$work/acked-refs"
	io_alive || return 0
	rc=0
	T=3000 as ngo subject create --name "IO Subject" >"$work/out" 2>"$work/err" || rc=$?
	io_status "subject create" "$rc"
	if [ "$rc" -eq 0 ]; then
		io_subject=$(cat "$work/out")
		rc=0
		T=3000 as ngo --json consent grant "$io_subject" --purpose referral --accepting-provider \
			--category identity --given-by subject --method verbal --language nl \
			>"$work/out" 2>"$work/err" || rc=$?
		io_status "consent grant" "$rc"
		[ "$rc" -ne 0 ] || echo "$io_subject $(jstr id <"$work/out")" >>"$work/acked-consents"
	fi
	io_alive || return 0
	io_backup=0
	T=10000 op admin backup "$work/backup" >"$work/out" 2>"$work/err" || io_backup=$?
	io_status "admin backup" "$io_backup"
}
# A failed call names its problem in a status a fault may give.
io_status() {
	local what=$1 rc=$2
	[ "$rc" -ne 0 ] || return 0
	statuses[$rc]=$((${statuses[$rc]:-0} + 1))
	case "$rc" in
	# DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (ENOSPC, EDQUOT), FAILED_PRECONDITION, INTERNAL,
	# UNAVAILABLE (the node stopped), DATA_LOSS (status.c's name for EIO)
	4 | 8 | 9 | 13 | 14 | 15) ;;
	16) grep -q '^haven: login: ' "$work/err" ||
		fail "$fault: $what: UNAUTHENTICATED outside the sign-in: $(cat "$work/err")" ;;
	*) fail "$fault: $what failed with exit $rc: $(cat "$work/err")" ;;
	esac
	[ -s "$work/err" ] || fail "$fault: $what failed with exit $rc and no message"
	! grep -q 'new or empty' "$work/err" || [ "$rc" -eq 9 ] ||
		fail "$fault: $what: a hint that is not the cause: $(cat "$work/err")"
}
# The rest of the sequence is skipped once the node stopped by itself (exit 75: a commit
# failed): each call would only wait for its timeout.
# (kill -0 succeeds on a zombie: the state in /proc tells.)
io_alive() {
	[ -n "$node_pid" ] && [ -r "/proc/$node_pid/stat" ] &&
		[ "$(sed 's/^.*) //' "/proc/$node_pid/stat" | cut -c1)" != Z ]
}

io_case() { # OP CLASS N ERRNO
	local o=$1 c=$2 n=$3 e=$4 sticky=0 how
	fault="$o #$n of $c ($e)"
	[ "$e" != ENOSPC ] || sticky=1
	rm -rf "$data" "$work/backup"
	cp -a "$work/template" "$data"
	for f in acked-refs acked-consents; do cp "$work/template-$f" "$work/$f"; done
	cap_acked=$cap0 cap_pending="" touched=()
	: >"$work/faults"
	if start_node LD_PRELOAD="$shim" IOFAIL_OPS="$o" IOFAIL_PATH="${class_path[$c]}" \
		IOFAIL_N="$n" IOFAIL_ERRNO="$e" IOFAIL_STICKY="$sticky" IOFAIL_LOG="$work/faults"; then
		io_sequence "$o-$c-$n"
		stop_node
		how="served; exit $node_rc"
	else
		how="refused to start (exit $node_rc)"
		grep -q '"level":"error"' "$work/node.log" || fail "$fault: the node stopped with no error logged"
	fi
	# Exit codes: 0 (stopped on SIGTERM), 1 (could not start), 75 (a commit failed: the store
	# is left as it was, for a restart). A signal is a crash.
	[ "$node_rc" -lt 128 ] || fail "$fault: the node died of signal $((node_rc - 128))"
	[ -s "$work/faults" ] || { skipped=$((skipped + 1)); return 0; }
	tried=$((tried + 1))
	[ "$node_rc" -eq 0 ] || stopped=$((stopped + 1))
	start_node || fail "$fault: the node does not start again without faults (exit $node_rc)"
	if [ -n "$how" ] && [ "${io_ref:-0}" -ne 0 ]; then
		# The client retries its create with the key: one referral, whatever happened.
		T=10000 must as ngo --json referral create --key "io-$o-$c-$n" $(refer_args 0) >"$work/out2"
		echo "io-$o-$c-$n $(jstr id <"$work/out2")" >>"$work/acked-refs"
	fi
	io_ref=0
	[ -z "${io_subject:-}" ] || touched=("$io_subject")
	io_subject=""
	if [ -e "$work/backup/data.mdb" ] && [ "${io_backup:-1}" -ne 0 ]; then
		fail "$fault: a failed backup left $work/backup/data.mdb"
	fi
	if [ "${io_backup:-1}" -eq 0 ] && [ ! -s "$work/backup/data.mdb" ]; then
		fail "$fault: an acknowledged backup has no data.mdb"
	fi
	io_backup=1
	check "$fault"
	stop_node
	[ "$node_rc" -eq 0 ] || fail "$fault: the node exited with $node_rc on SIGTERM after the restart"
	ok "$fault: $how; restarted, all acknowledged writes there once, audit chain intact"
}

# The first start of an empty data directory makes the keys (token, audit, key-encryption,
# receipt) and the checkpoint file: each of those calls fails in turn. The node must refuse to
# start with an error, or start; then a start without faults serves and the audit chain verifies.
io_first_start() {
	local o n count ns e=(EIO ENOSPC EDQUOT) i=0 how
	rm -rf "$data" && mkdir -m 700 "$data"
	start_node LD_PRELOAD="$shim" IOFAIL_OPS=all IOFAIL_TRACE=1 IOFAIL_PATH="$data/" 		IOFAIL_LOG="$work/trace0" || fail "the node under the shim did not start on an empty directory"
	stop_node
	for o in "${ops[@]}"; do
		count=$(awk -v p="$data/" -v o="$o" '$2 == o && index($3, p) == 1 && $3 !~ /\/store\//' \
			"$work/trace0" | wc -l)
		[ "$count" -gt 0 ] || continue
		if [ "${FAULT_IOFAIL_ALL:-0}" = 1 ]; then ns=$(seq 1 "$count"); else
			ns=$(printf '%s\n' 1 $(((count + 1) / 2)) "$count" | sort -nu); fi
		for n in $ns; do
			fault="first start: $o #$n of keys and checkpoints (${e[$((i % 3))]})"
			rm -rf "$data" && mkdir -m 700 "$data"
			: >"$work/faults"
			# Only the keys and the checkpoint file: IOFAIL_PATH is the directory, and
			# the n-th call counted excludes none of the store's (so the store's calls
			# are counted too; n is taken among the calls outside store/ by the trace).
			n=$(awk -v p="$data/" -v o="$o" '$2 == o && index($3, p) == 1 { k++ }
				$2 == o && index($3, p) == 1 && $3 !~ /\/store\// { if (++m == '"$n"') { print k; exit } }' \
				"$work/trace0")
			if start_node LD_PRELOAD="$shim" IOFAIL_OPS="$o" IOFAIL_PATH="$data/" IOFAIL_N="$n" \
				IOFAIL_ERRNO="${e[$((i % 3))]}" IOFAIL_LOG="$work/faults"; then
				stop_node
				how="started; exit $node_rc"
			else
				how="refused to start (exit $node_rc)"
				grep -q '"level":"error"' "$work/node.log" || fail "$fault: no error logged"
			fi
			[ "$node_rc" -lt 128 ] || fail "$fault: the node died of signal $((node_rc - 128))"
			i=$((i + 1))
			[ -s "$work/faults" ] || { skipped=$((skipped + 1)); continue; }
			# A key whose creation was not made durable must not be used: the node
			# does not start on it (the next start makes it again).
			case "$(cut -d' ' -f3 "$work/faults" | head -n 1)" in
			*/keys | */keys/*) [ "${how#started}" = "$how" ] ||
				fail "$fault: the node started although creating its keys failed" ;;
			esac
			tried=$((tried + 1))
			start_node || fail "$fault: the node does not start again without faults (exit $node_rc)"
			must op audit verify >/dev/null
			T=2000 must op health >/dev/null
			stop_node
			[ "$node_rc" -eq 0 ] || fail "$fault: exit $node_rc on SIGTERM after the restart"
			ok "$fault ($(cut -d' ' -f3 "$work/faults" | head -n 1 | sed "s|$data/||")): $how; starts again, audit chain intact"
		done
	done
}

io_faults() {
	local c o n e count ns i=0 t
	declare -gA statuses=()
	tried=0 skipped=0 stopped=0
	stop_node
	[ "$node_rc" -eq 0 ] || fail "the node exited with $node_rc on SIGTERM"
	cp -a "$data" "$work/template"
	for f in acked-refs acked-consents; do cp "$work/$f" "$work/template-$f"; done
	cap0=$cap_acked
	# The counting run: which calls the sequence makes on each class of file, in order.
	start_node LD_PRELOAD="$shim" IOFAIL_OPS=all IOFAIL_TRACE=1 IOFAIL_PATH="$work/" \
		IOFAIL_LOG="$work/trace" || fail "the node under the shim did not start"
	fault="the counting run"
	io_sequence count
	stop_node
	[ "$io_ref" -eq 0 ] && [ "$io_backup" -eq 0 ] || fail "the counting run's writes failed"
	for c in "${classes[@]}"; do
		for o in "${ops[@]}"; do
			count=$(awk -v p="${class_path[$c]}" -v o="$o" '$2 == o && index($3, p) == 1' "$work/trace" | wc -l)
			[ "$count" -gt 0 ] || continue
			if [ "${FAULT_IOFAIL_ALL:-0}" = 1 ]; then
				ns=$(seq 1 "$count")
			else
				ns=$(printf '%s\n' 1 2 "$count" | awk -v c="$count" '$1 <= c' | sort -nu)
			fi
			for n in $ns; do
				e=(EIO ENOSPC EDQUOT)
				io_case "$o" "$c" "$n" "${e[$((i % 3))]}"
				i=$((i + 1))
			done
		done
	done
	io_first_start
	t=""
	for c in "${!statuses[@]}"; do t+=" ${statuses[$c]}x$c"; done
	echo "fault iofail: $(wc -l <"$work/trace") calls in the counting run; $tried faults injected ($skipped cases reached no call), node stopped by itself $stopped times; failed calls by exit code:${t:- none}; every acknowledged write there once after each, 0 errors"
}

io_faults
