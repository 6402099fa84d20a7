"""Fine-tune the embedding model on the labels (`train.finetune_epochs`): the sentence-transformers model
learns the labelled documents and the seeds, and the classifier carries the result in `encoder/`. Under
`"auto"` (the default) it runs `AUTO_EPOCHS` epochs where the training sample holds at least
`train.finetune_min_labels` human-labelled documents and the model is a real one, and not otherwise.

The objective: a linear layer per theme on the normalised sentence embedding (times 10, so the logits have
room), a binary cross-entropy per theme masked to the examples labelled for that theme (a document labelled
only for honesty teaches nothing about cooperation), positives weighted by negatives / positives (at most
50) so a rare theme is not drowned. Every layer of the encoder trains: AdamW, `finetune_lr` for the encoder
and 1e-2 for the linear layer, linear warm-up over the first 10% of steps and linear decay, batches of
`finetune_batch`, bf16 autocast on CPUs that have it. The linear layer is thrown away: the teacher is refitted
on the fine-tuned embeddings, so everything after this step is the ordinary training. Measured by work in
docs/quality.md ("Fine-tuning the encoder on the labels").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selector.core.config import Config
from selector.core.errors import ConfigError
from selector.score.embed import cpu_has_bf16, is_hashing, resolve_model
from selector.score.text import embedding_input

ENCODER_DIR = "encoder"  # inside the classifier directory
AUTO_EPOCHS = 3  # what `finetune_epochs = "auto"` runs: measured at 1,000 labels (docs/quality.md)
MAX_POS_WEIGHT = 50.0
HEAD_LR = 1e-2
LOGIT_SCALE = 10.0


def epochs_for(cfg: Config, n_labelled: int) -> tuple[int, str | None]:
    """The fine-tuning epochs for a sample holding `n_labelled` human-labelled documents, and why there are none
    under "auto" (None when there are, or when fine-tuning is off by the config)."""
    e = cfg.train.finetune_epochs
    if e != "auto":
        return int(e), None
    if is_hashing(cfg.embedding.model):
        return 0, f"embedding.model {cfg.embedding.model} is a hashing stand-in"
    if n_labelled < cfg.train.finetune_min_labels:
        return 0, (
            f"{n_labelled:,} human-labelled documents in the sample, fewer than train.finetune_min_labels = "
            f"{cfg.train.finetune_min_labels:,}"
        )
    return AUTO_EPOCHS, None


def check_finetunable(cfg: Config) -> None:
    """Refuse settings fine-tuning cannot work with, before any document is read (an explicit epoch count)."""
    if cfg.train.finetune_epochs == "auto" or not cfg.train.finetune_epochs:
        return
    if is_hashing(cfg.embedding.model):
        raise ConfigError(
            f"train.finetune_epochs = {cfg.train.finetune_epochs} but embedding.model is {cfg.embedding.model!r}, "
            "a hashing stand-in with nothing to fine-tune. Use a sentence-transformers model, or set "
            "train.finetune_epochs = 0."
        )


def targets(
    themes: Sequence[str], n_docs: int, human_rows: dict[str, dict[int, int]], seed_targets: np.ndarray
) -> np.ndarray:
    """(n_docs + n_seeds) x themes: 1 on, 0 off, -1 not labelled for that theme; documents first, then seeds."""
    y = np.full((n_docs, len(themes)), -1, dtype=np.int8)
    for j, t in enumerate(themes):
        for row, v in human_rows.get(t, {}).items():
            y[row, j] = v
    return np.vstack([y, seed_targets])


def finetune_encoder(
    cfg: Config, epochs: int, texts: list[str], y: np.ndarray, out_dir: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Fine-tune `cfg.embedding.model` for `epochs` on `texts` with targets `y` (see `targets`), save it to
    `out_dir` and return what the card records of it."""
    model, _head, info = finetune_model(cfg, texts, y, progress, epochs)
    model.save(str(out_dir))
    return info


def finetune_model(
    cfg: Config, texts: list[str], y: np.ndarray, progress: Callable[[str], None], epochs: int | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """The fine-tuning itself, for `epochs` (default `train.finetune_epochs`): (the fine-tuned
    SentenceTransformer in eval mode, its linear layer per theme, what the card records)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tc = cfg.train
    if epochs is None:
        epochs = AUTO_EPOCHS if tc.finetune_epochs == "auto" else int(tc.finetune_epochs)
    n_epochs = epochs
    t0 = time.time()
    torch.manual_seed(tc.seed)
    try:
        model = SentenceTransformer(resolve_model(cfg.embedding.model), device=cfg.embedding.device)
    except Exception as e:  # sentence-transformers raises many types (OSError, ValueError, HF errors)
        raise ConfigError(
            f"embedding.model {cfg.embedding.model!r} could not be loaded for fine-tuning ({type(e).__name__}: {e})."
        ) from e
    model.max_seq_length = cfg.embedding.max_tokens
    prepare = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers 5 renamed it
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = int(get_dim() or 0)
    yt = torch.tensor(y, dtype=torch.float32)
    known = yt >= 0
    pos = ((yt == 1) & known).sum(0).clamp(min=1)
    neg = ((yt == 0) & known).sum(0).clamp(min=1)
    pos_weight = (neg / pos).clamp(1.0, MAX_POS_WEIGHT)
    head = torch.nn.Linear(dim, y.shape[1]).to(cfg.embedding.device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": tc.finetune_lr}, {"params": head.parameters(), "lr": HEAD_LR}],
        weight_decay=0.01,
    )
    steps = n_epochs * math.ceil(len(texts) / tc.finetune_batch)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps)
    )
    prepared = embedding_input(texts, cfg.embedding.max_tokens)
    dev = cfg.embedding.device
    device_type = "cuda" if dev.startswith("cuda") else "cpu"
    # as the embedder decides (score/embed.py), so training and scoring run the model the same way
    bf16 = cfg.embedding.bf16 == "on" or (
        cfg.embedding.bf16 == "auto" and (device_type == "cuda" or cpu_has_bf16())
    )
    rng = np.random.default_rng(tc.seed)
    model.train()
    losses = []
    for ep in range(n_epochs):
        order = rng.permutation(len(texts))
        total = 0.0
        for k in range(0, len(order), tc.finetune_batch):
            idx = order[k : k + tc.finetune_batch]
            feats = prepare([prepared[i] for i in idx])
            feats = {name: v.to(dev) if hasattr(v, "to") else v for name, v in feats.items()}
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                emb = model(feats)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb.float(), dim=1)
            logits = head(emb * LOGIT_SCALE)
            b_y, b_known = yt[idx].to(logits.device), known[idx].to(logits.device)
            loss_el = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, b_y.clamp(min=0), pos_weight=pos_weight.to(logits.device), reduction="none"
            )
            loss = (loss_el * b_known).sum() / b_known.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(round(total / max(len(texts), 1), 4))
        progress(
            f"fine-tuning {cfg.embedding.model}: epoch {ep + 1}/{n_epochs}, loss {losses[-1]:.4f} "
            f"({time.time() - t0:.0f}s)"
        )
    model.eval()
    info = {
        "base_model": cfg.embedding.model,
        "examples": len(texts),
        "labelled_per_theme": {
            t: {"on": int((yt[:, j] == 1).sum()), "off": int((yt[:, j] == 0).sum())}
            for j, t in enumerate(cfg.theme_names)
        },
        "epochs": n_epochs,
        "lr": tc.finetune_lr,
        "batch": tc.finetune_batch,
        "steps": steps,
        "loss_per_epoch": losses,
        "seconds": round(time.time() - t0, 1),
    }
    return model, head, info
