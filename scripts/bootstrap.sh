#!/usr/bin/env bash
# Install what the tests and the sandbox need into ./.venv and ./node_modules (idempotent, quiet when done).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "bootstrap: $PYTHON not found; install Python 3.11+" >&2; exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "bootstrap: npm not found; install Node.js 18+ (Azurite, the storage emulator, comes from npm)" >&2; exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

nstamp=node_modules/.package-lock.sha256
nwant=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -x node_modules/.bin/azurite ] && [ ! -f "$nstamp" ]; then
  echo "$nwant" > "$nstamp"   # installed before stamps existed: trust it rather than wipe it under a running Azurite
fi
if [ ! -x node_modules/.bin/azurite ] || [ "$(cat "$nstamp" 2>/dev/null)" != "$nwant" ]; then
  echo "bootstrap: installing Azurite from npm"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$nwant" > "$nstamp"
fi
