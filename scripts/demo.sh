#!/usr/bin/env bash
# Set up (if needed) and run the whole job on the embedded demo corpus: train a classifier on it from the
# seeds, then score it. Output in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/selector run --out runs/demo "$@"
echo "scores: runs/demo/scores/  classifier card: runs/demo/classifier/card.json" >&2
