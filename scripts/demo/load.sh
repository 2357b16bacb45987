#!/usr/bin/env bash
# load.sh - loads the fictional demo network of scripts/demo/network.txt into a running node,
# as its operator over ipc://; what is there already is left alone (a second run adds nothing).
# Partners with a certificate in PKI_DIR (ORG.pem) get it in the directory. Used by the
# quickstart and by the web app's browser test.
#
#   scripts/demo/load.sh HAVEN_CLI DATA_DIR [PKI_DIR]     prints "N organisations, M services"
set -euo pipefail
cli=$1 data=$2 pki=${3:-}
net="$(dirname "$0")/network.txt"
op() { "$cli" --data "$data" "$@"; }

nor=0 nsv=0
while IFS='|' read -r kind id a b c d e f g h i; do
  case "$kind" in
  org)
    if ! op org show "$id" >/dev/null 2>&1; then
      cert=()
      [ -n "$pki" ] && [ -f "$pki/$id.pem" ] && cert=(--cert "$pki/$id.pem")
      contact=()
      [ -n "$d" ] && contact=(--contact "$d")
      op org register "$id" --name "$a" --role "$b" --region "$c" "${cert[@]}" "${contact[@]}" \
        >/dev/null
    fi
    nor=$((nor + 1)) ;;
  svc)
    if ! op service show "$id" >/dev/null 2>&1; then
      spec=()
      [ -n "$i" ] && spec=(--specialisation "$i")
      op service register --id "$id" --org "$a" --type "$b" --region "$c" --population "$d" \
        --languages "$e" --total "$f" --available "$g" --contact "$h" "${spec[@]}" >/dev/null
    fi
    nsv=$((nsv + 1)) ;;
  esac
done <"$net"
echo "$nor organisations, $nsv services"
