#!/usr/bin/env bash
# Set up the trainers' own libraries, which tests/test_trainers.py runs on the exports (by subprocess), in
# venvs of their own under .venv-trainers/: their pins clash with selector's and with each other's
# (dolma 1.2.1 needs numpy<2, datatrove 0.9 numpy>=2, LLM Foundry 0.22 torch 2.7 and Streaming 0.12).
#   main      megatron-core 0.16.1, ai2-olmo-core 3.0.0, mosaicml-streaming 0.13.0, tokenizers
#   foundry   the llm-foundry 0.22.0 wheel, as source (it cannot run on this machine's torch)
#   nanotron  nanotron main (commit 2411b022) + datatrove 0.9.0. nanotron main is not on PyPI (its 0.4 there has no
#             Nanoset) and the project ships none of its code: give its source as a tarball or folder in
#             $NANOTRON_SRC (default ~/.cache/selector/nanotron-2411b022.tar.gz, a `git archive` of that commit);
#             without it this venv is not built and the nanotron test skips, saying so.
#   dolma     dolma 1.2.1 (its `dolma mix` and `dolma tokens`)
# The venvs live in $SELECTOR_TRAINER_VENVS (default ~/.cache/selector/venv-trainers, so clones on one machine
# share them: dolma alone builds for about 16 minutes), linked from .venv-trainers in the checkout.
# Idempotent: a venv whose stamp matches this script is only checked. Pass venv names to build only those.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ROOT=${SELECTOR_TRAINER_VENVS:-$HOME/.cache/selector/venv-trainers}
NANOTRON_SRC=${NANOTRON_SRC:-$HOME/.cache/selector/nanotron-2411b022.tar.gz}
TORCH="torch==2.13.0"  # the CPU build on this machine's disk; any other pulls a multi-GB CUDA build
want=$(sha256sum scripts/install_trainers.sh | cut -c1-16)
mkdir -p "$ROOT"
if [ ! -e .venv-trainers ] || [ -L .venv-trainers ]; then ln -sfn "$ROOT" .venv-trainers; fi

pipi() { "$ROOT/$1/bin/python" -m pip install --quiet --disable-pip-version-check "${@:2}"; }

# Streaming imports torchvision at import time (for its vision datasets, which the text path never uses), and
# PyPI's torchvision builds need CUDA torch: their failing extension makes `import torchvision` raise on this
# machine's CPU torch. torchvision 0.16.2 tolerates a missing extension, so it goes in without its dependencies.
vision_shim() { pipi "$1" --no-deps --force-reinstall "torchvision==0.16.2"; }

build() {
  local name=$1 check=$2
  local stamp="$ROOT/$name/.installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$ROOT/$name/bin/python" -c "$check" 2>/dev/null; then
    return 0
  fi
  echo "install_trainers: building $ROOT/$name" >&2
  local t0=$SECONDS
  rm -rf "${ROOT:?}/$name"
  "$PY" -m venv "$ROOT/$name"
  case $name in
    main)
      pipi main "$TORCH"
      pipi main "megatron-core==0.16.1" "ai2-olmo-core==3.0.0" "mosaicml-streaming==0.13.0" "tokenizers>=0.20"
      vision_shim main
      ;;
    foundry)
      # LLM Foundry 0.22 pins torch<2.7.1 (on PyPI only as a multi-GB CUDA build) and composer 0.32, whose
      # imports fail on this machine's torch: its wheel is kept as source, and the test reads
      # build_text_dataloader's signature from it
      "$ROOT/foundry/bin/python" -m pip download --quiet --no-deps "llm-foundry==0.22.0" -d "$ROOT/foundry/wheels"
      ;;
    nanotron)
      pipi nanotron "$TORCH"
      # datatrove 0.10 renamed DatatroveFolderDataset's folder_path, which nanotron main still passes: 0.9.0
      pipi nanotron "datatrove==0.9.0" "dacite" "numba" "transformers>=4.45,<5" "datasets>=3,<4.1" "torchtyping" \
        "safetensors" \
        "tokenizers" "triton" "orjson"
      # nanotron main declares numpy<2, which datatrove 0.9 cannot have: it goes in without its dependencies
      pipi nanotron --no-deps "$NANOTRON_SRC"
      ;;
    dolma)
      pipi dolma "dolma==1.2.1"
      ;;
  esac
  echo "$want" > "$stamp"
  echo "install_trainers: $ROOT/$name ready in $((SECONDS - t0)) s" >&2
}

declare -A CHECKS=(
  [main]="import megatron.core.datasets.blended_megatron_dataset_builder, olmo_core.data, streaming, tokenizers"
  [foundry]="import glob, sys; sys.exit(not glob.glob('$ROOT/foundry/wheels/llm_foundry-0.22.0-*.whl'))"
  [nanotron]="import nanotron, datatrove.utils.dataset, numba, triton, dacite"
  [dolma]="import dolma"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(main foundry nanotron dolma)
for n in "${names[@]}"; do
  if [ "$n" = nanotron ] && [ ! -e "$NANOTRON_SRC" ]; then
    echo "install_trainers: no nanotron source at $NANOTRON_SRC (nanotron main is not on PyPI): the nanotron test will skip" >&2
    continue
  fi
  build "$n" "${CHECKS[$n]}"
done
