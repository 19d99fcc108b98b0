#!/usr/bin/env bash
# One-time set-up on a fresh Debian bookworm machine (as root, or with sudo):
# the Debian tools the builder and its tests use, and a virtualenv in .venv
# with the hash-locked development tools (requirements/dev.lock) and hats
# installed in editable mode. On a machine that has everything it only checks,
# in a few seconds. Package managers' output goes to a log file, whose path is
# printed when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
LOG="${HATS_SETUP_LOG:-${TMPDIR:-/tmp}/hats-setup.log}"
: >"$LOG"

step() { printf 'setup: %s\n' "$*"; }
run_logged() {
  # Run a command with its output in the log; on failure show the log's tail.
  if ! "$@" >>"$LOG" 2>&1; then
    printf 'setup: FAILED: %s\n' "$*" >&2
    tail -n 20 "$LOG" | sed 's/^/  | /' >&2
    printf 'setup: full log: %s\n' "$LOG" >&2
    exit 1
  fi
}

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
  step "installing Debian packages: ${missing[*]}"
  run_logged $SUDO apt-get update
  run_logged env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
else
  step "Debian packages: all ${#PACKAGES[@]} present"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$PYTHON" --version 2>&1)"
  run_logged "$PYTHON" -m venv .venv
fi

# The locked tools and hats itself are (re)installed only when the lock file or
# pyproject.toml changed since the last set-up (or hats is not importable).
STAMP=.venv/.hats-setup-stamp
want="$(cat requirements/dev.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && .venv/bin/python -c "import hats" 2>/dev/null; then
  step "Python packages: up to date with requirements/dev.lock"
else
  step "installing the locked Python packages (requirements/dev.lock)"
  run_logged .venv/bin/python -m pip install --require-hashes -r requirements/dev.lock
  step "installing hats (editable) from $(pwd)"
  run_logged .venv/bin/python -m pip install --no-deps --no-build-isolation -e .
  echo "$want" >"$STAMP"
  step "installed: $(.venv/bin/python -m pip list --format=freeze 2>/dev/null | grep -c .) Python packages, hats $(.venv/bin/python -c 'import hats; print(hats.__version__)')"
fi
step "done; run .venv/bin/hats --help"
