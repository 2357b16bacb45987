#!/bin/sh
# bench_smoke.sh - haven-bench's arguments and its figure lines, at sizes that take seconds:
# bad arguments exit 2 with a usage line that names the bench, and each bench that runs prints
# its line in the documented format (docs/benchmarks.md). Not a measurement: the figures of
# so small a run mean nothing, only their presence and format are checked.
#
#   bench_smoke.sh HAVEN_BENCH
set -eu

bench=$1
base=${HAVEN_TEST_TMP:-/tmp}
mkdir -p "$base"
tmp=$(mktemp -d "$base/bench-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export TMPDIR="$tmp"
fails=0

# refused WHAT ARGS...: exit 2 and a usage line on stderr naming WHAT.
refused() {
	what=$1
	shift
	code=0
	"$bench" "$@" >"$tmp/out" 2>"$tmp/err" || code=$?
	if [ "$code" -ne 2 ] || ! grep -q "usage:" "$tmp/err" ||
		! grep -q "haven-bench $what" "$tmp/err"; then
		echo "FAIL: haven-bench $* exited $code, stderr: $(cat "$tmp/err")"
		fails=$((fails + 1))
	fi
}

# prints REGEX ARGS...: exit 0 and a stdout line matching REGEX.
prints() {
	re=$1
	shift
	code=0
	"$bench" "$@" >"$tmp/out" 2>"$tmp/err" || code=$?
	if [ "$code" -ne 0 ] || ! grep -Eq "$re" "$tmp/out"; then
		echo "FAIL: haven-bench $* exited $code, stdout: $(cat "$tmp/out"), stderr: $(cat "$tmp/err")"
		fails=$((fails + 1))
	fi
}

refused ""
refused "" nosuch
refused consent abc
refused consent 0
refused consent 100 0
refused consent 100 1 0
refused consent 100 1 2 warm
refused consent 100 1 2 3 4
refused capacity 5
refused store 0
refused kdf 0
refused kdf 1 0
refused kdf x
refused kdf 1 1 1
refused json 0
refused json 10 20
refused http 0
refused compare 10
refused compare 64 16 0
refused nng --serve ipc:///nowhere 0
refused nng ipc:///nowhere 0 1 1
refused rpc ipc:///nowhere 1 0 1
refused http 2 x
refused soak
refused soak 0
refused soak x
refused soak 1441
refused soak 1 0
refused soak 1 2 3
refused http 1 1 1 1
refused alerts 0
refused alerts 10 -1
refused alerts 10 10 x y

n='[0-9]+'
prints "^consent subjects=300 checks_per_s=$n check_p99_us=$n echo_per_s=$n\$" consent 300 1 2
prints "^consent subjects=300 checks_per_s=$n check_p99_us=$n echo_per_s=$n\$" consent 300 1 2 cold
prints "^kdf alg=scrypt ln=$n r=$n p=$n hashes=2 hash_ms=$n\\.$n hash_max_ms=$n\\.$n hash_cpu_ms=$n\\.$n mem_kib=$n rss_peak_kib=$n totp_verify_per_s=$n\$" kdf 2 1
prints "^consent subjects=200 checks_per_s=$n check_p99_us=$n echo_per_s=$n\$" consent 200 1 2 durable cold
prints "^alerts n=5 webhook_p50_ms=$n\\.$n webhook_p99_ms=$n\\.$n smtp_p50_ms=$n\\.$n smtp_p99_ms=$n\\.$n\$" alerts 5 5
prints "^json json_bytes=$n proto_bytes=$n encode_per_s=$n decode_per_s=$n pack_per_s=$n unpack_per_s=$n\$" json 200
prints "^http json_qps=$n proto_qps=$n rpc_qps=$n threads=2 calls=50 size=64\$" http 2 50 64
# Both echo servers started, both echoes run at 1, 8 and 32 in flight, servers stopped.
prints "^compare inflight=32 size=16 calls=$n nng_qps=$n nng_p50_us=$n rpc_qps=$n rpc_p50_us=$n rpc_vs_nng=$n\\.$n nng_cpu_us=$n\\.$n/$n\\.$n rpc_cpu_us=$n\\.$n/$n\\.$n\$" compare 64 16 1
if [ "$(grep -c '^compare ' "$tmp/out")" -ne 3 ]; then
	echo "FAIL: haven-bench compare printed $(grep -c '^compare ' "$tmp/out") lines, not 3"
	fails=$((fails + 1))
fi

if [ "$fails" -ne 0 ]; then
	echo "bench_smoke: $fails failed"
	exit 1
fi
echo "bench_smoke: ok"
