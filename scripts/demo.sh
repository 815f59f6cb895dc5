#!/usr/bin/env bash
# Sets everything up, starts a real server and runs one task through it, streaming the debate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
