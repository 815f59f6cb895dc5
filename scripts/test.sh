#!/usr/bin/env bash
# Sets everything up (Python, Node, Chromium, PostgreSQL + pgvector, Redis), then runs the whole
# check: lint (ruff), types (mypy, tsc), web unit tests (vitest), and every Python test,
# browser and scale-out ones included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/setup-web.sh
bash scripts/services.sh install  # the tests start their own servers from these packages

echo "== ruff" && .venv/bin/ruff check src tests bench && .venv/bin/ruff format --check src tests bench
echo "== mypy" && .venv/bin/mypy
echo "== web: typecheck and unit tests" && (cd web && npm run --silent typecheck && npm test --silent)
# The browser and scale-out tests must run here, never skip: a missing piece is a failure.
echo "== pytest" && FAC_REQUIRE_WEB_E2E=1 FAC_REQUIRE_SERVICES=1 .venv/bin/python -m pytest "$@"
