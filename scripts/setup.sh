#!/usr/bin/env bash
# Installs what a fresh machine lacks: nats-server (from the OS packages) and the npm
# dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; exit 1; fi
}

if command -v nats-server >/dev/null 2>&1 || [ -n "${NATS_SERVER_BIN:-}" ]; then
  echo "setup: nats-server present: $(nats-server --version 2>/dev/null || echo "$NATS_SERVER_BIN")"
elif command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing nats-server with apt-get"
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq nats-server
else
  cat >&2 <<'MSG'
setup: nats-server is missing and this system has no apt-get.
Install nats-server 2.9 or newer with your package manager (for example
`dnf install nats-server`, `apk add nats-server`, `brew install nats-server`),
or set NATS_SERVER_BIN to its path, then run `npm run setup` again.
MSG
  exit 1
fi

# busybox-static gives the end-to-end tests a tiny root filesystem to chroot into.
if ! command -v busybox >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq busybox-static || \
    echo "setup: busybox-static not installed; rootfs tests will say so" >&2
fi

# `npm install` (not `npm ci`): it keeps the locked versions, and npm 11's `ci` refuses
# this lock file over an optional Windows-only dependency of vite that it never records.
npm install --no-audit --no-fund
npm run build --silent
echo "setup: done. Run \`npm start\` for a host, \`npm test\` for the suite."
