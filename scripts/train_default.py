"""Train the classifier the project ships (classifiers/default/) from the seeds, the project's own demo
corpus, and only the openly licensed files of ../shared/corpus. Their labels are not used: they are an
unlabelled sample the teacher labels from the seeds, like any user's corpus. The card lists every file
and its licence.

    python scripts/train_default.py --corpus ../shared/corpus --out classifiers/default
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from selector.config import load_config
from selector.paths import demo_corpus_dir
from selector.train import train

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


def licences(path: Path) -> list[str]:
    seen: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            lic = json.loads(line).get("license")
            if lic and lic not in seen:
                seen.append(lic)
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="../shared/corpus")
    ap.add_argument("--out", default="classifiers/default")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    files = [corpus / f for f in OPEN_FILES]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"missing corpus files: {', '.join(missing)}")
    demo = sorted(demo_corpus_dir().glob("*.jsonl"))
    # This corpus is small (about 2,600 documents) and, unlike a web dump, about 15% on-theme (themes/,
    # the demo corpus): the teacher takes a larger top share as pseudo positives and student positives.
    cfg = load_config().replace("train", pseudo_positive_fraction=0.01, student_positive_fraction=0.03)
    card = train(
        [*map(str, files), *map(str, demo)], cfg, args.out, progress=lambda m: print(m, file=sys.stderr)
    )
    card["training_data"] = {
        "note": "Unlabelled sample for the teacher; only openly licensed text and the project's own writing.",
        "files": [{"file": f, "licences": licences(corpus / f)} for f in OPEN_FILES]
        + [
            {"file": f"selector/demo/{p.name}", "licences": ["Apache-2.0 (written by the selector project)"]}
            for p in demo
        ],
        "seeds": "configs/seeds/*.jsonl, written by the selector project (Apache-2.0)",
    }
    card["trained_on"]["shard_names"] = OPEN_FILES + [f"selector/demo/{p.name}" for p in demo]
    (Path(args.out) / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({"gates": card["gates"], "validation": card["validation"]}, indent=2))


if __name__ == "__main__":
    main()
