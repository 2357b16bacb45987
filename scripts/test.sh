#!/usr/bin/env bash
# test.sh - installs what is missing, builds haven three times with warnings as errors (plain
# gcc RelWithDebInfo; gcc Debug with AddressSanitizer + UndefinedBehaviorSanitizer; clang
# Release, the build type a user picks for production) and runs the tests in each build (the
# slowest whole-node tests not in all three, see run);
# then fuzzes every decoder for 10 s each (scripts/fuzz.sh --quick: clang, libFuzzer, ASan +
# UBSan), failing on any crash.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh clang clang-format python3-protobuf protobuf-compiler python3-aiosmtpd nodejs npm chromium gdb
scripts/format.sh --check     # the C style of .clang-format, before anything is built
scripts/web.sh                # the web app's npm packages (package-lock.json) and web/vendor
export HAVEN_WEB_REQUIRED=1   # the browser test runs here, never skips
jobs=$(nproc)

passed=0 # tests passed over all builds (a failure stops the script)

# run DIR SKIP CMAKE_ARGS...: builds in DIR and runs every test whose name does not match the
# regular expression SKIP ("" runs all). The slow whole-node tests do not run in every build,
# which keeps CI within its 20 minutes: the fault tests (I/O faults in turn, the crash loop,
# power cuts, hostile peers: tens of node restarts each) run in the plain build only, the
# allocation-failure sweep there and under ASan; the browser test in the plain and ASan
# builds; the clang Release build runs everything else.
run() {
  local dir=$1 skip=$2; shift 2
  cmake -S . -B "$dir" -DHAVEN_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" ${skip:+-E "$skip"} | tee "$dir/ctest.log"
  passed=$((passed + $(sed -n 's/.*tests passed, 0 tests failed out of \([0-9]*\).*/\1/p' \
    "$dir/ctest.log")))
}

echo "== plain build =="
run build "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== sanitizer build (ASan + UBSan) =="
run build-asan '^fault_' -DCMAKE_BUILD_TYPE=Debug -DHAVEN_SANITIZE=ON
echo "== release build (clang) =="
CC=clang run build-release '^(web_test|fault_.*|alloc_it|matrix_http_it)$' -DCMAKE_BUILD_TYPE=Release
echo "== fuzzing (libFuzzer, 10 s per harness) =="
scripts/fuzz.sh --quick 10
echo "all builds: $passed passed, 0 failed"
