#!/usr/bin/env bash
# Set up (if needed) and run the checks: ruff, mypy on selector/, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# the trainers' own libraries, which tests/test_trainers.py loads the exports with (cached: a rerun only checks)
bash scripts/install_trainers.sh
. .venv/bin/activate
ruff check selector tests scripts
ruff format --check selector tests scripts
mypy selector
pytest -q "$@"
