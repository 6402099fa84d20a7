#!/usr/bin/env bash
# Set up (if needed) and run the whole job on the embedded demo corpus: train a classifier on it from the
# seeds, score it, select what to upsample and write the manifest. Output in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/selector run --out runs/demo "$@"
echo "scores: runs/demo/scores/  classifier card: runs/demo/classifier/card.json" >&2
