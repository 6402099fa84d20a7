"""Run in .venv-trainers/dolma: `dolma -c MIX mix` on the exported mix.yaml, then print, per output
directory, the ids and texts it wrote.

Usage: python dolma_mix.py SPEC.json   (SPEC: mix)"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import yaml


def main() -> None:
    mix = Path(json.loads(Path(sys.argv[1]).read_text())["mix"])
    dolma = str(Path(sys.executable).with_name("dolma"))
    proc = subprocess.run([dolma, "-c", str(mix), "mix"], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"dolma -c {mix} mix failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    outputs: dict[str, list[list[str]]] = {}
    for st in yaml.safe_load(mix.read_text())["streams"]:
        path = st["output"]["path"]
        if path in outputs:
            continue
        outputs[path] = []
        for f in sorted(Path(path).glob("*.json*")):
            with gzip.open(f, "rt") if f.suffix == ".gz" else f.open() as fh:
                outputs[path] += [[d["id"], d["text"]] for d in map(json.loads, fh)]
    print(json.dumps({"outputs": outputs}))


if __name__ == "__main__":
    main()
