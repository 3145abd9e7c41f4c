"""Candidate retrieval: top-k passages per query from a snapshot, by BM25, dense or hybrid.

- ``bm25``: bm25s over title and text (English stopwords unless ``stopwords`` is null).
- ``dense``: a sentence-transformers model (default all-MiniLM-L6-v2, offline); passage
  embeddings are computed once per (snapshot, model) and stored in the warehouse.
- ``hybrid``: reciprocal rank fusion of the top ``depth`` of both,
  score(d) = sum over retrievers of 1 / (rrf_k + rank(d)).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from generators.run_candidates import run_candidates, run_retriever_id
from warehouse.candidates import has_candidates, load_candidates, store_candidates
from warehouse.db import Warehouse
from warehouse.snapshots import Snapshot, load_passages, load_qrels, load_queries

Ranked = dict[str, list[tuple[str, float]]]  # qid -> [(docid, score), ...], best first

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class CandidateConfig(BaseModel):
    """How candidate lists are built: ``k`` passages per query by ``method``.

    ``model`` is the dense model (a sentence-transformers name or an absolute path);
    ``rrf_k`` and ``depth`` only matter for ``hybrid`` (fuse each retriever's top ``depth``);
    ``path`` only for ``run``: a TREC run file whose lists are used as they are
    (generators/run_candidates.py).
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["bm25", "dense", "hybrid", "run"] = "bm25"
    k: int = Field(20, ge=1)
    model: str = DEFAULT_EMBEDDER
    stopwords: str | None = Field("en", description="bm25s stopword list; null keeps every token")
    rrf_k: int = Field(60, ge=1)
    depth: int = Field(100, ge=1, description="hybrid: how deep each retriever's list is fused")
    path: str | None = Field(None, description="run: a TREC run file (qid Q0 docid rank score tag)")

    def retriever_id(self) -> str:
        """A stable name for every setting that changes the lists; lists are stored under it."""
        if self.method == "run":
            return run_retriever_id(self.path, self.k)
        used = {"bm25": ("stopwords",), "dense": ("model",),
                "hybrid": ("stopwords", "model", "rrf_k", "depth")}[self.method]
        return ":".join([self.method, f"k={self.k}", *(f"{name}={getattr(self, name)}" for name in used)])


def passage_text(title: str, text: str) -> str:
    """The text a retriever indexes: title and body."""
    return f"{title}\n{text}".strip()


def _import_bm25s():
    """bm25s, with its logger put back to WARNING (importing it sets it to DEBUG)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def bm25_candidates(passages: dict[str, tuple[str, str]], queries: dict[str, str],
                    k: int, stopwords: str | None = "en") -> Ranked:
    """qid -> [(docid, score), ...], the top ``k`` passages by BM25 (bm25s), best first."""
    bm25s = _import_bm25s()

    docids = list(passages)
    corpus_tokens = bm25s.tokenize([passage_text(*passages[d]) for d in docids], stopwords=stopwords,
                                   show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    qids = list(queries)
    query_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords=stopwords, show_progress=False)
    top = min(k, len(docids))
    indices, scores = retriever.retrieve(query_tokens, k=top, show_progress=False, n_threads=1)
    return {
        qid: [(docids[int(i)], float(s)) for i, s in zip(indices[row], scores[row])]
        for row, qid in enumerate(qids)
    }


def dense_candidates(docids: list[str], passage_vectors: np.ndarray, queries: dict[str, str], k: int,
                     model: str = DEFAULT_EMBEDDER) -> Ranked:
    """qid -> the top ``k`` passages by cosine similarity (ties by docid order), best first."""
    from generators.embeddings import encode

    qids = list(queries)
    if not qids or not docids:
        return {qid: [] for qid in qids}
    similarities = encode([queries[q] for q in qids], model) @ passage_vectors.T
    top = min(k, len(docids))
    ranked = {}
    for row, qid in enumerate(qids):
        order = np.argsort(-similarities[row], kind="stable")[:top]
        ranked[qid] = [(docids[int(i)], float(similarities[row, i])) for i in order]
    return ranked


def reciprocal_rank_fusion(runs: list[Ranked], k: int, rrf_k: int = 60) -> Ranked:
    """Fuse ranked lists: score(d) = sum of 1 / (rrf_k + rank) over the runs that hold d;
    ties go to the better best rank, then the smaller docid."""
    fused: Ranked = {}
    for qid in sorted(set().union(*runs)):
        scores: dict[str, float] = {}
        best: dict[str, int] = {}
        for run in runs:
            for rank, (docid, _) in enumerate(run.get(qid, []), start=1):
                scores[docid] = scores.get(docid, 0.0) + 1.0 / (rrf_k + rank)
                best[docid] = min(best.get(docid, rank), rank)
        order = sorted(scores, key=lambda d: (-scores[d], best[d], d))[:k]
        fused[qid] = [(docid, scores[docid]) for docid in order]
    return fused


def retrieval_inputs(warehouse: Warehouse, snapshot_id: str, config: CandidateConfig,
                     encode_texts=None) -> tuple[dict, dict, list[str] | None, np.ndarray | None]:
    """What ``rank_candidates`` needs for a snapshot: passages, query texts, and for dense or
    hybrid retrieval the passage embeddings (computed with ``encode_texts`` if not stored)."""
    passages = load_passages(warehouse, snapshot_id)
    queries = {qid: text for qid, (text, _) in load_queries(warehouse, snapshot_id).items()}
    if config.method == "bm25":
        return passages, queries, None, None
    from generators.embeddings import encode, snapshot_embeddings

    docids, vectors = snapshot_embeddings(warehouse, snapshot_id, config.model, encode_texts or encode)
    return passages, queries, docids, vectors


def rank_candidates(passages: dict[str, tuple[str, str]], queries: dict[str, str], config: CandidateConfig,
                    docids: list[str] | None = None, vectors: np.ndarray | None = None) -> Ranked:
    """Candidate lists of every query under ``config`` (no warehouse: runs on any worker)."""
    if config.method == "bm25":
        return bm25_candidates(passages, queries, config.k, config.stopwords)
    if config.method == "dense":
        return dense_candidates(docids, vectors, queries, config.k, config.model)
    runs = [bm25_candidates(passages, queries, config.depth, config.stopwords),
            dense_candidates(docids, vectors, queries, config.depth, config.model)]
    return reciprocal_rank_fusion(runs, config.k, config.rrf_k)


def retrieve(warehouse: Warehouse, snapshot_id: str, config: CandidateConfig) -> Ranked:
    """Candidate lists of every query of a snapshot under ``config``."""
    if config.method == "run":
        return run_candidates(warehouse, snapshot_id, config.path, config.k)
    passages, queries, docids, vectors = retrieval_inputs(warehouse, snapshot_id, config)
    return rank_candidates(passages, queries, config, docids, vectors)


@dataclass(frozen=True)
class CandidateList:
    """One query's candidates as the retriever ranked them, with the source's reference
    answers (shown to the pointwise teacher only, never in a listwise prompt)."""

    snapshot_id: str
    domain: str
    qid: str
    query: str
    docids: tuple[str, ...]
    answers: tuple[str, ...] = ()

    @cached_property
    def list_id(self) -> str:
        payload = json.dumps([self.snapshot_id, self.qid, self.docids], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def select_queries(qids: list[str], judged: set[str], count: int | None, seed: int) -> list[str]:
    """Which queries a build uses: judged ones when the source has qrels, then a seeded
    sample of ``count`` of them (all when ``count`` is None), in a stable order."""
    eligible = sorted(q for q in qids if q in judged) if judged else sorted(qids)
    if count is None or count >= len(eligible):
        return eligible
    return sorted(random.Random(seed).sample(eligible, count))


def ensure_candidates(warehouse: Warehouse, snapshot_id: str, config: CandidateConfig) -> bool:
    """Compute and store the snapshot's candidate lists unless stored; True if computed."""
    if has_candidates(warehouse, snapshot_id, config.retriever_id()):
        return False
    store_candidates(warehouse, snapshot_id, config.retriever_id(), retrieve(warehouse, snapshot_id, config))
    return True


def candidate_lists(warehouse: Warehouse, snapshot: Snapshot, config: CandidateConfig,
                    count: int | None, seed: int) -> list[CandidateList]:
    """The stored candidate lists of ``count`` selected queries of a snapshot."""
    queries = load_queries(warehouse, snapshot.snapshot_id)
    judged = set(load_qrels(warehouse, snapshot.snapshot_id))
    stored = load_candidates(warehouse, snapshot.snapshot_id, config.retriever_id())
    return [
        CandidateList(snapshot.snapshot_id, snapshot.domain, qid, queries[qid][0],
                      tuple(docid for docid, _ in stored.get(qid, [])), tuple(queries[qid][1] or ()))
        for qid in select_queries(list(queries), judged, count, seed)
    ]
