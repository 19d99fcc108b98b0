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

# Real Oak stage0 (hats launcher serve --stage0) needs QEMU >= 8: bookworm's 7.2 has no
# x2APIC under TCG and stage0 panics. Then bookworm-backports' qemu-system-x86 is installed,
# with the suite added by name and pinned at priority 100, so nothing else upgrades from it.
QEMU_MIN_MAJOR=8
qemu_major() {
  qemu-system-x86_64 --version 2>/dev/null | sed -n '1s/^QEMU emulator version \([0-9]*\)\..*/\1/p'
}
if [ "$(qemu_major)" -ge "$QEMU_MIN_MAJOR" ] 2>/dev/null; then
  step "QEMU $(qemu_major).x: runs Oak stage0"
else
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  if [ "$codename" != bookworm ]; then
    printf 'setup: QEMU < %s and this is not Debian bookworm (%s): install QEMU >= %s for stage0\n' \
      "$QEMU_MIN_MAJOR" "${codename:-unknown}" "$QEMU_MIN_MAJOR" >&2
  else
    step "installing qemu-system-x86 from bookworm-backports (QEMU >= $QEMU_MIN_MAJOR, for stage0)"
    SOURCES=/etc/apt/sources.list.d/hats-bookworm-backports.sources
    PREFS=/etc/apt/preferences.d/hats-bookworm-backports
    mirror="$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/debian.sources \
      2>/dev/null | head -n1)"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
      "${mirror:-http://deb.debian.org/debian}" /usr/share/keyrings/debian-archive-keyring.gpg \
      | $SUDO tee "$SOURCES" >/dev/null
    printf 'Package: *\nPin: release n=bookworm-backports\nPin-Priority: 100\n' \
      | $SUDO tee "$PREFS" >/dev/null
    run_logged $SUDO apt-get update
    run_logged env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
      -t bookworm-backports qemu-system-x86
    if [ "$(qemu_major)" -ge "$QEMU_MIN_MAJOR" ] 2>/dev/null; then
      step "QEMU $(qemu_major).x installed from bookworm-backports"
    else
      printf 'setup: FAILED: qemu-system-x86_64 is still older than %s\n' "$QEMU_MIN_MAJOR" >&2
      exit 1
    fi
  fi
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
