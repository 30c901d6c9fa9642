#!/usr/bin/env bash
# Install what the tests and the sandbox need into ./.venv and ./node_modules (idempotent, quiet when done).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python 3.11 exactly: the deployed app runs Python 3.11 (infra/resources.bicep, functionAppConfig.runtime), and the
# pinned azure-functions 1.26.0 declares Requires-Python >=3.10,<3.13, so a 3.13 interpreter cannot even install it.
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "3.11" ]; then
      PYTHON=$candidate; break
    fi
  done
fi
PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "bootstrap: Python 3.11 not found. Install it (python.org, 'apt install python3.11 python3.11-venv'," >&2
  echo "           'brew install python@3.11' or 'pyenv install 3.11'), or point PYTHON= at a 3.11 interpreter." >&2
  exit 1
fi
python_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo unknown)
if [ "$python_version" != "3.11" ]; then
  echo "bootstrap: $PYTHON is Python $python_version; this project needs Python 3.11 (the version deployed to" >&2
  echo "           Azure; azure-functions 1.26.0 does not install on 3.13+). Install Python 3.11 (python.org," >&2
  echo "           'apt install python3.11 python3.11-venv', 'brew install python@3.11' or 'pyenv install 3.11')" >&2
  echo "           and run again, or set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "3.11" ]; then
  echo "bootstrap: .venv was made with another Python; delete it (rm -rf .venv) and run again." >&2; exit 1
fi

# Node.js: Azurite 3.37 (package-lock.json) declares "engines": {"node": ">=22"}. It runs on Node 20 here (the whole
# suite passes), but 22+ is what it supports; below 18 it does not start.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "bootstrap: Node.js with npm not found; install Node.js 22 LTS (nodejs.org, or 'nvm install 22'):" >&2
  echo "           Azurite, the storage emulator the tests use, comes from npm." >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "bootstrap: Node.js $(node --version) is too old for Azurite; install Node.js 22 LTS (nodejs.org, or 'nvm install 22')." >&2
  exit 1
fi
if [ "$node_major" -lt 22 ]; then
  echo "bootstrap: note: Node.js $(node --version); Azurite 3.37 declares node >=22. It works on 18-21 in practice;" >&2
  echo "           install Node.js 22 LTS (nodejs.org, or 'nvm install 22') to be within what it supports." >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt tools/requirements.txt | sha256sum | cut -d' ' -f1)
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

# Chromium for the admin page's browser tests (tests/browser): Playwright drives the system's Chromium
# (executable_path), since `playwright install` would download a browser. CHROMIUM= may point at another binary.
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing chromium (apt-get) for the admin page's browser tests"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      echo "bootstrap: WARNING: 'apt-get install chromium' failed: the admin page's browser tests will be skipped." >&2
    fi
  else
    echo "bootstrap: WARNING: no Chromium found, so the admin page's browser tests will be SKIPPED. Install it" >&2
    echo "           ('sudo apt-get install chromium' on Debian/Ubuntu, or your distribution's chromium package)," >&2
    echo "           or set CHROMIUM=/path/to/chromium (Chrome works too)." >&2
  fi
fi
