"""Train (and quantize) one fastText model in a fresh process: `python -m selector.train.fasttext_worker JSON`.

Why a process of its own: with fasttext-numpy2 0.10.4, a second `train_supervised` in the same process
fails at random with "Encountered NaN" (measured: 4 of 6 repeats on one file), while the first one in a
fresh process always succeeds and gives byte-identical models. A process per model keeps training
deterministic and reliable.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    import fasttext

    job = json.loads(sys.argv[1])
    model = fasttext.train_supervised(input=job["input"], verbose=0, **job["params"])
    model.save_model(job["bin"])
    if job.get("ftz"):
        model.quantize(input=job["input"], retrain=True, qnorm=True, cutoff=job["cutoff"], thread=1)
        model.save_model(job["ftz"])


if __name__ == "__main__":
    main()
