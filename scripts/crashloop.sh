#!/usr/bin/env bash
# crashloop.sh - the long forms of the fault tests (issue 17; docs/reliability.md): a real
# haven-node killed with SIGKILL at random moments under a mixed write load, power cuts that
# drop every unsynced write, and every I/O call of the store, keys, checkpoints and backups
# failed in turn. CI runs the same script (tests/fault/fault_test.sh) with small counts.
#
#   scripts/crashloop.sh [--cycles N] [--powercuts N] [--idle N]
#                        [--only crashloop|powercut|iofail|peers] [BUILD_DIR]
#
# Defaults: 1000 crash cycles, 200 power cuts, every I/O call of the counting run, 10000 idle
# connections (bounded by the hard file limit) for 120 s beside the other hostile peers. BUILD_DIR
# (default build/) must hold a build of haven (cmake --build). Prints each test's summary line
# ("fault MODE: ...") and the time it took; exit 0 when all passed.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cycles=1000 cuts=200 idle=10000 only="" build=$src/build
while [ $# -gt 0 ]; do
	case "$1" in
	--cycles) cycles=$2; shift 2 ;;
	--powercuts) cuts=$2; shift 2 ;;
	--idle) idle=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
	-*) echo "crashloop.sh: unknown option $1" >&2; exit 64 ;;
	*) build=$1; shift ;;
	esac
done
for f in services/node/haven-node clients/cli/haven tests/fault/libiofail.so tests/fault/powercut; do
	[ -x "$build/$f" ] || [ -f "$build/$f" ] || { echo "crashloop.sh: no $build/$f (build first)" >&2; exit 1; }
done
run() { # MODE ENV...
	local mode=$1 t0 rc=0
	shift
	[ -z "$only" ] || [ "$only" = "$mode" ] || return 0
	t0=$(date +%s)
	env "$@" bash "$src/tests/fault/fault_test.sh" "$mode" "$build/services/node/haven-node" \
		"$build/clients/cli/haven" "$build/tests/fault/libiofail.so" "$build/tests/fault/powercut" \
		"$src" >"$build/fault-$mode.log" 2>&1 || rc=$?
	grep '^fault ' "$build/fault-$mode.log" || tail -n 40 "$build/fault-$mode.log"
	echo "  ($mode: $(($(date +%s) - t0)) s, exit $rc, log $build/fault-$mode.log)"
	return "$rc"
}
rc=0
run crashloop FAULT_CYCLES="$cycles" || rc=1
run powercut FAULT_CYCLES="$cuts" || rc=1
run iofail FAULT_IOFAIL_ALL=1 || rc=1
if [ -z "$only" ] || [ "$only" = peers ]; then
	t0=$(date +%s)
	prc=0
	FAULT_PEERS_S=120 python3 "$src/tests/fault/peers_test.py" "$build/services/node/haven-node" \
		"$build/clients/cli/haven" "$src" "$idle" >"$build/fault-peers.log" 2>&1 || prc=$?
	grep '^fault ' "$build/fault-peers.log" || tail -n 40 "$build/fault-peers.log"
	echo "  (peers: $(($(date +%s) - t0)) s, exit $prc, log $build/fault-peers.log)"
	[ "$prc" -eq 0 ] || rc=1
fi
exit "$rc"
