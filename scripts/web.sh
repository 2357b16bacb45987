#!/usr/bin/env bash
# web.sh - installs the web app's npm packages exactly as package-lock.json pins them (npm ci)
# and copies the front end's libraries into web/vendor, where the node serves them. Skips the
# install when node_modules is already at the lock's state. Needs node and npm (scripts/deps.sh
# installs Debian's nodejs and npm when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node web/tools/vendor.mjs
