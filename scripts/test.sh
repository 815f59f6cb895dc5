#!/usr/bin/env bash
# Sets everything up, then runs the whole check: lint (ruff), types (mypy), tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff" && .venv/bin/ruff check src tests bench && .venv/bin/ruff format --check src tests bench
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"
