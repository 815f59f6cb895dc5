#!/usr/bin/env bash
# What the web UI and its browser tests need: Node modules from the lockfile, Debian's Chromium
# (never a downloaded browser), and the production build in web/dist that the server serves.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "Please install: ${need[*]} (e.g. sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
fi

node -e 'const [a, b] = process.versions.node.split(".").map(Number);
  if (a < 20 || (a === 20 && b < 19)) { console.error(`Node ${process.versions.node} is too old: Vite 7 needs 20.19 or newer`); process.exit(1); }'

cd web
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
npm run build --silent
