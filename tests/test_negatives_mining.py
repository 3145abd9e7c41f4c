"""Hard-negative mining: the positive-aware filters, sampling, pooling, and agreement with
sentence-transformers' ``mine_hard_negatives`` on real passages."""

from __future__ import annotations

import random

import pytest

from generators.negatives import (HARD_NEGATIVE, SUSPECTED_FALSE_NEGATIVE, Candidate, NegativesConfig,
                                  classify_candidates, mine_snapshot, pool_candidates)
from tests.conftest import REPO
from warehouse.db import Warehouse
from warehouse.snapshots import ingest


def candidates(*scores: float) -> list[Candidate]:
    return [Candidate(f"d{i}", "dense", i, s) for i, s in enumerate(scores, start=1)]


def statuses(entries: list[dict]) -> dict[str, tuple[str, str | None]]:
    return {e["docid"]: (e["status"], e["set_aside_by"]) for e in entries}


def classify(scores, positives=(0.8,), **settings) -> list[dict]:
    return classify_candidates(candidates(*scores), list(positives), NegativesConfig(**settings),
                               random.Random(0))


def test_candidates_above_the_positive_fraction_are_kept_as_suspects():
    # 0.95 * 0.8 = 0.76: d1 and d2 score above it
    entries = classify([0.9, 0.77, 0.75, 0.6, 0.5, 0.4], num_negatives=3)
    assert statuses(entries) == {
        "d1": (SUSPECTED_FALSE_NEGATIVE, "positive_fraction"),
        "d2": (SUSPECTED_FALSE_NEGATIVE, "positive_fraction"),
        "d3": (HARD_NEGATIVE, None), "d4": (HARD_NEGATIVE, None), "d5": (HARD_NEGATIVE, None),
    }
    assert [e["score"] for e in entries] == sorted((e["score"] for e in entries), reverse=True)
    assert entries[0]["margin_to_positive"] == pytest.approx(0.8 - 0.9)


def test_without_filtering_the_closest_candidates_become_negatives():
    entries = classify([0.9, 0.77, 0.75, 0.6], num_negatives=2, positive_fraction=None)
    assert statuses(entries) == {"d1": (HARD_NEGATIVE, None), "d2": (HARD_NEGATIVE, None)}


def test_the_hardest_positive_is_the_reference():
    # positives 0.9 and 0.5: the reference is 0.5, threshold 0.475
    entries = classify([0.6, 0.48, 0.47], positives=(0.9, 0.5), num_negatives=5)
    assert statuses(entries) == {"d1": (SUSPECTED_FALSE_NEGATIVE, "positive_fraction"),
                                 "d2": (SUSPECTED_FALSE_NEGATIVE, "positive_fraction"),
                                 "d3": (HARD_NEGATIVE, None)}


def test_negative_positive_scores_lower_the_threshold():
    # reference -0.2: threshold -0.2 - 0.2 * 0.05 = -0.21 (sentence-transformers #3819)
    entries = classify([-0.205, -0.3], positives=(-0.2,))
    assert statuses(entries) == {"d1": (SUSPECTED_FALSE_NEGATIVE, "positive_fraction"),
                                 "d2": (HARD_NEGATIVE, None)}


def test_absolute_margin_max_score_min_score_and_range():
    entries = classify([0.79, 0.7, 0.65, 0.6, 0.5, 0.3, 0.1], positive_fraction=None,
                       absolute_margin=0.05, max_score=0.68, min_score=0.2, range_min=1, range_max=3,
                       num_negatives=5)
    assert statuses(entries) == {
        "d1": (SUSPECTED_FALSE_NEGATIVE, "absolute_margin"),  # 0.79 + 0.05 > 0.8
        "d2": (SUSPECTED_FALSE_NEGATIVE, "max_score"),
        "d3": (SUSPECTED_FALSE_NEGATIVE, "range_min"),  # first eligible
        "d4": (HARD_NEGATIVE, None), "d5": (HARD_NEGATIVE, None),  # rest of the range_max=3 window
    }  # d6 falls outside the window, d7 under min_score: not negatives, not suspects


def test_random_sampling_is_seeded_and_stays_in_the_window():
    settings = dict(num_negatives=3, sampling_strategy="random", range_max=6)
    scores = [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    draws = [classify_candidates(candidates(*scores), [0.8], NegativesConfig(**settings), random.Random(seed))
             for seed in range(6)]
    picked = [tuple(e["docid"] for e in entries) for entries in draws]
    assert all(len(p) == 3 and set(p) <= {"d1", "d2", "d3", "d4", "d5", "d6"} for p in picked)
    assert len(set(picked)) > 1
    again = classify_candidates(candidates(*scores), [0.8], NegativesConfig(**settings), random.Random(0))
    assert again == draws[0]


def test_range_min_must_be_below_range_max():
    with pytest.raises(ValueError, match="range_min"):
        NegativesConfig(range_min=5, range_max=5)


def test_pool_keeps_each_docid_once_with_its_best_retriever():
    pooled = pool_candidates({"bm25": ["a", "b", "c"], "dense": ["b", "d", "a"]},
                             {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4})
    assert {(c.docid, c.retriever, c.rank, c.score) for c in pooled} == {
        ("a", "bm25", 1, 0.1), ("b", "dense", 1, 0.2), ("c", "bm25", 3, 0.3), ("d", "dense", 2, 0.4)}


@pytest.fixture(scope="module")
def demo_snapshot(tmp_path_factory):
    warehouse = Warehouse.open(tmp_path_factory.mktemp("neg-demo") / "wh.duckdb")
    snapshot, _ = ingest(warehouse, REPO / "examples" / "demo" / "medicine", "demo-medicine", "medicine")
    yield warehouse, snapshot
    warehouse.close()


@pytest.mark.parametrize("retrievers", [["dense"], ["bm25"], ["hybrid"], ["bm25", "dense"]])
def test_mined_rows_on_real_passages(demo_snapshot, retrievers):
    warehouse, snapshot = demo_snapshot
    rows = mine_snapshot(warehouse, snapshot, NegativesConfig(retrievers=retrievers, depth=8, num_negatives=3),
                         count=4, seed=1)
    assert len(rows) == 4 and len({row["row_id"] for row in rows}) == 4
    for row in rows:
        positive_ids = {p["docid"] for p in row["positives"]}
        assert positive_ids and all(p["label_source"] == "qrels" and p["text"] for p in row["positives"])
        assert not positive_ids & {n["docid"] for n in row["negatives"]}
        assert sum(n["status"] == HARD_NEGATIVE for n in row["negatives"]) == 3
        assert {n["retriever"] for n in row["negatives"]} <= set(retrievers)
        assert all(1 <= n["rank"] <= 8 and n["text"] and n["verdict"] is None for n in row["negatives"])
    assert rows == mine_snapshot(warehouse, snapshot,
                                 NegativesConfig(retrievers=retrievers, depth=8, num_negatives=3), count=4, seed=1)


def test_dense_mining_keeps_what_sentence_transformers_keeps(demo_snapshot):
    """Same corpus, model and filters as ``mine_hard_negatives`` (dense, top, 5% relative
    margin): the same hard negatives per query; what it drops silently is a suspect here."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from generators.candidates import passage_text
    from generators.embeddings import load_encoder
    from warehouse.snapshots import load_passages, load_qrels, load_queries

    warehouse, snapshot = demo_snapshot
    passages = {d: passage_text(*tp) for d, tp in load_passages(warehouse, snapshot.snapshot_id).items()}
    queries = load_queries(warehouse, snapshot.snapshot_id)
    qrels = load_qrels(warehouse, snapshot.snapshot_id)
    pairs = [(queries[q][0], passages[d]) for q in sorted(qrels) for d in sorted(qrels[q]) if qrels[q][d] > 0]
    max_positives = max(sum(g > 0 for g in judged.values()) for judged in qrels.values())
    config = NegativesConfig(retrievers=["dense"], depth=12 + max_positives, range_max=12, num_negatives=3)
    mined = mine_hard_negatives(
        Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [p for _, p in pairs]}),
        load_encoder(), corpus=list(passages.values()), range_max=12, num_negatives=3,
        relative_margin=1 - config.positive_fraction, sampling_strategy="top",
        output_format="labeled-list", verbose=False)
    theirs = {row["query"]: {t for t, label in zip(row["positive"], row["labels"]) if label == 0} for row in mined}
    rows = mine_snapshot(warehouse, snapshot, config)
    ours = {row["query"]: {n["text"] for n in row["negatives"] if n["status"] == HARD_NEGATIVE} for row in rows}
    assert theirs and {q: s for q, s in ours.items() if s} == theirs
