"""Run in .venv-trainers/dolma: write the tests' tokenizer (tokenizer.json, with dolma's own `tokenizers`),
then tokenize each stream with `dolma tokens` into the exported OLMo-core directory (`.npy` memmaps).

Usage: python dolma_tokens.py SPEC.json   (SPEC: vocab, tokenizer, streams {npy dir: [jsonl.gz files]})"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _tok  # noqa: E402


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    tok = _tok.load(spec["vocab"])
    tok.save(spec["tokenizer"])
    dolma = str(Path(sys.executable).with_name("dolma"))
    files = {}
    for dest, docs in spec["streams"].items():
        # dolma appends the eos token to each document; OLMo-core takes int(requested * ratio) tokens anyway
        cmd = [dolma, "tokens", "--documents", *docs, "--destination", dest,
               "--tokenizer.name_or_path", spec["tokenizer"], "--tokenizer.eos_token_id", "1",
               "--tokenizer.pad_token_id", "0", "--dtype", "uint16", "--processes", "1", "--seed", "3"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        files[dest] = sorted(p.name for p in Path(dest).glob("*.npy"))
    print(json.dumps({"files": files, "dolma": shutil.which("dolma") or dolma}))


if __name__ == "__main__":
    main()
