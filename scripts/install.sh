#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine: system
# packages, the Python package with its extras, and the npm packages used by the
# tests. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server: the proxy's shared cache in the tests; wrk: the load test of the proxy.
apt_packages=(redis-server wrk)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: apt-get install ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the service on install; the tests start their own servers.
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi

command -v node >/dev/null || { echo "install: node is required (https://nodejs.org), then run again" >&2; exit 1; }

# The distribution was named js-host (1.x) before js-host-server: an install under the old
# name would shadow this one (the 2015 client, 0.x, is left alone).
if python3 -m pip show js-host 2>/dev/null | grep -q '^Version: 1\.'; then
  echo "install: pip uninstall js-host (this project, installed under its old name)"
  python3 -m pip uninstall -q -y js-host
fi

echo "install: pip install -e .[proxy,test]"
python3 -m pip install -q --disable-pip-version-check -e '.[proxy,test]'

echo "install: npm packages for the tests (js-host 0.11.7, the reference implementation)"
npm install --prefix tests/npm --no-audit --no-fund --loglevel=error >/dev/null

if [ -f example/package.json ]; then
  echo "install: npm packages for the example app"
  npm install --prefix example --no-audit --no-fund --loglevel=error >/dev/null
fi
