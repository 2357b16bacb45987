#!/bin/sh
# cli_test.sh - the haven CLI's bad input against a running haven-node: each refused
# invocation exits with the documented code (64 for usage, else the gRPC status of the call)
# and one message that names the problem; --name=VALUE and --name VALUE are both read.
#
#   cli_test.sh HAVEN_NODE HAVEN_CLI
set -eu

node=$1
cli=$2
base=${HAVEN_TEST_TMP:-/tmp}
mkdir -p "$base"
tmp=$(mktemp -d "$base/cli-XXXXXX")
pid=
fails=0

cleanup() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

"$node" --data "$tmp/d" 2>"$tmp/node.log" &
pid=$!
i=0
until "$cli" --data "$tmp/d" --timeout 500 health >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "cli_test: the node does not answer" >&2; tail "$tmp/node.log" >&2; exit 1; }
	sleep 0.1
done

# expect CODE "MESSAGE PART" ARGS...: runs the CLI on the node; fails the test unless it
# exits with CODE and its standard error holds MESSAGE PART.
expect() {
	want=$1
	part=$2
	shift 2
	rc=0
	"$cli" --data "$tmp/d" --timeout 5000 "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	if [ "$rc" -ne "$want" ] || { [ -n "$part" ] && ! grep -qF -- "$part" "$tmp/err"; }; then
		echo "cli_test: FAIL: haven $* -> exit $rc (want $want), stderr: $(cat "$tmp/err")" >&2
		fails=$((fails + 1))
	fi
}
S=0123456789abcdef0123456789abcdef

# Usage errors: 64, the command and what is wrong.
expect 64 "unknown command 'frobnicate'" frobnicate
expect 64 "consent grant takes one SUBJECT" consent grant
expect 64 "unknown option --bogus" consent grant $S --bogus x
expect 64 "--purpose needs a value" consent check $S --purpose
expect 64 "needs --purpose" consent check $S --purpose=gossip
expect 64 "capacity set needs SERVICE and AVAILABLE" capacity set
expect 64 "referral create needs --subject" referral create --subject $S
expect 64 "unknown type 'spaceship'" service register --org x --type spaceship --region Rotterdam \
	--population women --total 3 --contact c
expect 64 "needs --given-by, one of: subject, guardian, representative" consent grant $S \
	--purpose referral --category identity --recipient x --given-by=nobody
expect 64 "--purpose: 'gossip' is not one of referral, share-with-provider" consent grant $S \
	--purpose gossip --category identity
# One language-tag rule (haven/text.h) in the CLI and the services: "12--" is not a tag.
expect 64 "--language: '12--' is not a BCP 47 language tag" capacity find --language 12--
expect 64 "--languages: 'nl_NL' is not a BCP 47 language tag" service register --org x \
	--type shelter --region Rotterdam --population women --total 3 --contact c --languages nl,nl_NL
expect 64 "--language: 'x' is not a BCP 47 language tag" subject create --language x
expect 64 "--language: '12--' is not a BCP 47 language tag" consent grant $S --purpose referral \
	--category identity --recipient x --given-by subject --method written --language 12--
expect 64 "unknown role 'chief' (one of: referrer, provider, municipality" org register x \
	--name X --role chief --region Rotterdam
expect 64 "--version must be a number from 1" org update x --name Y --version nine
expect 64 "stats needs --period" stats --region Rotterdam
expect 64 "--days is gone; name a finished --period" stats --days=30
expect 64 "--timeout must be 1..3600000 ms" --timeout abc health
expect 64 "service approve needs the service ID and --version V" service approve
expect 64 "subject transfer takes one ID and --to ORG" subject transfer $S
expect 64 "give at least one field to change or --clear" subject update $S
expect 64 "--minor: yes or no" subject update $S --minor maybe
expect 64 "--clear: name, dob" subject update $S --clear minor
expect 64 "capacity freed needs SERVICE" capacity freed
expect 64 "N must be" capacity taken svc-x 0
expect 64 "--version must be" service approve svc-x --version 0
expect 64 "--org needs --key" --org acme health
expect 64 "referral update takes ID --reason TEXT" referral update ref-x
expect 64 "unknown urgency 'soonish'" referral update ref-x --reason r --urgency soonish
expect 64 "NEED is a need's number" referral update ref-x --reason r --cancel-need 9
expect 64 "--need is TYPE:POPULATION" referral update ref-x --reason r --add-need shelter
expect 64 "referral pause takes ID NEED --reason REASON" referral pause ref-x 0
expect 64 "unknown reason 'bored'" referral pause ref-x 0 --reason bored
expect 64 "referral resume takes ID NEED" referral resume ref-x
expect 64 "unknown outcome 'gone'" referral cancel ref-x --reason r --outcome gone
expect 64 "referral reassign takes ID NEED --reason TEXT" referral reassign ref-x --service s
expect 64 "--webhook and --secret-file go together" alerts set x --webhook https://a.test/h
expect 64 "--wait (ms) must be 0..25000" alerts watch x --wait 99999
expect 64 "--after must be" alerts watch x --after -1
expect 64 "usage: haven alerts" alerts frobnicate
# The node's answers: the gRPC status as the exit code, and its message.
expect 3 "region 'Atlantis' is not a region of the region map" capacity find --region Atlantis
expect 3 "region 'Atlantis' is not a region of the region map" capacity find --region=Atlantis
expect 5 "no subject $S" subject show $S
expect 5 "no subject $S" subject update $S --contact "via the desk"
expect 3 "date_of_birth must be a date as YYYY-MM-DD" subject update $S --dob 1999-02-30
expect 5 "no service svc-none" service approve svc-none --version 1
expect 5 "no service svc-none" capacity taken svc-none
expect 9 "nobody-here is not an enabled referrer organisation" subject transfer $S --to nobody-here
expect 3 "subject id must be 32 lower-case hex characters" consent check nothex --purpose referral
expect 3 "subject id must be 32 lower-case hex characters" audit show --subject=zz
expect 3 "nothing to change" referral update ref-0000000000000000 --reason r
expect 5 "no referral ref-0000000000000000" referral update ref-0000000000000000 --reason r \
	--urgency planned --no-exclude
expect 3 "text is required (with reason hold-other)" referral pause ref-0000000000000000 0 \
	--reason other
expect 5 "no referral ref-0000000000000000" referral resume ref-0000000000000000 1
expect 3 "service_id is not an id" referral reassign ref-0000000000000000 0 --reason r \
	--service "not an id"
expect 3 "org_id is required" alerts show
expect 5 "no enabled organisation nobody" alerts show nobody
expect 3 "org_id must be" alerts set "Bad Org"
# A node without a CA (tls_ca) cannot check a partner's certificate, so it registers none.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/x.key" \
	-subj /CN=ngo-x -days 1 -out "$tmp/x.pem" 2>/dev/null
expect 9 "cert_pem: the node has no CA configured (tls_ca)" org register ngo-x --name X \
	--role referrer --region Rotterdam --cert "$tmp/x.pem"
expect 3 "period '2026-13': month must be 01..12" stats --period 2026-13
expect 3 "period '2025-W53': week must be 01..52 (2025 has 52 ISO weeks)" stats --period=2025-W53
expect 9 "period 2099-01 has not ended" stats --period 2099-01
expect 9 "this node answers statistics by calendar month only" stats --period 2020-W53
expect 0 "" stats --period 2020-12 --region Rotterdam
# Alert channels of an organisation, set by the operator (docs/alerts.md).
expect 0 "" org register ngo-alerts --name "NGO alerts" --role referrer --region Rotterdam
printf 'a-webhook-secret-of-32-bytes-xx\n' >"$tmp/secret"
expect 3 "emails[1] is not an e-mail address" alerts set ngo-alerts --email desk@ngo.test,nobody
expect 3 "webhook_url must be https://" alerts set ngo-alerts --webhook http://10.0.0.1/h \
	--secret-file "$tmp/secret"
expect 0 "" alerts set ngo-alerts --email desk@ngo.test --webhook https://hooks.ngo.test/h \
	--secret-file "$tmp/secret"
expect 0 "" alerts show ngo-alerts
grep -q "(signed; secret set)" "$tmp/out" || { echo "cli_test: FAIL: alerts show: $(cat "$tmp/out")" >&2; fails=$((fails + 1)); }
! grep -q "a-webhook-secret" "$tmp/out" || { echo "cli_test: FAIL: the secret was shown" >&2; fails=$((fails + 1)); }
expect 0 "" alerts watch ngo-alerts --wait 200

# People: the operator adds an organisation's admin, who signs in (password and code on stdin,
# the code computed from the otpauth URI as an authenticator app would), lists its people and
# signs out; bad input exits 64 or with the call's status, never printing a secret on stderr.
export HAVEN_SESSION_FILE="$tmp/session"
expect 0 "" org register cli-ngo --name "CLI NGO" --role referrer --region Rotterdam
expect 64 "--role must be admin, case-worker or viewer" person add cli-ngo x.y --name X --role boss
HAVEN_NEW_PASSWORD=short expect 3 "password must be 12 to 1024 bytes" person add cli-ngo x.y \
	--name X --role viewer
HAVEN_NEW_PASSWORD="cli test password" expect 3 "login must be NAME or NAME@ORG" person add cli-ngo \
	x.y@cli-other --name X --role viewer
HAVEN_NEW_PASSWORD="cli test password" expect 0 "" person add cli-ngo Cli.Admin --name "Cli Admin" \
	--role admin
uri=$(grep '^otpauth://' "$tmp/out" || true)
admin_id=$(head -n 1 "$tmp/out" | cut -d ' ' -f 1)
[ -n "$uri" ] || { echo "cli_test: FAIL: person add printed no otpauth URI" >&2; fails=$((fails + 1)); }
code=$(python3 - "$uri" <<'PY'
import base64, hashlib, hmac, struct, sys, time, urllib.parse
s = urllib.parse.parse_qs(urllib.parse.urlparse(sys.argv[1]).query)["secret"][0]
k = base64.b32decode(s + "=" * ((8 - len(s) % 8) % 8))
h = hmac.new(k, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
o = h[-1] & 15
print("%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000))
PY
)
printf 'cli test password\n000000\n' >"$tmp/in"
expect 16 "sign-in failed" login cli.admin@cli-ngo --stdin <"$tmp/in"
grep -q "cli test password" "$tmp/err" && { echo "cli_test: FAIL: a password on stderr" >&2; fails=$((fails + 1)); }
printf 'cli test password\n%s\n' "$code" >"$tmp/in"
expect 0 "" login cli.admin@cli-ngo --stdin <"$tmp/in"
grep -q "signed in: person" "$tmp/out" || { echo "cli_test: FAIL: login: $(cat "$tmp/out")" >&2; fails=$((fails + 1)); }
[ "$(stat -c %a "$tmp/session")" = 600 ] || { echo "cli_test: FAIL: session file not 0600" >&2; fails=$((fails + 1)); }
expect 0 "" person list cli-ngo
grep -q "cli.admin@cli-ngo" "$tmp/out" || { echo "cli_test: FAIL: person list: $(cat "$tmp/out")" >&2; fails=$((fails + 1)); }
expect 7 "not yours to manage" person list cli-other
# A role changes in place (issue 16); the organisation keeps its one enabled admin.
HAVEN_NEW_PASSWORD="cli worker password" expect 0 "" person add cli-ngo cli.worker \
	--name "Cli Worker" --role case-worker
worker_id=$(head -n 1 "$tmp/out" | cut -d ' ' -f 1)
expect 0 "" person role "$worker_id" viewer
grep -q "^$worker_id  viewer " "$tmp/out" || { echo "cli_test: FAIL: person role: $(cat "$tmp/out")" >&2; fails=$((fails + 1)); }
expect 64 "ROLE must be admin, case-worker or viewer, not 'boss'" person role "$worker_id" boss
expect 64 "usage: haven person role ID" person role "$worker_id"
expect 9 "organisation cli-ngo must keep an enabled admin" person role "$admin_id" case-worker
expect 9 "organisation cli-ngo must keep an enabled admin" person disable "$admin_id"
expect 3 "person_id must be 32 lower-case hex characters" person role nope viewer
expect 3 "person_id must be 32 lower-case hex characters" person disable nope
expect 64 "usage: haven login NAME" login
expect 0 "" logout
[ ! -e "$tmp/session" ] || { echo "cli_test: FAIL: logout left the session file" >&2; fails=$((fails + 1)); }
unset HAVEN_SESSION_FILE

# Many refused invocations in a row leave the node answering at once.
n=0
while [ $n -lt 20 ]; do
	"$cli" --data "$tmp/d" frobnicate >/dev/null 2>&1 || true
	n=$((n + 1))
done
expect 0 "" --timeout 1000 health

[ "$fails" -eq 0 ] || { echo "cli_test: $fails failed" >&2; exit 1; }
echo "cli_test: ok"
