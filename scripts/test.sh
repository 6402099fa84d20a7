#!/usr/bin/env bash
# Set up (if needed) and run the checks: ruff, mypy on selector/, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/install_llm_server.sh  # llama.cpp's server + SmolLM2-135M for tests/test_annotate.py
# the trainers' own libraries, which tests/test_trainers.py loads the exports with (cached: a rerun only checks)
bash scripts/install_trainers.sh
. .venv/bin/activate
ruff check selector tests scripts
ruff format --check selector tests scripts
mypy selector
pytest -q "$@"
