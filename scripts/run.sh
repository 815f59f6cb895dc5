#!/usr/bin/env bash
# Sets everything up, then runs one task with the CLI on the embedded defaults (in-process
# server, SQLite, the local SmolLM2 model) unless FAC_LLM_BASE_URL / FAC_API_BASE say otherwise.
#   bash scripts/run.sh "Build a REST API with JWT authentication" --language python --framework fastapi
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
    set -- "Build a REST API with JWT authentication" --language python --framework fastapi
fi
exec .venv/bin/facilitair run "$@"
