"""Run in .venv-trainers/main: load the OLMo-core export with SourceMixtureDatasetConfig.from_yaml, build
the mixture on the `.npy` files `dolma tokens` wrote, and print the tokens it takes from each source.

Usage: python olmo_check.py SPEC.json   (SPEC: export, seq_len)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from olmo_core.data.source_mixture import SourceMixtureDatasetConfig


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    config = SourceMixtureDatasetConfig.from_yaml(spec["export"])
    config.render_tables = False
    mixture = config.build(npdtype=np.uint16, sequence_length=spec["seq_len"])
    tokens = {s.name: sum(p.tokens for p in s.path_tokens) for s in mixture.sources}
    files = {s.name: len(s.path_tokens) for s in mixture.sources}
    print(json.dumps({"tokens": tokens, "files": files, "requested": config.requested_tokens}))


if __name__ == "__main__":
    main()
