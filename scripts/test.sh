#!/usr/bin/env bash
# test.sh - installs what is missing, builds haven twice (plain, and with AddressSanitizer +
# UndefinedBehaviorSanitizer) with warnings as errors, and runs every test in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)

run() {
  local dir=$1; shift
  cmake -S . -B "$dir" -DHAVEN_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

echo "== plain build =="
run build -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== sanitizer build (ASan + UBSan) =="
run build-asan -DCMAKE_BUILD_TYPE=Debug -DHAVEN_SANITIZE=ON
