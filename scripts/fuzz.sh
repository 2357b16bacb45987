#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer harnesses of fuzz/ (clang, -DHAVEN_FUZZ=ON, ASan + UBSan, in
# build-fuzz/) and runs them on their seed corpora fuzz/corpus/<name>/ with fuzz/dict/<name>.dict.
#
#   scripts/fuzz.sh --quick [SECONDS]  each harness for SECONDS (20) on its corpus, two at a time;
#                                      new inputs are thrown away. Fails on any crash, leak,
#                                      timeout or sanitizer report (scripts/test.sh runs this).
#   scripts/fuzz.sh --hours N          each harness for N hours (a fraction is fine: 0.25), as
#                                      many at a time as there are cores (--jobs J), then merges
#                                      the new inputs into fuzz/corpus/<name>/: the named files
#                                      there (seeds, real inputs, regression-*) are kept, the
#                                      found ones (40 hex digits) are replaced by the smallest
#                                      set of found and new inputs that adds features to them
#                                      (libFuzzer -merge=1), so the corpus stays small.
#   scripts/fuzz.sh --minimise         only re-minimises fuzz/corpus/<name>/ as --hours does.
#   scripts/fuzz.sh --seeds            rewrites the generated seeds (fuzz/corpus/*/seed-*).
#   --only NAME                        one harness (rpc, pbjson, config, regions,
#                                      demo_network, receipt, audit).
#
# A crash leaves its input in build-fuzz/artifacts/<name>/ and the run fails; after the fix,
# copy the input into fuzz/corpus/<name>/ as regression-<what> (each harness runs its whole
# corpus first, so it stays fixed). Figures per harness (executions, cov, ft, corpus) go to
# stdout and build-fuzz/fuzz-report.txt. docs/reliability.md has the results of long runs.
set -euo pipefail
cd "$(dirname "$0")/.."

harnesses=(rpc pbjson config regions demo_network receipt audit connect http)
mode="" seconds=20 hours="" jobs=$(nproc) only=""
while [ $# -gt 0 ]; do
  case "$1" in
  --quick) mode=quick; if [[ "${2:-}" =~ ^[0-9]+$ ]]; then seconds=$2; shift; fi ;;
  --hours) mode=long; hours=${2:?--hours needs N}; shift ;;
  --seeds) mode=seeds ;;
  --minimise) mode=minimise ;;
  --jobs) jobs=${2:?--jobs needs J}; shift ;;
  --only) only=${2:?--only needs a harness name}; shift ;;
  *) echo "fuzz.sh: unknown argument '$1' (see the head of scripts/fuzz.sh)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$mode" ]; then
  echo "usage: scripts/fuzz.sh --quick [SECONDS] | --hours N [--jobs J] | --minimise | --seeds" \
    "[--only NAME]" >&2
  exit 2
fi
if [ -n "$only" ]; then
  [[ " ${harnesses[*]} " == *" $only "* ]] || { echo "fuzz.sh: no harness '$only'" >&2; exit 2; }
  harnesses=("$only")
fi
if [ "$mode" = long ]; then
  seconds=$(awk -v h="$hours" 'BEGIN { s = int(h * 3600); if (s < 1) exit 1; print s }') ||
    { echo "fuzz.sh: --hours needs a positive number" >&2; exit 2; }
fi

# libFuzzer's runtime for Debian's clang 14 is in libclang-rt-14-dev.
scripts/deps.sh clang libclang-rt-14-dev
build=build-fuzz
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAVEN_WERROR=ON \
  -DHAVEN_FUZZ=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target haven_fuzz >/dev/null

if [ "$mode" = seeds ]; then
  "$build/fuzz/fuzz_seeds" fuzz/corpus
  echo "fuzz.sh: generated seeds written under fuzz/corpus/"
  exit 0
fi

# Scratch files (the parsers that read a path, the demo network's store) on a tmpfs when there
# is one: on a disk they cost most of the time of a run.
scratch_root=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && scratch_root=/dev/shm
work=$(mktemp -d "$scratch_root/haven-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
report="$build/fuzz-report.txt"
: >"$report"
# The sanitizer options: cmake/sanitizers.env, the one place they are set.
while IFS='=' read -r name value; do
  case $name in
  ASAN_OPTIONS | UBSAN_OPTIONS) export "$name=$value" ;;
  esac
done <cmake/sanitizers.env

# Runs one harness for $seconds; its log in $work/<name>.log; returns libFuzzer's status.
run_one() {
  local name=$1 new="$work/$1.new" art="$build/artifacts/$1/" dict=()
  mkdir -p "$new" "$art" "$work/$1.tmp"
  [ -f "fuzz/dict/$name.dict" ] && dict=(-dict="fuzz/dict/$name.dict")
  TMPDIR="$work/$1.tmp" "$build/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$art" \
    "${dict[@]}" "$new" "fuzz/corpus/$name" >"$work/$name.log" 2>&1
}

# One line of figures from a harness's log.
summary() {
  local name=$1 status=$2 log="$work/$1.log" execs cov ft corp
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1) || true
  cov=$( (grep -Eo 'cov: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  ft=$( (grep -Eo 'ft: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  corp=$( (grep -Eo 'corp: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  printf '%-13s %-6s execs %-10s cov %-5s ft %-6s corpus %s\n' "$name" \
    "$([ "$status" -eq 0 ] && echo ok || echo FAILED)" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" | tee -a "$report"
}

# The inputs libFuzzer found in directory $1 (named by their SHA-1), or with "!" the others.
found() {
  find "$1" -maxdepth 1 -regextype posix-extended -type f ${2:+"$2"} -regex '.*/[0-9a-f]{40}' -print0
}

# Re-minimises fuzz/corpus/$1 with the inputs of the directories after it (see --hours).
minimise() {
  local name=$1 min="$work/$1.min" before after
  shift
  before=$(ls "fuzz/corpus/$name" | wc -l)
  rm -rf "$min" && mkdir -p "$min" "$work/$name.tmp"
  found "fuzz/corpus/$name" ! | xargs -r -0 cp -t "$min/"
  TMPDIR="$work/$name.tmp" "$build/fuzz/fuzz_$name" -merge=1 -close_fd_mask=3 "$min" \
    "fuzz/corpus/$name" "$@" >"$work/$name.merge.log" 2>&1 ||
    { tail -20 "$work/$name.merge.log" >&2; return 1; }
  found "fuzz/corpus/$name" | xargs -r -0 rm -f
  found "$min" | xargs -r -0 cp -t "fuzz/corpus/$name/"
  after=$(ls "fuzz/corpus/$name" | wc -l)
  echo "$name: corpus $before -> $after files ($(du -sk "fuzz/corpus/$name" | cut -f1) KiB)" |
    tee -a "$report"
}

if [ "$mode" = minimise ]; then
  for name in "${harnesses[@]}"; do minimise "$name"; done
  exit 0
fi

parallel=2
[ "$mode" = long ] && parallel=$jobs
echo "== fuzzing ${harnesses[*]}: ${seconds} s each, $parallel at a time"
failed=()
pids=() names=()
wait_first() {
  local pid=${pids[0]} name=${names[0]} status=0
  wait "$pid" || status=$?
  summary "$name" "$status"
  if [ "$status" -ne 0 ]; then
    failed+=("$name")
    echo "---- $name: the end of its log ($work/$name.log)" >&2
    grep -E -A40 '==[0-9]+==ERROR|runtime error|SUMMARY|deadly signal|Test unit written' \
      "$work/$name.log" | head -80 >&2 || tail -40 "$work/$name.log" >&2
  fi
  pids=("${pids[@]:1}") names=("${names[@]:1}")
}
for name in "${harnesses[@]}"; do
  [ ${#pids[@]} -ge "$parallel" ] && wait_first
  run_one "$name" &
  pids+=($!) names+=("$name")
done
while [ ${#pids[@]} -gt 0 ]; do wait_first; done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
if [ "$mode" = long ]; then
  for name in "${harnesses[@]}"; do minimise "$name" "$work/$name.new"; done
fi
echo "fuzz.sh: no crash (figures in $report)"
