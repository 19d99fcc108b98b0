#!/usr/bin/env bash
# One-time set-up on a fresh Debian bookworm machine (as root, or with sudo):
# the Debian tools the builder and its tests use, and a virtualenv in .venv
# with hats installed in editable mode plus its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# mmdebstrap: the default base; xz/zstd/gzip/tar: inputs and reference checks;
# systemd: systemd-analyze for unit checks; python3-venv: the virtualenv.
PACKAGES=(mmdebstrap xz-utils zstd gzip tar systemd python3-venv ca-certificates)
# systemd-journal-remote: the syslogd tests write real journal files with it.
PACKAGES+=(systemd-journal-remote)
# qemu-system-x86: boots the image (hats launcher serve --vmm qemu); binutils: readelf,
# which the ELF tests compare against; dpkg: dpkg-deb unpacks the guest kernel.
PACKAGES+=(qemu-system-x86 binutils dpkg)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=23"
.venv/bin/python -m pip install -q -e '.[dev]'
echo "hats: set-up done; run .venv/bin/hats --help"
