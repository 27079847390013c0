#!/usr/bin/env bash
# The Debian tools some tests drive: chromium and its driver (the /docs page test) and promtool
# (the alert rules test), and the Node verifier's npm packages. Installed when missing and this
# runs as root (CI, the project's machines); elsewhere the tests that need them say why they skip.
set -euo pipefail

# jose and standardwebhooks, the libraries of the Node verifiers (tests/node, pinned by its
# package-lock.json), where npm is; without npm those tests skip and say so.
node_dir="$(dirname "$0")/../tests/node"
if command -v npm >/dev/null 2>&1 && { [ ! -d "$node_dir/node_modules/jose" ] || [ ! -d "$node_dir/node_modules/standardwebhooks" ]; }; then
  echo "installing the Node verifier's packages (npm ci in tests/node)"
  npm ci --prefix "$node_dir" --no-audit --no-fund --silent || echo "npm ci in tests/node failed" >&2
fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test tools missing (${missing[*]}): install them with apt-get as root, or their tests skip" >&2
  exit 0
fi
echo "installing test tools: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "could not install ${missing[*]}: the tests that need them skip and say why" >&2
fi
