#!/usr/bin/env bash
# Refresh requirements/dev.lock: every runtime and development dependency of
# hats (pyproject.toml's dependencies, the "dev" extra and the build system)
# pinned with the SHA-256 of every file PyPI has for that version. Run it after
# changing a dependency range in pyproject.toml, commit the result; set-up and
# CI install exactly what it lists (pip --require-hashes).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q "pip-tools==7.7.0"
"$tools/bin/pip-compile" -q --extra dev --all-build-deps --generate-hashes --allow-unsafe \
  --strip-extras --no-emit-index-url --no-emit-find-links --upgrade \
  -o requirements/dev.lock pyproject.toml
echo "requirements/dev.lock refreshed; run scripts/setup.sh to install it"
