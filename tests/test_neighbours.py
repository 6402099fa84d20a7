"""Label neighbours (selector/score/neighbours.py): the labelled documents' embeddings as evidence beside the
head, in the teacher, in training's thresholds and in the classifier that scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from selector.core.config import load_config
from selector.core.errors import ClassifierError, ConfigError
from selector.core.paths import demo_corpus_dir
from selector.score.classifier import HEAD, Classifier
from selector.score.embed import make_embedder
from selector.score.head import predict_logistic
from selector.score.neighbours import LabelNeighbours, build_neighbours
from selector.train.run import matched_threshold, train

from .conftest import REPO, quick_config
from .test_teacher import run, setup, unit

DIM = 8


def cluster(centre: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return unit(np.eye(DIM)[centre] + 0.1 * rng.normal(size=(n, DIM)))


def test_evidence_is_the_similarity_to_labelled_positives_minus_negatives():
    pos, neg = cluster(0, 4, 1), cluster(1, 4, 2)
    nb = LabelNeighbours(
        np.vstack([pos, neg]), {"t": np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=np.int8)}, k=3, weight=10.0
    )
    near_pos, near_neg, far = cluster(0, 1, 3), cluster(1, 1, 4), cluster(5, 1, 5)
    ev = nb.evidence(np.vstack([near_pos, near_neg, far]))["t"]
    assert ev[0] > 0.5 and ev[1] < -0.5 and abs(ev[2]) < 0.2
    # exactly the formula: mean of the 3 largest similarities to positives minus the same for negatives
    s = near_pos @ np.vstack([pos, neg]).T
    want = np.sort(s[0, :4])[-3:].mean() - np.sort(s[0, 4:])[-3:].mean()
    assert ev[0] == pytest.approx(want, abs=1e-6)
    head = {"t": np.full(3, 0.5, dtype=np.float32)}
    p = nb.adjust(head, np.vstack([near_pos, near_neg, far]))["t"]
    assert p[0] > 0.99 and p[1] < 0.01 and 0.3 < p[2] < 0.7
    assert head["t"][0] == 0.5  # the input is not changed


def test_a_labelled_document_can_be_judged_without_itself():
    pos, neg = cluster(0, 3, 1), cluster(1, 3, 2)
    odd = unit(np.eye(DIM)[4:5] + 0.01)  # a labelled positive far from the other positives
    emb = np.vstack([pos, odd, neg])
    nb = LabelNeighbours(emb, {"t": np.array([1, 1, 1, 1, 0, 0, 0], dtype=np.int8)}, k=1, weight=10.0)
    with_self = nb.evidence(odd)["t"][0]
    without = nb.evidence(odd, exclude=np.array([3]))["t"][0]
    assert with_self == pytest.approx(1 - float((odd @ neg.T).max()), abs=1e-6)  # its own similarity, 1
    assert without < with_self - 0.5
    # exactly k positives, one of them excluded: the mean is over the k - 1 left
    nb3 = LabelNeighbours(emb, {"t": np.array([1, 1, 0, 1, 0, 0, 0], dtype=np.int8)}, k=3, weight=10.0)
    sims = odd @ emb.T
    want = (sims[0, 0] + sims[0, 1]) / 2 - np.sort(sims[0, [2, 4, 5, 6]])[-3:].mean()
    assert nb3.evidence(odd, exclude=np.array([3]))["t"][0] == pytest.approx(want, abs=1e-6)


def test_too_few_labels_or_no_weight_leave_the_head_alone():
    emb = np.vstack([cluster(0, 3, 1), cluster(1, 5, 2)])
    labels = {
        "a": np.array([1, 1, 0, 0, 0, 0, 0, 0], dtype=np.int8),
        "b": np.array([1, 1, 1] + [0] * 5, np.int8),
    }
    nb = LabelNeighbours(emb, labels, k=3, weight=10.0)
    assert nb.active == ["b"]  # "a" has 2 positives, fewer than k
    assert LabelNeighbours(emb, labels, k=3, weight=10.0, min_labels=4).active == []  # "b" has 3
    head = {t: np.full(2, 0.3, dtype=np.float32) for t in ("a", "b")}
    out = nb.adjust(head, cluster(0, 2, 9))
    assert (out["a"] == head["a"]).all() and (out["b"] > 0.9).all()
    assert LabelNeighbours(emb, labels, k=3, weight=0.0).active == []
    none, where = build_neighbours(["a"], emb, {"a": {0: 1, 3: 0}}, 3, 0.0)
    assert none is None and (where == -1).all()
    nb2, where = build_neighbours(["a", "b"], emb, {"a": {5: 1, 2: 0}, "b": {2: 1}}, 3, 10.0)
    assert nb2 is not None and where.tolist() == [-1, -1, 0, -1, -1, 1, -1, -1]
    assert nb2.labels["a"].tolist() == [0, 1] and nb2.labels["b"].tolist() == [1, -1]  # -1: not labelled


def test_the_teacher_takes_near_copies_of_labelled_positives_as_on_theme():
    """Documents of a kind the seeds never showed (axis 4), five of them labelled on-theme: the head fitted to
    the labels (the seeds a prior, the rest of the sample as background) labels few of the other seven
    on-theme for the student; with the neighbours the teacher labels them all."""
    docs, seeds, seed_emb = setup()
    rng = np.random.default_rng(7)
    new_kind = unit(np.eye(DIM)[4] + 0.1 * rng.normal(size=(12, DIM)))
    docs = np.vstack([docs, new_kind])
    first = len(docs) - 12
    human = {**{first + i: 1 for i in range(5)}, **{i: 0 for i in range(10, 20)}}  # the near misses: off
    off = run(docs, seeds, seed_emb, human, neighbour_weight=0.0)
    on = run(docs, seeds, seed_emb, human)
    assert off.neighbours is None and off.strict["t"][first + 5 :].sum() <= 2
    assert on.neighbours is not None and on.strict["t"][first + 5 :].all()
    assert on.info["t"]["label_neighbours"] == {"positive": 5, "negative": 10, "used": True}
    # the head itself is the same: the neighbours are evidence beside it, not a refit
    assert np.allclose(on.heads["t"][0], off.heads["t"][0])
    # a labelled document judged without itself gets the evidence an unlabelled one would
    p_self = on.probs(docs)["t"][first]
    p_loo = on.probs(docs, on.label_where)["t"][first]
    assert (
        p_self >= p_loo
        and p_loo > predict_logistic(docs[first : first + 1].astype(np.float64), *on.heads["t"])[0]
    )


def labels_csv(path, n_per_theme: int = 12) -> dict[str, list[str]]:
    """Labels from the demo corpus's own themes: up to `n_per_theme` on and as many off per theme."""
    docs = []
    for f in sorted(demo_corpus_dir().glob("*.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            docs.append((d["id"], (d.get("meta") or {}).get("themes") or []))
    rows, on = [], {}
    for t in ("honesty", "cooperation", "cooperative_ai", "ai_risk"):
        pos = [d for d, th in docs if t in th][:n_per_theme]
        neg = [d for d, th in docs if t not in th][:n_per_theme]
        on[t] = pos
        rows += [f"{d},{t},on,ana" for d in pos] + [f"{d},{t},off,ana" for d in neg]
    path.write_text("doc_id,theme,label,reviewer\n" + "\n".join(rows) + "\n")
    return on


def test_a_classifier_trained_with_labels_carries_and_scores_with_its_neighbours(tmp_path):
    cfg = quick_config()
    on = labels_csv(tmp_path / "labels.csv")
    card = train([demo_corpus_dir()], cfg, tmp_path / "clf", tmp_path / "labels.csv", progress=lambda m: None)
    nb = card["label_neighbours"]
    assert nb["k"] == 3 and nb["weight"] == 5.0 and nb["documents"] > 0
    assert all(v["used"] for v in nb["themes"].values() if v["positive"] >= 3 and v["negative"] >= 3)
    with np.load(tmp_path / "clf" / HEAD) as z:
        assert z["nb_emb"].shape == (nb["documents"], 64)
    need = max(nb["k"], nb["min_labels"])
    for t, v in nb["themes"].items():  # the threshold was matched to the head's own
        assert v["used"] == (v["positive"] >= need and v["negative"] >= need)
        assert ("threshold_head_only" in card["validation"][t]) == v["used"]
    clf = Classifier.load(tmp_path / "clf")
    assert clf.neighbours is not None and clf.neighbours.active
    assert (clf.neighbours.k, clf.neighbours.weight, clf.neighbours.min_labels) == (3, 5.0, 5)
    texts = [json.loads(x)["text"] for f in sorted(demo_corpus_dir().glob("*.jsonl")) for x in f.read_text().splitlines()
             if json.loads(x)["id"] in on["cooperation"][:3]]  # fmt: skip
    emb = make_embedder(clf.embedding_config(cfg.embedding)).encode(texts)
    with_nb, _ = clf.emb_scores(emb)
    plain = predict_logistic(emb.astype(np.float64), *clf.heads["cooperation"])
    assert (with_nb["cooperation"] > plain).all()  # each matches itself among the labelled positives
    # the formula, from the stored embeddings: the logit plus weight * (top-3 positives - top-3 negatives)
    y = clf.neighbours.labels["cooperation"]
    sims = emb @ clf.neighbours.emb.T
    z = np.sort(sims[:, y == 1], 1)[:, -3:].mean(1) - np.sort(sims[:, y == 0], 1)[:, -3:].mean(1)
    want = 1 / (1 + np.exp(-(np.log(plain / (1 - plain)) + 5.0 * z)))
    assert np.allclose(with_nb["cooperation"], want, atol=1e-5)

    # a card that names neighbours with a head.npz that lacks them is refused, not scored without them
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "clf", broken)
    with np.load(broken / HEAD) as z_:
        kept = {k: z_[k] for k in z_.files if not k.startswith("nb_")}
    np.savez(broken / HEAD, **kept)
    with pytest.raises(ClassifierError, match="label neighbours"):
        Classifier.load(broken)

    # neighbour_weight = 0: no neighbours stored, and the classifier scores with the head alone
    card0 = train([demo_corpus_dir()], cfg.replace("train", neighbour_weight=0.0), tmp_path / "clf0",
                  tmp_path / "labels.csv", progress=lambda m: None)  # fmt: skip
    assert card0["label_neighbours"] is None
    with np.load(tmp_path / "clf0" / HEAD) as z:
        assert "nb_emb" not in z.files
    clf0 = Classifier.load(tmp_path / "clf0")
    s0, _ = clf0.emb_scores(emb)
    assert clf0.neighbours is None
    assert np.allclose(
        s0["cooperation"], predict_logistic(emb.astype(np.float64), *clf0.heads["cooperation"])
    )


def test_the_threshold_with_neighbours_lets_as_many_documents_through_as_the_heads():
    before = np.array([0.9, 0.7, 0.5, 0.3, 0.1])
    after = np.array([0.2, 0.95, 0.4, 0.6, 0.05])  # re-ranked: the 2 best of `after` are rows 1 and 3
    thr = matched_threshold(before, 0.6, after)
    assert thr == 0.6 and int((after >= thr).sum()) == int((before >= 0.6).sum()) == 2
    thr = matched_threshold(np.array([0.9, 0.7, 0.5]), 0.7, np.array([0.3, 0.8, 0.55]))
    assert thr == 0.55  # the second best of `after`, where 0.7 would let one through
    assert matched_threshold(before, 0.95, after) == 0.95  # nothing passes: unchanged


@pytest.mark.parametrize(("key", "value"), [("neighbour_k", 0), ("neighbour_weight", -1.0)])
def test_bad_neighbour_settings_are_refused(tmp_path, key, value):
    p = tmp_path / "c.toml"
    p.write_text(f'extends = "{REPO / "configs" / "default.toml"}"\n[train]\n{key} = {value}\n')
    with pytest.raises(ConfigError, match=f"train.{key}"):
        load_config(p)
