"""Run in .venv-trainers/nanotron: tokenize each stream into the exported Nanoset folder with datatrove's
DocumentTokenizer (its own `.ds` writer), parse the exported data stage with nanotron's
get_config_from_dict(stage, config_class=DatasetStageArgs), build a Nanoset from the parsed arguments as
nanotron's trainer does, and print the samples each folder gives.

Nanoset's call into datatrove is mapped onto datatrove 0.9.0 (see _folder_dataset). The tokenizer here is a
tokenizer.json file, not a hub name: datatrove writes no final `.metadata` file
(save_final_metadata=False), since nanotron would load the tokenizer it names with AutoTokenizer.

Usage: python nanotron_check.py SPEC.json   (SPEC: export, vocab, tokenizer, seq_len, train_samples,
streams {folder: [jsonl.gz files]})"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import numpy as np
import yaml
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import DocumentTokenizer

sys.path.insert(0, str(Path(__file__).parent))
import _tok  # noqa: E402


class _NoFlashAttn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """nanotron.config imports flash_attn (through its attention modules) at import time, and flash-attn
    builds only against CUDA. Config parsing and Nanoset never call it: every flash_attn module resolves to
    one whose attributes raise if used, so a call would fail loudly rather than pass."""

    def find_spec(self, name, path=None, target=None):
        if name == "flash_attn" or name.startswith("flash_attn."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []
        mod.__version__ = "2.6.3"  # the newest nanotron's fast-modeling extra allows (>=2.5,<2.7)

        def missing(attr: str):
            def fail(*_a, **_k):
                raise RuntimeError(
                    f"{spec.name}.{attr} called, but flash-attn is not installed (CPU machine)"
                )

            return fail

        mod.__getattr__ = missing  # type: ignore[method-assign]
        return mod

    def exec_module(self, module):
        return None


sys.meta_path.insert(0, _NoFlashAttn())
import nanotron.data.nanoset as nanoset_module  # noqa: E402
from datatrove.utils.dataset import DatatroveFolderDataset  # noqa: E402
from nanotron.config import DatasetStageArgs  # noqa: E402
from nanotron.config.config import get_config_from_dict  # noqa: E402
from nanotron.data.nanoset import Nanoset  # noqa: E402


def _folder_dataset(folder_path, filename_pattern, eos_token_id=None, return_positions=False, **kwargs):
    """nanotron main calls DatatroveFolderDataset(folder_path=..., eos_token_id=..., return_positions=...), the
    signature of a datatrove main that no release has: every release on PyPI takes data_folder (0.5-0.10 also
    positions_from_eos_token_id, and a filename_pattern that is a suffix, not nanotron's `<folder>/*.ds` glob).
    This maps nanotron's call onto datatrove 0.9.0's reader of the same files."""
    assert filename_pattern == f"{folder_path}/*.ds", filename_pattern
    return DatatroveFolderDataset(
        data_folder=folder_path,
        filename_pattern=".ds",
        positions_from_eos_token_id=eos_token_id,
        return_positions=return_positions,
        **kwargs,
    )


nanoset_module.DatatroveFolderDataset = _folder_dataset


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    _tok.load(spec["vocab"]).save(spec["tokenizer"])
    for folder, files in spec["streams"].items():
        reader = JsonlReader(str(Path(files[0]).parent), glob_pattern="part-*.jsonl.gz")
        tokenizer = DocumentTokenizer(
            output_folder=folder,
            tokenizer_name_or_path=spec["tokenizer"],
            eos_token=None,
            shuffle_documents=False,
            save_final_metadata=False,
        )
        tokenizer.run(reader.run())  # writes the folder's .ds files (a pipeline's last step)
    stage_dict = yaml.safe_load(Path(spec["export"]).read_text())["data_stages"][0]
    stage = get_config_from_dict(stage_dict, config_class=DatasetStageArgs)
    ds = stage.data.dataset
    import torch.distributed as dist  # nanotron logs through its process group: one CPU rank, as torchrun -n 1

    dist.init_process_group("gloo", init_method=f"file://{Path.cwd() / 'pg'}", rank=0, world_size=1)
    nanoset = Nanoset(
        dataset_folders=ds.dataset_folder,
        dataset_weights=ds.dataset_weights,
        sequence_length=spec["seq_len"],
        token_size=2,
        train_split_num_samples=spec["train_samples"],
        random_seed=stage.data.seed,
    )
    counts = np.bincount(nanoset.dataset_index, minlength=len(ds.dataset_folder))
    print(
        json.dumps(
            {
                "type": type(ds).__name__,
                "samples": {f: int(n) for f, n in zip(ds.dataset_folder, counts, strict=True)},
                "lengths": dict(zip(ds.dataset_folder, map(int, nanoset.dataset_lengths), strict=True)),
                "sample_tokens": int(len(nanoset[0]["input_ids"])),
            }
        )
    )


if __name__ == "__main__":
    main()
