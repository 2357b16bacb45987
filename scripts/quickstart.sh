#!/usr/bin/env bash
# quickstart.sh - installs what is missing, builds haven, starts a node on a fresh data
# directory (LMDB store, keys, ipc:// socket) and talks to it with the haven CLI.
# Then, on a terminal, leaves the node running with the web app at the printed URL and the demo
# sign-ins until Ctrl-C; without a terminal (CI, a pipe) or with HAVEN_QUICKSTART_EXIT=1 it
# stops the node at the end (SIGTERM: in-flight calls finish, the store closes cleanly).
#
#   scripts/quickstart.sh [DATA_DIR]      default: ./haven-data
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${HAVEN_DATA:-$PWD/haven-data}}
case "$data" in /*) ;; *) data=$PWD/$data ;; esac

scripts/deps.sh nodejs npm
scripts/web.sh # the web app's libraries into web/vendor (npm ci, package-lock.json)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target haven-node haven-cli >/dev/null
bin=$PWD/build

mkdir -p "$data" && chmod 700 "$data"
pki=$data/pki
port=${HAVEN_PORT:-7443}
http_port=${HAVEN_HTTP_PORT:-8443}
log=$data/node.log
if [ ! -f "$pki/ca.pem" ]; then
  echo "== making a demo PKI in $pki (node CA, server certificate, one per partner)"
  deploy/pki.sh "$pki" ca
  deploy/pki.sh "$pki" server localhost
  for org in fairwork-ngo safehouse-zwb legalaid-rdam shelter-ams shelter-nn municipality-rdam; do
    deploy/pki.sh "$pki" client "$org"
  done
fi

echo "== starting haven-node on $data (ipc + mutual TLS on localhost:$port + the Connect API"
echo "   over HTTPS on localhost:$http_port; log: $log)"
"$bin/services/node/haven-node" --data "$data" \
  --listen "ipc://$data/run/haven.sock" --listen "tls+tcp://127.0.0.1:$port" \
  --tls-ca "$pki/ca.pem" --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" \
  --http-listen "127.0.0.1:$http_port" --http-web-dir "$PWD/web" 2>"$log" &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node 2>/dev/null || true' EXIT

op() { "$bin/clients/cli/haven" --data "$data" "$@"; }
# A partner: mutual TLS with its certificate, then proof of its key (Auth) for a session token.
as() {
  local org=$1; shift
  "$bin/clients/cli/haven" --url "tls+tcp://localhost:$port" --ca "$pki/ca.pem" \
    --cert "$pki/$org.pem" --key "$pki/$org.key" --org "$org" "$@"
}

for _ in $(seq 1 50); do
  op --timeout 2000 health >/dev/null 2>&1 && break
  sleep 0.1
done
op health
echo "== the same over the Connect API (HTTPS, JSON); callers with a session add"
echo "   -H 'Authorization: Bearer TOKEN'"
connect_call=(curl -sS --cacert "$pki/ca.pem" -H 'Content-Type: application/json' -d '{}'
  "https://localhost:$http_port/haven.health.v1.Health/Check")
printf '%q ' "${connect_call[@]}"
echo
"${connect_call[@]}"
echo

echo "== the region map: the ten Dutch police regions and their neighbours"
op regions
echo "== the demo network (operator over ipc): scripts/demo/network.txt, all fictional"
# Partners that act in the demo get their certificate; the others are in the directory only.
scripts/demo/load.sh "$bin/clients/cli/haven" "$data" "$pki"
echo "tonight in Rotterdam and its southern neighbour:"
op capacity summary --region Rotterdam --region Zeeland-West-Brabant

echo "== demo people (docs/people.md): the operator makes each organisation's admin, the admins"
echo "   add their people; known demo passwords; each second factor is an otpauth:// URI (scan it"
echo "   into an authenticator app, or scripts/demo/totp.py URI prints the current code)"
export HAVEN_SESSION_FILE=$data/demo-session
people=$data/demo-people.txt
# Made by whoever `op` is now: the operator, or the admin signed in (the session file).
add_person() { # ORG LOGIN NAME ROLE PASSWORD
  local org=$1 login=$2 name=$3 role=$4 pw=$5 out
  out=$(HAVEN_NEW_PASSWORD=$pw op person add "$org" "$login" --name "$name" --role "$role") ||
    return 0 # there from an earlier run: its URI was printed then (demo-people.txt)
  printf '%s|%s|%s|%s\n' "$login" "$role" "$pw" "$(grep '^otpauth://' <<<"$out")" >>"$people"
}
signin() { # LOGIN PASSWORD: as the person, with the code of the URI made for it
  local uri code
  uri=$(awk -F'|' -v l="$1" '$1 == l { print $4 }' "$people")
  code=$(python3 scripts/demo/totp.py "$uri")
  printf '%s\n%s\n' "$2" "$code" | op login "$1" --stdin
}
if [ ! -s "$people" ]; then
  : >"$people"
  while IFS='|' read -r org login name role pw; do
    [ -z "$org" ] || [ "${org#\#}" != "$org" ] && continue
    if [ "$role" = admin ]; then
      add_person "$org" "$login" "$name" admin "$pw"
    else
      # the organisation's admin adds its own people, in its own session
      admin=$(awk -F'|' -v o="$org" '$1 == o && $4 == "admin" { print $2 "|" $5 }' scripts/demo/people.txt)
      signin "${admin%%|*}" "${admin#*|}" >/dev/null
      add_person "$org" "$login" "$name" "$role" "$pw"
      op logout >/dev/null
    fi
  done < scripts/demo/people.txt
fi
awk -F'|' 'BEGIN { printf "%-30s %-12s %-22s %s\n", "LOGIN", "ROLE", "PASSWORD", "SECOND FACTOR" }
  { printf "%-30s %-12s %-22s %s\n", $1, $2, $3, $4 }' "$people"

echo "== fairwork-ngo (referrer, Rotterdam) records a person and their consent; no real data"
subject=$(as fairwork-ngo subject create --name "Demo Person" --language ro --contact "via outreach worker")
echo "subject $subject"
as fairwork-ngo consent grant "$subject" --purpose referral,share-with-provider,contact --accepting-provider \
  --category identity,contact --given-by subject --method verbal-with-interpreter --language ro
echo "== a referral for tonight: a shelter bed and a lawyer, Amsterdam unsafe for her"
ref=$(as fairwork-ngo --json referral create --subject "$subject" --urgency immediate --exploitation labour \
  --need shelter:women:ro --need legal-aid:women:ro --exclude Amsterdam --note "found during an inspection" \
  | sed -n 's/^  "id": "\(ref-[0-9a-f]*\)".*/\1/p')
echo "referral $ref"
as fairwork-ngo referral show "$ref"

echo "== the providers see their offers (no personal data) and accept"
echo "-- the shelter's alerts: what happened, how urgent, a link; nothing about her (docs/alerts.md)"
as safehouse-zwb alerts watch
as safehouse-zwb offer list --open
offer=$(as safehouse-zwb --json offer list --open | sed -n 's/.*"id": "\(off-[0-9a-f]*\)".*/\1/p' | head -1)
as safehouse-zwb offer accept "$offer"
law=$(as legalaid-rdam --json offer list --open | sed -n 's/.*"id": "\(off-[0-9a-f]*\)".*/\1/p' | head -1)
as legalaid-rdam offer accept "$law"
echo "== the accepting shelter learns whom it takes in and whom to call (no note, no unsafe regions)"
as safehouse-zwb referral show "$ref"
as safehouse-zwb org show fairwork-ngo | grep -E "^(id|name|contact)"
echo "== the accepting shelter may now read what her consent covers (audited); another may not"
as safehouse-zwb subject show "$subject"
as shelter-nn subject show "$subject" || echo "(refused, as it must be)"
echo "== she arrives: placed"
as safehouse-zwb placement placed "$offer"
as fairwork-ngo referral show "$ref"
echo "-- the referrer's alerts"
as fairwork-ngo alerts watch
echo "== the municipality sees numbers only (cells under 5 hidden), for finished weeks and months"
as municipality-rdam capacity summary --region Rotterdam
as municipality-rdam stats --period "$(TZ=Europe/Amsterdam date -d "$(date +%Y-%m-15) -1 month" +%Y-%m)"
as municipality-rdam stats --period "$(TZ=Europe/Amsterdam date +%Y-%m)" || echo "(this month is not over: refused)"
echo "== she moves on: the placement completes and her bed is free again"
as safehouse-zwb placement complete "$offer"
as safehouse-zwb capacity show svc-zwb-bed
echo "== a walk-in at the Rotterdam legal aid: one place taken in one step, no version needed"
as legalaid-rdam capacity taken svc-rdam-law
echo "== and may not see the referral itself"
as municipality-rdam referral show "$ref" || echo "(refused, as it must be)"
echo "== consent at every step: a second person is referred for a lawyer; while the offer is"
echo "   open she withdraws her consent: the offer is withdrawn and both sides are told"
subject2=$(as fairwork-ngo subject create --name "Second Demo Person" --language en --contact "via outreach worker")
consent2=$(as fairwork-ngo --json consent grant "$subject2" --purpose referral,share-with-provider \
  --accepting-provider --category identity --given-by subject --method written --language en \
  | sed -n 's/^  "id": "\([^"]*\)".*/\1/p')
ref2=$(as fairwork-ngo --json referral create --subject "$subject2" --urgency planned --exploitation labour \
  --need legal-aid:women:en | sed -n 's/^  "id": "\(ref-[0-9a-f]*\)".*/\1/p')
echo "-- the lawyer's open offer, its place held"
as legalaid-rdam offer list --open
law_seen=$(as legalaid-rdam alerts watch | sed -n 's/^cursor //p')
ngo_seen=$(as fairwork-ngo alerts watch | sed -n 's/^cursor //p')
echo "-- fairwork-ngo records her withdrawal"
as fairwork-ngo consent withdraw "$consent2" | grep -E "^(consent|withdrawn) "
echo "-- the lawyer's alerts: the offer is gone (waits up to 5 s for the withdrawal to reach routing)"
as legalaid-rdam alerts watch --after "$law_seen" --wait 5000
echo "-- the referrer's alerts, and the referral: the need cancelled, nobody holds a place for her"
as fairwork-ngo alerts watch --after "$ngo_seen"
as fairwork-ngo referral show "$ref2" | sed -n '/^NEED /,$p'
echo "-- the lawyer's open offers now: none"
as legalaid-rdam offer list --open
echo "== the NGO's case worker signs in as a person (password + one-time code) and reads her file"
signin carla.case@fairwork-ngo "demo carla 2026"
op subject show "$subject" >/dev/null && echo "(read, audited under her name)"
op logout
op audit verify
echo "== who read her file: organisation, role and person (PERSON: the person's id)"
op audit show --subject "$subject"

if [ -t 0 ] && [ -t 1 ] && [ -z "${HAVEN_QUICKSTART_EXIT:-}" ] && [ -z "${CI:-}" ]; then
  echo
  echo "== the web app: https://localhost:$http_port/  (the demo CA is not one your browser knows:"
  echo "   accept the warning, or import $pki/ca.pem). Sign in as one of the demo people with"
  echo "   the password above and the code of their second factor:"
  awk -F'|' '{ printf "     %-30s %-22s python3 scripts/demo/totp.py \x27%s\x27\n", $1, $3, $4 }' "$people"
  echo "   The node keeps running until Ctrl-C."
  trap 'echo; echo "== stopping the node"; kill -TERM $node 2>/dev/null; wait $node; exit 0' INT TERM
  wait $node || true
  trap - EXIT
  exit 0
fi
echo "== stopping the node"
kill -TERM $node
wait $node
trap - EXIT
echo "== node log (ids only, never personal data)"
tail -n 5 "$log"
