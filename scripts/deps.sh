#!/usr/bin/env bash
# deps.sh - installs the Debian 12 packages haven builds and runs with, when missing, and the
# extra packages named as arguments (scripts/test.sh: the compilers of its builds, and
# python3-protobuf with protoc, the second JSON implementation pbjson_crosscheck runs, and
# python3-aiosmtpd, the real SMTP server of the alert tests and haven-bench alerts;
# scripts/fuzz.sh: clang and libclang-rt-14-dev, which holds clang 14's libFuzzer runtime;
# scripts/test.sh and scripts/quickstart.sh: nodejs and npm for the web app, chromium for its
# browser test). A node and npm already on the machine (another packaging of Node.js) count.
set -euo pipefail

packages=(
  build-essential cmake pkg-config openssl
  libnng-dev                          # messaging: REQ/REP, pub/sub, ipc and TLS transports
  libprotobuf-c-dev protobuf-c-compiler  # messages and service descriptors
  liblmdb-dev                         # the node's embedded store
  libssl-dev                          # cryptography (OpenSSL 3)
  libjansson-dev                      # JSON output of the CLI and receipts
  libcmocka-dev                       # unit tests
  libcurl4-openssl-dev curl           # alerts (SMTP, webhooks); a real HTTP client for the Connect tests
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  case "$p" in nodejs | npm) command -v "${p%js}" >/dev/null && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps.sh: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
