#!/usr/bin/env bash
# A whole local scale-out in one command, for trying it: PostgreSQL + pgvector and Redis
# (scripts/services.sh), API processes that only accept, stream and cancel, and worker
# processes that run the tasks. Ctrl-C stops everything it started.
#
#   bash scripts/scaleout.sh                 # 2 API processes on :8000, 2 workers
#   API=3 WORKERS=4 PORT=9000 bash scripts/scaleout.sh
#
# FAC_LLM_BASE_URL / FAC_LLM_API_KEY / FAC_CONFIG are passed on as usual; keys are made with
# `FAC_DATABASE_URL=… .venv/bin/facilitair keys create --name NAME`, as printed below.
set -euo pipefail
cd "$(dirname "$0")/.."

API=${API:-2}
WORKERS=${WORKERS:-2}
PORT=${PORT:-8000}

bash scripts/setup.sh
while IFS='=' read -r name value; do
    export "$name=$value"
done < <(bash scripts/services.sh start)

pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

.venv/bin/facilitair serve --api-only --workers "$API" --port "$PORT" --log-level warning &
pids+=($!)
for _ in $(seq "$WORKERS"); do
    .venv/bin/facilitair worker --log-level warning &
    pids+=($!)
done

cat >&2 <<EOF
Facilitair scale-out: $API API processes on http://127.0.0.1:$PORT, $WORKERS workers.
  export FAC_DATABASE_URL=$FAC_DATABASE_URL FAC_REDIS_URL=$FAC_REDIS_URL
  .venv/bin/facilitair keys create --name me        # then FAC_API_BASE=http://127.0.0.1:$PORT
Ctrl-C stops them (the services keep running: bash scripts/services.sh stop).
EOF
wait
