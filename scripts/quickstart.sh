#!/usr/bin/env bash
# quickstart.sh - installs what is missing, builds haven, starts a node on a fresh data
# directory (LMDB store, node secret, ipc:// socket) and talks to it with the haven CLI.
# Stops the node again at the end (SIGTERM: in-flight calls finish, the store closes cleanly).
#
#   scripts/quickstart.sh [DATA_DIR]      default: ./haven-data
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${HAVEN_DATA:-$PWD/haven-data}}
case "$data" in /*) ;; *) data=$PWD/$data ;; esac

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target haven-node haven-cli >/dev/null
bin=$PWD/build

mkdir -p "$data" && chmod 700 "$data"
log=$data/node.log
echo "== starting haven-node on $data (log: $log)"
"$bin/services/node/haven-node" --data "$data" 2>"$log" &
node=$!
trap 'kill -TERM $node 2>/dev/null; wait $node 2>/dev/null || true' EXIT

haven() { "$bin/clients/cli/haven" --data "$data" "$@"; }

for _ in $(seq 1 50); do
  haven --timeout 200 health >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== haven health"
haven health
echo "== haven health haven.diag.v1.Diagnostics --json"
haven --json health haven.diag.v1.Diagnostics
echo "== haven echo"
haven echo "hello from the quickstart"
echo "== a call that must fail: an unknown service"
haven health haven.nope.v1.Nope || echo "(exit code $? = NOT_FOUND, as expected)"

echo "== stopping the node"
kill -TERM $node
wait $node
trap - EXIT
echo "== node log"
cat "$log"
