"""Embedding speed on this machine, and what each faster route costs in fidelity: the measurements behind
docs/measured.md's "why the cascade is below half the fastText rate".

Embeds `--docs` documents of ../shared/corpus/haystack longer than 1,500 characters (like the documents the
gate lets through: they fill the model's 256 tokens) with the configured model, and reports documents per
second and the cosine of each embedding to the float32 one (min and mean) for:

- float32; bf16 autocast (what `selector` uses where the CPU has bf16); bf16 weights;
- int8 dynamic quantization of the linear layers (torch, default settings);
- float32 and int8 ONNX Runtime (dynamic quantization, default settings), when `onnxruntime` and `onnx`
  are installed (not a dependency); the ONNX routes assume a BERT-style model with mean pooling, as
  MiniLM is;
- bf16 autocast at 128 tokens (a different embedding, not an approximation: compare its quality with
  `scripts/quality_ceiling.py --max-tokens 128`).

    python scripts/bench_embed.py --corpus ../shared/corpus --docs 256
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def load_texts(corpus: Path, n: int) -> list[str]:
    from bench_read import haystack_docs

    long = (d["text"][:2048] for d in haystack_docs(corpus) if len(d["text"]) > 1500)
    return list(itertools.islice(long, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_embed.json")
    args = ap.parse_args()
    import torch

    from selector.core.config import load_config
    from selector.score.embed import resolve_model

    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    texts = load_texts(Path(args.corpus), args.docs)
    if not texts:
        sys.exit(f"no haystack documents under {args.corpus}; pass --corpus.")
    cfg = load_config()
    model = SentenceTransformer(resolve_model(cfg.embedding.model), device="cpu")
    model.max_seq_length = 256
    bf16: Callable[[], contextlib.AbstractContextManager[object]] = lambda: torch.autocast(  # noqa: E731
        "cpu", dtype=torch.bfloat16
    )
    fp32: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext

    def encode(
        m: object, ctx: Callable[[], contextlib.AbstractContextManager[object]]
    ) -> tuple[float, np.ndarray]:
        with torch.inference_mode(), ctx():
            m.encode(texts[:32], batch_size=32)  # type: ignore[attr-defined]
            t0 = time.time()
            e = m.encode(texts, batch_size=32, normalize_embeddings=True)  # type: ignore[attr-defined]
            dt = time.time() - t0
        e = np.asarray(e, dtype=np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        return len(texts) / dt, e

    rows: list[dict[str, object]] = []
    rate, ref = encode(model, fp32)

    def report(name: str, rate: float, e: np.ndarray) -> None:
        cos = (e * ref).sum(axis=1)
        rows.append(
            {
                "route": name,
                "docs_per_s": round(rate, 1),
                "cos_min": round(float(cos.min()), 5),
                "cos_mean": round(float(cos.mean()), 5),
            }
        )
        print(
            f"{name:34s} {rate:7.1f} docs/s   cosine to float32: min {cos.min():.5f} mean {cos.mean():.5f}",
            flush=True,
        )

    report("float32", rate, ref)
    report("bf16 autocast (selector)", *encode(model, bf16))
    report("bf16 weights", *encode(copy.deepcopy(model).to(torch.bfloat16), fp32))
    q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    report("int8 dynamic (torch)", *encode(q, fp32))
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        print("onnxruntime not installed: ONNX routes skipped (pip install onnxruntime onnx)")
    else:
        tok = model.tokenizer
        bert: torch.nn.Module = model[0].auto_model  # type: ignore[assignment]

        class Wrap(torch.nn.Module):
            def __init__(self, m: torch.nn.Module):
                super().__init__()
                self.m = m

            def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
                return self.m(input_ids=a, attention_mask=b, token_type_ids=c).last_hidden_state

        with tempfile.TemporaryDirectory() as tmp:
            f32, i8 = Path(tmp) / "model.onnx", Path(tmp) / "model-int8.onnx"
            enc = tok(texts[:2], padding=True, truncation=True, max_length=256, return_tensors="pt")
            names = ["input_ids", "attention_mask", "token_type_ids"]
            axes = {k: {0: "batch", 1: "seq"} for k in [*names, "hidden"]}
            torch.onnx.export(
                Wrap(bert).eval(),
                tuple(enc[k] for k in names),
                str(f32),
                input_names=names,
                output_names=["hidden"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
            quantize_dynamic(str(f32), str(i8), weight_type=QuantType.QInt8)
            for name, path in (("float32 ONNX Runtime", f32), ("int8 ONNX Runtime", i8)):
                so = ort.SessionOptions()
                so.intra_op_num_threads = args.threads
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                order = np.argsort([len(t) for t in texts])
                out = np.zeros_like(ref)
                warm = tok(texts[:32], padding=True, truncation=True, max_length=256, return_tensors="np")
                sess.run(None, {k: warm[k].astype(np.int64) for k in names})  # warm-up, as for torch
                t0 = time.time()
                for i in range(0, len(texts), 32):
                    idx = order[i : i + 32]
                    e = tok(
                        [texts[j] for j in idx],
                        padding=True,
                        truncation=True,
                        max_length=256,
                        return_tensors="np",
                    )
                    h = sess.run(None, {k: e[k].astype(np.int64) for k in names})[0]
                    mask = e["attention_mask"][..., None].astype(np.float32)
                    v = (h * mask).sum(1) / mask.sum(1)
                    out[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
                report(name, len(texts) / (time.time() - t0), out)
    model.max_seq_length = 128
    report("bf16 autocast, 128 tokens", *encode(model, bf16))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"docs": len(texts), "threads": args.threads, "routes": rows}, indent=2)
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
