#!/usr/bin/env bash
# Set up nasprune from nothing: system packages (where apt is available and we are root), a virtual
# environment in .venv, the CPU build of PyTorch first (a plain "torch" requirement can pull a multi-GB
# CUDA build), then nasprune itself with its test extras. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${NASPRUNE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_PIN=${NASPRUNE_TORCH:-torch==2.13.0}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && [ "${NASPRUNE_SKIP_APT:-0}" != 1 ]; then
    want=""
    for pkg in dataset-fashion-mnist chromium chromium-driver postgresql; do
        dpkg -s "$pkg" >/dev/null 2>&1 || want="$want $pkg"
    done
    if [ -n "$want" ]; then
        echo "setup: apt-get install$want"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $want >/dev/null
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "$TORCH_PIN"
"$VENV/bin/python" -m pip install -q -e ".[test]"
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, optuna; print("torch", torch.__version__, "optuna", optuna.__version__)'))"
