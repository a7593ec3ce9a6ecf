#!/usr/bin/env bash
# Installs what a fresh machine lacks: nats-server, crun and runc, chromium and graphviz, and the vm
# backend's qemu and crun (from the OS packages), and the npm dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; exit 1; fi
}

# nats-server runs the bus; busybox-static gives containers their minimal default root
# filesystem (and the tests a tiny one to use); crun runs the containers inside the
# guests, with tini (tini-static) as each container's init; runc where a host asks for it
# (VC_OCI_RUNTIME=runc: the tests run the end-to-end scenarios through it too).
missing=()
if ! command -v nats-server >/dev/null 2>&1 && [ -z "${NATS_SERVER_BIN:-}" ]; then missing+=(nats-server); fi
if ! command -v busybox >/dev/null 2>&1; then missing+=(busybox-static); fi
if ! command -v crun >/dev/null 2>&1; then missing+=(crun); fi
if ! command -v runc >/dev/null 2>&1; then missing+=(runc); fi
if [ ! -x /usr/bin/tini-static ]; then missing+=(tini); fi
# Guests use ps (process lists) and ip (loopback in a new network namespace).
if ! command -v ps >/dev/null 2>&1; then missing+=(procps); fi
if ! command -v ip >/dev/null 2>&1; then missing+=(iproute2); fi
# The live page is tested in headless Chromium (driven by playwright-core, which
# downloads no browser); the DOT export is checked with Graphviz's dot.
if ! [ -x /usr/bin/chromium ] && [ -z "${CHROMIUM_BIN:-}" ]; then missing+=(chromium); fi
if ! command -v dot >/dev/null 2>&1; then missing+=(graphviz); fi
# The vm backend: qemu runs the VMs; crun goes into the guest image; xz unpacks the guest
# kernel (taken from Debian's linux-image-amd64 on first use, not installed).
vm_missing=()
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then vm_missing+=(qemu-system-x86); fi
if ! command -v crun >/dev/null 2>&1; then vm_missing+=(crun); fi
if ! command -v xz >/dev/null 2>&1; then vm_missing+=(xz-utils); fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: nats-server present: $(nats-server --version 2>/dev/null || echo "$NATS_SERVER_BIN")"
elif command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${missing[*]} with apt-get"
  need_root apt-get update -qq
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  cat >&2 <<MSG
setup: missing ${missing[*]}, and this system has no apt-get.
Install nats-server 2.9 or newer with your package manager (for example
\`dnf install nats-server\`, \`apk add nats-server\`, \`brew install nats-server\`),
or set NATS_SERVER_BIN to its path; install busybox (static) for the end-to-end tests.
Then run \`npm run setup\` again.
MSG
  exit 1
fi

if [ ${#vm_missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing ${vm_missing[*]} for the vm backend"
  need_root apt-get update -qq
  # Without recommends: qemu's would bring a desktop's worth of packages.
  need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${vm_missing[@]}"
elif [ ${#vm_missing[@]} -gt 0 ]; then
  echo "setup: the vm backend needs ${vm_missing[*]}: install them with your package manager" >&2
fi

# `npm install` (not `npm ci`): it keeps the locked versions, and npm 11's `ci` refuses
# this lock file over an optional Windows-only dependency of vite that it never records.
npm install --no-audit --no-fund
npm run build --silent
echo "setup: done. Run \`npm start\` for a host, \`npm test\` for the suite."
