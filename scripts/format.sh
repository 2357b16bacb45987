#!/usr/bin/env bash
# format.sh - the project's C style (.clang-format, clang-format 14 from Debian 12) on every
# tracked .c and .h file. `scripts/format.sh` rewrites them; `scripts/format.sh --check` changes
# nothing and fails, naming the files, when one is not formatted (scripts/test.sh runs it first).
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h')
if [ "${1:-}" = --check ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "format.sh: not formatted (run scripts/format.sh): ${bad[*]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
  exit 0
fi
clang-format -i "${files[@]}"
