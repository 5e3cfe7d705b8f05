#!/usr/bin/env bash
# The main job: set everything up, then serve the demo on http://127.0.0.1:3000/
# (pass --host/--port to change; any other pyserver demo option works too).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pyserver demo "$@"
