#!/usr/bin/env bash
# The README's test command: set everything up, then run the whole test suite (real end-to-end runs included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
