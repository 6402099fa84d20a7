"""Run in .venv-trainers/main: write each stream's documents as Megatron `.bin/.idx` at the exported prefix
with megatron-core's IndexedDatasetBuilder (what tools/preprocess_data.py writes with), then build the blend
as Megatron-LM does from the export (`--data-args-path` words through get_blend_from_list, the `--split`
of the printed command line) with BlendedMegatronDatasetBuilder, and print the samples each prefix draws.

Usage: python megatron_check.py SPEC.json   (SPEC: blend, sidecar, vocab, train_samples, seq_len,
streams {prefix: [jsonl.gz files]})"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

import numpy
import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
from megatron.core.datasets.utils import get_blend_from_list

sys.path.insert(0, str(Path(__file__).parent))
import _tok  # noqa: E402


class Tokenizer:
    """What GPTDataset asks of a tokenizer: the vocabulary size and the end-of-document token."""

    def __init__(self, tok):
        self.vocab_size = tok.get_vocab_size()
        self.eod = tok.token_to_id(_tok.EOS)
        self.pad = self.eod
        self.unique_identifiers = {"class": "Tokenizer", "vocab_size": self.vocab_size}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    tok = _tok.load(spec["vocab"])
    for prefix, files in spec["streams"].items():
        Path(prefix).parent.mkdir(parents=True, exist_ok=True)
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=numpy.uint16)
        for f in files:
            with gzip.open(f, "rt") as fh:
                for line in fh:
                    ids = tok.encode(json.loads(line)["text"]).ids
                    builder.add_item(torch.tensor(ids, dtype=torch.int64))
                    builder.end_document()
        builder.finalize(prefix + ".idx")
    words = Path(spec["blend"]).read_text().split()  # as Megatron-LM reads --data-args-path
    command = next(
        line for line in Path(spec["sidecar"]).read_text().splitlines() if "pretrain_gpt.py" in line
    )
    split = re.search(r"--split (\S+)", command).group(1)
    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=spec["seq_len"],
        blend=get_blend_from_list(words),
        split=split,
        tokenizer=Tokenizer(tok),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        path_to_cache=None,  # no cache: Megatron would need a torch.distributed group to write one
    )
    train, valid, test = BlendedMegatronDatasetBuilder(
        GPTDataset, [spec["train_samples"], 0, 0], lambda: True, config
    ).build()
    counts = numpy.bincount(train.dataset_index, minlength=len(train.datasets))
    prefixes = [d.dataset.path_prefix for d in train.datasets]
    first = train[0]["tokens"]
    print(
        json.dumps(
            {
                "split": split,
                "train_samples": len(train),
                "valid": None if valid is None else len(valid),
                "samples": {p: int(n) for p, n in zip(prefixes, counts, strict=True)},
                "sample_tokens": int(first.numel()),
            }
        )
    )


if __name__ == "__main__":
    main()
