"""Candidates: BM25, dense and hybrid (RRF) lists, stored embeddings, per-source settings."""

from __future__ import annotations

import pytest

from flows.spec import spec_from_dict
from generators.candidates import (CandidateConfig, ensure_candidates, lists_of, reciprocal_rank_fusion,
                                   selected_queries)
from tests.conftest import REPO
from warehouse.candidates import load_candidates
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.snapshots import ingest

DEMO = REPO / "examples" / "demo" / "medicine"


def test_reciprocal_rank_fusion_sums_inverse_ranks():
    bm25 = {"q": [("a", 9.0), ("b", 8.0), ("c", 7.0)]}
    dense = {"q": [("c", 0.9), ("a", 0.8), ("d", 0.7)]}
    fused = reciprocal_rank_fusion([bm25, dense], k=3, rrf_k=1)
    # a: 1/2 + 1/3, c: 1/4 + 1/2, b: 1/3, d: 1/4
    assert [d for d, _ in fused["q"]] == ["a", "c", "b"]
    assert fused["q"][0][1] == pytest.approx(1 / 2 + 1 / 3)


def test_retriever_id_names_every_setting_that_changes_the_lists():
    base = CandidateConfig(method="hybrid")
    variants = [base.model_copy(update={name: value}) for name, value in
                [("k", 7), ("model", "other-model"), ("stopwords", None), ("rrf_k", 10), ("depth", 30)]]
    ids = {base.retriever_id(), *(v.retriever_id() for v in variants),
           CandidateConfig(method="bm25").retriever_id(), CandidateConfig(method="dense").retriever_id()}
    assert len(ids) == 8
    # Settings a method does not use leave its id alone.
    assert CandidateConfig(method="bm25", model="x", rrf_k=5).retriever_id() == CandidateConfig().retriever_id()


def test_dense_and_hybrid_lists_share_one_stored_set_of_embeddings(tmp_path):
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        snapshot, _ = ingest(wh, str(DEMO), "demo-medicine", "medicine")
        dense = CandidateConfig(method="dense", k=5)
        hybrid = CandidateConfig(method="hybrid", k=5, depth=10)
        assert ensure_candidates(wh, snapshot.snapshot_id, dense)
        assert ensure_candidates(wh, snapshot.snapshot_id, hybrid)
        assert not ensure_candidates(wh, snapshot.snapshot_id, dense)  # stored: not computed again
        stored = wh.con.execute("SELECT model, count(*) FROM embeddings GROUP BY model").fetchall()
        assert stored == [("all-MiniLM-L6-v2", snapshot.n_passages)]
        dense_lists = load_candidates(wh, snapshot.snapshot_id, dense.retriever_id())
        hybrid_lists = load_candidates(wh, snapshot.snapshot_id, hybrid.retriever_id())
        assert dense_lists["med-q1"][0][0] == "med-01"  # "What causes type 1 diabetes?"
        assert all(len(ranked) == 5 for ranked in (*dense_lists.values(), *hybrid_lists.values()))
        scores = [score for _, score in hybrid_lists["med-q1"]]
        assert scores == sorted(scores, reverse=True) and scores[0] <= 2 / 61
        lists = lists_of(wh, snapshot, hybrid, selected_queries(wh, snapshot.snapshot_id, 2, seed=0))
        assert len(lists) == 2 and all(lst.answers for lst in lists)  # the demo queries carry answers


def test_a_source_overrides_only_the_candidate_fields_it_gives(tmp_path):
    raw = {"dataset": "x", "candidates": {"method": "bm25", "k": 7},
           "sources": [{"name": "a", "domain": "d", "path": str(DEMO)},
                       {"name": "b", "domain": "e", "path": str(DEMO), "candidates": {"method": "dense"}}]}
    spec = spec_from_dict(raw, tmp_path)
    first, second = (spec.candidates_for(source) for source in spec.sources)
    assert (first.method, first.k) == ("bm25", 7)
    assert (second.method, second.k) == ("dense", 7)
    raw["sources"][1]["candidates"] = {"method": "splade"}
    with pytest.raises(InputError, match=r"sources\.1\.candidates\.method"):
        spec_from_dict(raw, tmp_path)
