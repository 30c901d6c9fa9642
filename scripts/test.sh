#!/usr/bin/env bash
# The one test command: install everything (Python packages, Azurite), lint, type-check, scan the IaC, run the suite.
# Azurite and the stand-in servers are started by the tests themselves on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy (strict, shared/)"
.venv/bin/mypy
echo "== checkov (infra/, Bicep)"
# --skip-download: no calls to Prisma Cloud (tests and CI stay offline); every skip is justified inline in the Bicep.
.venv/bin/checkov -d infra --framework bicep --skip-download --compact --quiet
echo "== pytest"
.venv/bin/python -m pytest "$@"
