"""Train the classifier the project ships (classifiers/default/) from the seeds, the project's own demo
corpus, and only the openly licensed files of ../shared/corpus; the openly licensed passages of
`themes/assessed_passages_2026_12` (read and labelled one by one) are its labels, as `selector train
--labels` takes them. The card lists every file, the labels' works and licences.

    python scripts/train_default.py --corpus ../shared/corpus --out classifiers/default

`--hold-out-fold K` (with `--folds N`) leaves the assessed works of fold K out of training altogether (their
text and their labels), for measuring the default on works it has never seen (scripts/eval_default.py).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from selector.core.config import load_config
from selector.core.keys import seeded_key
from selector.core.paths import demo_corpus_dir
from selector.train.run import train

# Files whose text itself is openly licensed (public domain, CC0, CC BY, CC BY-SA, MIT, Apache-2.0).
# Left out on purpose: research-use-only sources (newsgroups, Reuters, IMDb, BBC, Stampy) and pages whose
# text stays with the site owners even where the benchmark around it is open (wcxb, C4, Common Crawl).
OPEN_FILES = [
    "haystack/stackexchange_coffee_beer.jsonl.gz",
    "haystack/stackexchange_datascience_meta.jsonl.gz",
    "haystack/wikipedia_pages_dclm.jsonl.gz",
    "themes/axelrod_ipd_docs_mit.jsonl.gz",
    "themes/claude_constitution_cc0.jsonl.gz",
    "themes/ncase_evolution_of_trust_cc0.jsonl.gz",
    "themes/pg_aesop_fables.jsonl.gz",
    "themes/pg_kropotkin_mutual_aid_chapters.jsonl.gz",
    "themes/pg_pinocchio_lying_chapters.jsonl.gz",
    "themes/pg_smiles_character_chapters.jsonl.gz",
    "themes/pg_twain_kant_honesty.jsonl.gz",
    "hardneg/distill_ml_articles_ccby.jsonl.gz",
    "hardneg/ml_repo_docs.jsonl.gz",
    "hardneg/pg_hostile_machines_fiction.jsonl.gz",
    "hardneg/wikipedia_language_model.jsonl.gz",
]
ASSESSED = "themes/assessed_passages_2026_12.jsonl.gz"
THEMES = ["honesty", "cooperation", "cooperative_ai", "ai_risk"]


def is_open(licence: str) -> bool:
    """Openly licensed text: a stated open licence or the public domain (the Mattermost handbook states
    none, so it stays out: evaluation only)."""
    lic = licence.lower()
    if "no licence" in lic or "no license" in lic:
        return False
    return any(k in lic for k in ("cc-by", "cc by", "cc0", "apache", "mit", "public domain", "gutenberg"))


def work_fold(work: str, folds: int) -> int:
    return seeded_key(0, "default-fold", work) % folds


def licences(path: Path) -> list[str]:
    seen: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            lic = json.loads(line).get("license")
            if lic and lic not in seen:
                seen.append(lic)
    return seen


def assessed_labels(
    corpus: Path, work_dir: Path, hold_out: int | None, folds: int
) -> tuple[Path, Path, dict[str, object]]:
    """The open assessed passages (less the held-out fold's works) as a shard to train on and a labels CSV:
    each passage on for the themes it was labelled with and off for the others (classic texts and
    handbooks: none is about AI). Returns (shard, labels, what the card records)."""
    shard = work_dir / "assessed_passages_open.jsonl"
    labels = work_dir / "assessed_labels.csv"
    works: dict[str, Counter[str]] = {}
    lic_count: Counter[str] = Counter()
    left_out: Counter[str] = Counter()
    with (
        gzip.open(corpus / ASSESSED, "rt", encoding="utf-8") as fh,
        shard.open("w") as out,
        labels.open("w", newline="") as lf,
    ):
        w = csv.writer(lf)
        w.writerow(["doc_id", "theme", "label", "reviewer", "time"])
        for line in fh:
            d = json.loads(line)
            meta = d.get("meta") or {}
            work = meta.get("work", "?")
            if not is_open(d.get("license") or ""):
                left_out[f"{work}: no open licence"] += 1
                continue
            if hold_out is not None and work_fold(work, folds) == hold_out:
                left_out[f"{work}: held out (fold {hold_out})"] += 1
                continue
            out.write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")
            on = set(meta.get("themes") or [])
            for t in THEMES:
                w.writerow([d["id"], t, "on" if t in on else "off", "assessor", "2026-12"])
            c = works.setdefault(work, Counter())
            c["passages"] += 1
            for t in on:
                c[t] += 1
            lic_count[d["license"]] += 1
    info = {
        "file": ASSESSED,
        "note": "passages read and labelled one by one; each is on for its labelled themes, off for the rest",
        "works": {k: dict(v) for k, v in sorted(works.items())},
        "licences": dict(lic_count),
        "left_out": dict(left_out),
    }
    return shard, labels, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--out", default="classifiers/default")
    ap.add_argument("--hold-out-fold", type=int, default=None)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--no-labels", action="store_true", help="Train from the seeds alone (the old default).")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    files = [corpus / f for f in OPEN_FILES]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"missing corpus files: {', '.join(missing)}")
    demo = sorted(demo_corpus_dir().glob("*.jsonl"))
    # This corpus is small (about 3,000 documents) and, unlike a web dump, about 15% on-theme (themes/,
    # the demo corpus): the teacher takes a larger top share as pseudo positives and student positives.
    # The shipped classifier keeps the base MiniLM (finetune_epochs = 0): a fine-tuned encoder would add 90 MB to
    # the repository, and the default must score with the model every install has.
    cfg = load_config().replace(
        "train", pseudo_positive_fraction=0.01, student_positive_fraction=0.03, finetune_epochs=0
    )
    # the model ships in the repository: quantized (4 MB instead of 260 MB) unless that costs more than 0.05 AP
    cfg = cfg.replace("fasttext", max_quantize_ap_drop=0.05)
    with tempfile.TemporaryDirectory(prefix="selector-default-") as tmp:
        inputs = [*map(str, files), *map(str, demo)]
        label_info = None
        labels: list[str] = []
        if not args.no_labels:
            shard, lab, label_info = assessed_labels(corpus, Path(tmp), args.hold_out_fold, args.folds)
            inputs.append(str(shard))
            labels = [str(lab)]
        card = train(inputs, cfg, args.out, labels_path=labels, progress=lambda m: print(m, file=sys.stderr))
    card["training_data"] = {
        "note": "Only openly licensed text and the project's own writing. The assessed passages are labels "
        "(read one by one); every other file is an unlabelled sample for the teacher.",
        "files": [{"file": f, "licences": licences(corpus / f)} for f in OPEN_FILES]
        + [
            {"file": f"selector/demo/{p.name}", "licences": ["Apache-2.0 (written by the selector project)"]}
            for p in demo
        ],
        "labels": label_info,
        "seeds": "configs/seeds/*.jsonl, written by the selector project (Apache-2.0)",
    }
    names = OPEN_FILES + [f"selector/demo/{p.name}" for p in demo]
    card["trained_on"]["shard_names"] = names + ([ASSESSED + " (open licences only)"] if label_info else [])
    card["trained_on"]["human_labels_file"] = ASSESSED + " (open licences only)" if label_info else None
    card["label_sources"]["files"] = (
        [{"file": ASSESSED, "labels": card["label_sources"].get("labels", 0)}] if label_info else []
    )
    (Path(args.out) / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({"gates": card["gates"], "validation": card["validation"]}, indent=2))


if __name__ == "__main__":
    main()
