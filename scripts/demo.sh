#!/usr/bin/env bash
# The local demo: install what is missing (Python packages, Azurite), then run the integration end to end on
# 127.0.0.1 with Azurite and the ON24, Dataverse and Key Vault stand-ins. Extra arguments go to the demo
# (e.g. --verbose, --seed N). Exit status 0 when every step produced the expected result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m sandbox demo "$@"
