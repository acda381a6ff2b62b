#!/usr/bin/env bash
# The README's main job: set everything up, run the embedded budgeted search (studies/quickstart.yaml:
# Fashion-MNIST, 40 MFLOPs at 224x224), then write its Pareto report to reports/quickstart.html.
# Re-running resumes the study up to its requested number of trials.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/nasprune search studies/quickstart.yaml --workers 2 "$@"   # 2 processes of one torch thread each
.venv/bin/nasprune report --study quickstart
echo "open reports/quickstart.html; export the best network with: .venv/bin/nasprune export --study quickstart --trial best"
