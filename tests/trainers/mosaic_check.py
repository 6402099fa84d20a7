"""Run in .venv-trainers/main: write each stream as MDS at the exported `local` path with Streaming's
MDSWriter, as LLM Foundry's convert_dataset_json.py --concat_tokens SEQ_LEN writes it (`tokens`,
ndarray:int32, SEQ_LEN tokens per sample, the remainder dropped), then build the exported streams with
`Stream(**s)` and `StreamingDataset(streams=..., epoch_size=...)`, iterate one epoch and print the samples
each stream gave.

Usage: python mosaic_check.py SPEC.json   (SPEC: export, vocab, streams {name: [jsonl.gz files]})"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from streaming import MDSWriter, Stream, StreamingDataset

sys.path.insert(0, str(Path(__file__).parent))
import _tok  # noqa: E402


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    tok = _tok.load(spec["vocab"])
    loader = yaml.safe_load(Path(spec["export"]).read_text())["train_loader"]
    ds_cfg = loader["dataset"]
    seq_len = ds_cfg["max_seq_len"]
    owner: dict[bytes, str] = {}
    for name, s in ds_cfg["streams"].items():
        buf: list[int] = []
        with MDSWriter(out=s["local"], columns={"tokens": "ndarray:int32"}) as w:
            for f in spec["streams"][name]:
                with gzip.open(f, "rt") as fh:
                    for line in fh:
                        buf += tok.encode(json.loads(line)["text"]).ids
                        while len(buf) >= seq_len:
                            sample = np.asarray(buf[:seq_len], dtype=np.int32)
                            buf = buf[seq_len:]
                            w.write({"tokens": sample})
                            owner[sample.tobytes()] = name
    streams = [Stream(**s) for s in ds_cfg["streams"].values()]
    dataset = StreamingDataset(
        streams=streams,
        epoch_size=ds_cfg["epoch_size"],
        shuffle=ds_cfg["shuffle"],
        batch_size=1,
        shuffle_seed=9176,
    )
    counts = dict.fromkeys(ds_cfg["streams"], 0)
    n = 0
    for sample in dataset:
        counts[owner[np.asarray(sample["tokens"], dtype=np.int32).tobytes()]] += 1
        n += 1
    print(
        json.dumps(
            {
                "samples": counts,
                "epoch": n,
                "choose": {name: int(s.choose) for name, s in zip(ds_cfg["streams"], streams, strict=True)},
                "drop_last": loader["drop_last"],
                "num_workers": loader["num_workers"],
            }
        )
    )


if __name__ == "__main__":
    main()
