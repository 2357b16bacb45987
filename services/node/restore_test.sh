#!/bin/sh
# restore_test.sh - backup and restore of a running node, as docs/operations.md describes them,
# with the real haven-node and haven CLI:
#
#   1. a node with a partner and a person (personal data, consent) is backed up while it runs:
#      `haven admin backup DIR` under the key directory's lock, with the key-encryption key
#      (keys/kek), the receipt key and the audit key copied beside the store copy, the audit
#      checkpoints copied before it, and never the session token keys (keys/token-keys);
#   2. after the backup the node changes on: a second person, and the first one erased (which
#      rotates the key-encryption key);
#   3. the backup restored into a new data directory with the keys copied at backup time starts
#      and reads the data of the backup back (the first person decrypts again: a restore undoes
#      the erasures made after the backup), and nothing newer; the audit chain holds; it has
#      token keys of its own, so no token of the node before verifies there (auth_test checks
#      that a token fails under another key file); with the node's own later audit checkpoints
#      instead of the backup's, audit verify says entries were removed (a restore is a rollback);
#   4. the same backup with the node's current (rotated) key does not start: exit code 1 and a
#      log line that names the key file;
#   5. the shipped deploy/haven.conf starts a node, and a wrong option in a configuration file
#      stops it at once with exit code 2 and a message naming the file, the line and the option.
#
#   restore_test.sh BUILD_DIR SOURCE_DIR
set -eu

build=$1
src=$2
node=$build/services/node/haven-node
cli=$build/clients/cli/haven
base=${HAVEN_TEST_TMP:-/tmp}
mkdir -p "$base"
tmp=$(mktemp -d "$base/restore-XXXXXX")
pid=

fail() {
	echo "restore_test: FAIL: $*" >&2
	for f in "$tmp"/*.log; do
		[ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
	done
	exit 1
}

cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# start DATA LOG [OPTIONS...]: starts a node and waits until it answers.
start() {
	d=$1
	log=$2
	shift 2
	"$node" --data "$d" "$@" 2>"$log" &
	pid=$!
	i=0
	until "$cli" --data "$d" --timeout 2000 health >/dev/null 2>&1; do
		i=$((i + 1))
		kill -0 "$pid" 2>/dev/null || fail "the node on $d exited at start"
		[ $i -lt 100 ] || fail "the node on $d does not answer"
		sleep 0.1
	done
}

stop() {
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	pid=
	[ $rc -eq 0 ] || fail "the node exited with $rc after SIGTERM"
}

# ---- 1. a node with data, backed up while it runs --------------------------------------------
data=$tmp/data
mkdir -m 700 "$data"
start "$data" "$tmp/node.log"
op() { "$cli" --data "$data" "$@"; }
op org register ngo-test --name "Test NGO" --role referrer --region Rotterdam >/dev/null
s1=$(op subject create --name "Restore Person One" --contact "via outreach")
c1=$(op consent grant "$s1" --purpose referral --accepting-provider --category identity \
	--given-by subject --method written --language nl | sed -n 's/^consent  *//p')
[ -n "$c1" ] || fail "no consent id"

op subject show "$s1" | grep -q "Restore Person One" || fail "subject $s1 does not read"

bk=$tmp/backup
# The backup procedure of docs/operations.md: no key rotation may run between the copy of the
# store and the copy of its key, so both are taken under the key directory's lock. The audit
# checkpoints are copied before the store, so that none names an entry the copy lacks.
# (admin backup wants a new directory: they wait beside it.)
flock "$data/keys/lock" sh -c '
	cp -p "$2/audit.checkpoints" "$3.checkpoints" &&
	"$1" --data "$2" admin backup "$3" >/dev/null &&
	mv "$3.checkpoints" "$3/audit.checkpoints" &&
	cp -p "$2/keys/kek" "$2/keys/receipt-ed25519.pem" "$2/keys/audit-ed25519.pem" "$3/"' \
	sh "$cli" "$data" "$bk" || fail "backup"
for f in data.mdb kek receipt-ed25519.pem audit-ed25519.pem audit.checkpoints; do
	[ -f "$bk/$f" ] || fail "the backup has no $f"
done
# No session-token key anywhere in it (nor the retired node.secret).
[ -f "$data/keys/token-keys" ] || fail "the node has no keys/token-keys"
[ ! -e "$data/node.secret" ] || fail "the node still has a node.secret"
for f in "$bk"/*; do
	cmp -s "$f" "$data/keys/token-keys" && fail "the backup holds the token keys ($f)"
done
cp -p "$data/keys/token-keys" "$tmp/token-keys.before"
[ "$(stat -c %a "$bk")" = 700 ] || fail "the backup directory is not 0700"
[ "$(stat -c %a "$bk/data.mdb")" = 600 ] || fail "the backup's data.mdb is not 0600"
# The backup directory must be new or empty.
if op admin backup "$bk" >/dev/null 2>&1; then fail "a second backup into $bk was accepted"; fi

# ---- 2. the node changes on -------------------------------------------------------------------
s2=$(op subject create --name "Restore Person Two")
op subject erase "$s1" >/dev/null
if op subject show "$s1" >/dev/null 2>&1; then fail "erased subject $s1 still reads"; fi
stop

# ---- 3. restore with the keys of the backup ---------------------------------------------------
restored=$tmp/restored
install -d -m 700 "$restored" "$restored/store" "$restored/keys"
install -m 600 "$bk/data.mdb" "$restored/store/data.mdb"
install -m 600 "$bk/kek" "$bk/receipt-ed25519.pem" "$bk/audit-ed25519.pem" "$restored/keys/"
install -m 600 "$bk/audit.checkpoints" "$restored/"
start "$restored" "$tmp/restored.log"
[ -f "$restored/keys/token-keys" ] || fail "the restored node made no token keys"
if cmp -s "$restored/keys/token-keys" "$tmp/token-keys.before"; then
	fail "the restored node has the token keys of the node before"
fi
rop() { "$cli" --data "$restored" "$@"; }
rop org show ngo-test >/dev/null || fail "the partner is not in the restored store"
rop subject show "$s1" | grep -q "Restore Person One" ||
	fail "subject $s1 does not decrypt in the restored node"
rc=0
rop subject show "$s2" >/dev/null 2>&1 || rc=$?
[ $rc -eq 5 ] || fail "subject $s2 (made after the backup) answered $rc, not NOT_FOUND (5)"
rop consent list "$s1" | grep -q "$c1" || fail "consent $c1 is not in the restored store"
rop audit verify >/dev/null || fail "the audit chain of the restored store does not verify"
rop audit verify | grep -q "checkpoints, the last at" ||
	fail "audit verify does not report the checkpoints"
rop admin status >/dev/null || fail "admin status on the restored node"
stop

# ---- 3b. the same backup with the node's own later checkpoints: the rollback shows -------------
rolled=$tmp/rolledback
install -d -m 700 "$rolled" "$rolled/store" "$rolled/keys"
install -m 600 "$bk/data.mdb" "$rolled/store/data.mdb"
install -m 600 "$bk/kek" "$bk/receipt-ed25519.pem" "$bk/audit-ed25519.pem" "$rolled/keys/"
install -m 600 "$data/audit.checkpoints" "$rolled/"
start "$rolled" "$tmp/rolledback.log"
rc=0
out=$("$cli" --data "$rolled" audit verify) || rc=$?
[ $rc -ne 0 ] || fail "a rolled-back store verified against the checkpoints that saw it longer"
echo "$out" | grep -q "BROKEN at entry .*were removed (checkpoint line" ||
	fail "audit verify of a rolled-back store: $out"
stop

# ---- 4. the same backup with the current, rotated key: refused --------------------------------
wrong=$tmp/wrongkey
install -d -m 700 "$wrong" "$wrong/store" "$wrong/keys"
install -m 600 "$bk/data.mdb" "$wrong/store/data.mdb"
install -m 600 "$data/keys/kek" "$data/keys/receipt-ed25519.pem" "$wrong/keys/"
rc=0
"$node" --data "$wrong" 2>"$tmp/wrongkey.log" || rc=$?
[ $rc -eq 1 ] || fail "a store with a key of another generation: exit code $rc, not 1"
grep -q "keys/kek (generation 2) does not match the key this store was wrapped under (generation 1)" \
	"$tmp/wrongkey.log" || fail "the log does not say which key does not match"

# ---- 5. the shipped configuration, and a wrong one --------------------------------------------
shipped=$tmp/shipped
mkdir -m 700 "$shipped"
start "$shipped" "$tmp/shipped.log" --config "$src/deploy/haven.conf"
grep -q "retention erased 0 subjects" "$tmp/shipped.log" ||
	fail "the node did not run retention at start"
stop

printf 'data_dir = %s\n# a comment\nretention_dayz = 30\n' "$shipped" >"$tmp/bad.conf"
rc=0
"$node" --config "$tmp/bad.conf" 2>"$tmp/bad.log" || rc=$?
[ $rc -eq 2 ] || fail "an unknown option in the configuration file: exit code $rc, not 2"
grep -q "^haven-node: $tmp/bad.conf:3: unknown option 'retention_dayz'" "$tmp/bad.log" ||
	fail "the message does not name the file, line and option: $(cat "$tmp/bad.log")"
printf 'referral.retention_days = 0\n' >"$tmp/bad.conf"
rc=0
"$node" --config "$tmp/bad.conf" --data "$shipped" 2>"$tmp/bad.log" || rc=$?
[ $rc -eq 2 ] || fail "referral.retention_days = 0: exit code $rc, not 2"
grep -q "bad.conf:1: 'referral.retention_days' must be a whole number from 1 to 3650, not '0'" \
	"$tmp/bad.log" || fail "the message does not name the line and option: $(cat "$tmp/bad.log")"

echo "restore_test: ok"
