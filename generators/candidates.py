"""Candidate retrieval: top-k passages per query from a snapshot, by BM25, dense or hybrid.

- ``bm25``: bm25s over title and text (English stopwords unless ``stopwords`` is null).
- ``dense``: a sentence-transformers model (default all-MiniLM-L6-v2, offline); passage
  embeddings are computed once per (snapshot, model) and stored in the warehouse.
- ``hybrid``: reciprocal rank fusion of the top ``depth`` of both,
  score(d) = sum over retrievers of 1 / (rrf_k + rank(d)).

Work follows what a build asks for: each snapshot's BM25 index and passage-embedding
matrix are saved once beside the warehouse (``warehouse/indexes.py``) and loaded by later
builds, and lists are retrieved and stored only for the selected queries that have none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from array import array
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from generators.run_candidates import run_candidates, run_retriever_id
from warehouse.candidates import load_candidates, passage_batches, store_candidates, stored_qids
from warehouse.db import Warehouse
from warehouse.indexes import building, index_dir, read_meta
from warehouse.snapshots import Snapshot, load_qrels, load_queries

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


# --------------------------------------------------------------------------- indexes

def bm25_index_name(stopwords: str | None) -> str:
    return f"bm25-stopwords={stopwords}"


def dense_index_name(model: str) -> str:
    """A folder name for a model (a hub name or an absolute path)."""
    return "dense-" + hashlib.sha256(model.encode()).hexdigest()[:16]


def ensure_bm25_index(warehouse: Warehouse, snapshot_id: str, stopwords: str | None = "en") -> Path:
    """The folder of the snapshot's BM25 index, built and saved on first use.

    Passages are read and tokenized in batches; token ids are numbered in first-seen order
    over the corpus in docid order, exactly as one ``bm25s.tokenize`` call over the whole
    corpus numbers them, so the index is the same as one built in a single pass.
    """
    bm25s = _import_bm25s()
    folder = index_dir(warehouse.path, snapshot_id, bm25_index_name(stopwords))
    meta = {"kind": "bm25", "snapshot_id": snapshot_id, "stopwords": stopwords, "bm25s": bm25s.__version__}
    if read_meta(folder) == meta:
        return folder
    docids: list[str] = []
    corpus: list[array] = []  # token ids per passage; 4 bytes a token instead of a Python int's 36
    vocab: dict[str, int] = {}
    for batch_docids, titles, texts in passage_batches(warehouse, snapshot_id):
        tokens = bm25s.tokenize([passage_text(t, x) for t, x in zip(titles, texts)], stopwords=stopwords,
                                show_progress=False)
        to_global = [vocab.setdefault(token, len(vocab)) for token in tokens.vocab]
        corpus += [array("i", (to_global[i] for i in ids)) for ids in tokens.ids]
        docids += batch_docids
    retriever = bm25s.BM25()
    if docids:
        retriever.index((corpus, vocab), show_progress=False)
    del corpus
    with building(folder, meta) as partial:
        if docids:
            retriever.save(str(partial), show_progress=False)
        (partial / "docids.json").write_text(json.dumps(docids), encoding="utf-8")
    return folder


def ensure_dense_index(warehouse: Warehouse, snapshot_id: str, model: str = DEFAULT_EMBEDDER,
                       encode_texts=None) -> Path:
    """The folder of the snapshot's passage embeddings under ``model`` as a NumPy file
    (from the warehouse's stored embeddings, computed with ``encode_texts`` if not stored)."""
    folder = index_dir(warehouse.path, snapshot_id, dense_index_name(model))
    meta = {"kind": "dense", "snapshot_id": snapshot_id, "model": model}
    if read_meta(folder) == meta:
        return folder
    from generators.embeddings import encode, snapshot_embeddings

    docids, vectors = snapshot_embeddings(warehouse, snapshot_id, model, encode_texts or encode)
    with building(folder, meta) as partial:
        np.save(partial / "vectors.npy", vectors)
        (partial / "docids.json").write_text(json.dumps(docids), encoding="utf-8")
    return folder


def ensure_indexes(warehouse: Warehouse, snapshot_id: str, config: CandidateConfig,
                   encode_texts=None) -> dict[str, str]:
    """The index folders ``config`` retrieves from (``bm25``, ``dense``), built if missing."""
    folders = {}
    if config.method in ("bm25", "hybrid"):
        folders["bm25"] = str(ensure_bm25_index(warehouse, snapshot_id, config.stopwords))
    if config.method in ("dense", "hybrid"):
        folders["dense"] = str(ensure_dense_index(warehouse, snapshot_id, config.model, encode_texts))
    return folders


def _docids(folder: Path) -> list[str]:
    return json.loads((folder / "docids.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- retrieval

_loaded: dict[Path, list] = {}  # index folder -> [what was loaded, shards using it]
_loaded_lock = threading.Lock()


@contextmanager
def _shared_index(folder: Path, load):
    """``load(folder)``, once per process for all the shards that use the folder at once,
    let go when the last of them is done. With ``runner: threads`` each shard in flight used
    to load its own copy: on 1M passages, 4 x (the docids, ~70 MiB; bm25s's vocabulary; the
    pages of the memory-mapped index it touched)."""
    with _loaded_lock:
        entry = _loaded.get(folder)
        if entry is None:
            entry = _loaded[folder] = [load(folder), 0]
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        with _loaded_lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _loaded[folder]


def _load_bm25(folder: Path) -> tuple[object | None, list[str]]:
    """(bm25s retriever, memory-mapped; None for an empty corpus, which saves none), docids."""
    docids = _docids(folder)
    return (_import_bm25s().BM25.load(str(folder), mmap=True, show_progress=False) if docids else None), docids


def _load_dense(folder: Path) -> tuple[np.ndarray, list[str]]:
    """(passage vectors, memory-mapped), docids."""
    return np.load(folder / "vectors.npy", mmap_mode="r"), _docids(folder)


def bm25_candidates(folder: str | Path, queries: dict[str, str], k: int, stopwords: str | None = "en") -> Ranked:
    """qid -> [(docid, score), ...], the top ``k`` passages by BM25 (bm25s's index and
    scores), best first, ties by passage order, from the index saved in ``folder``.

    Scores are bm25s's ``get_scores``; the top k are chosen by ``_top_indices``, not by
    bm25s's ``retrieve``, whose selection costs ~50 ms a query on 1M passages (5x the
    scoring) and orders ties arbitrarily."""
    qids = list(queries)
    with _shared_index(Path(folder), _load_bm25) as (retriever, docids):
        if not qids or not docids:
            return {qid: [] for qid in qids}
        tokens = _import_bm25s().tokenize([queries[q] for q in qids], stopwords=stopwords, show_progress=False,
                                          return_ids=False)
        top = min(k, len(docids))
        ranked = {}
        for qid, query_tokens in zip(qids, tokens):
            scores = retriever.get_scores(query_tokens) if query_tokens else np.zeros(len(docids), retriever.dtype)
            ranked[qid] = [(docids[int(i)], float(scores[i])) for i in _top_indices(scores, top)]
        return ranked


# Queries scored against the passage matrix at once: bounds the similarity block in memory
# (64 queries x 1M passages x 4 bytes = 256 MB).
DENSE_QUERY_BLOCK = 64


def dense_candidates(folder: str | Path, queries: dict[str, str], k: int, model: str = DEFAULT_EMBEDDER) -> Ranked:
    """qid -> the top ``k`` passages by cosine similarity (ties by docid order), best first,
    from the embeddings saved in ``folder``."""
    from generators.embeddings import encode

    qids = list(queries)
    with _shared_index(Path(folder), _load_dense) as (passage_vectors, docids):
        if not qids or not docids:
            return {qid: [] for qid in qids}
        top = min(k, len(docids))
        ranked = {}
        for start in range(0, len(qids), DENSE_QUERY_BLOCK):
            block = qids[start:start + DENSE_QUERY_BLOCK]
            similarities = encode([queries[q] for q in block], model) @ passage_vectors.T
            for row, qid in enumerate(block):
                order = _top_indices(similarities[row], top)
                ranked[qid] = [(docids[int(i)], float(similarities[row, i])) for i in order]
        return ranked


def _top_indices(scores: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` highest scores, best first, ties by index: what a stable
    argsort of the negated scores gives, without sorting (or even partitioning) every passage."""
    if top >= len(scores):
        return np.argsort(-scores, kind="stable")
    values = scores[scores >= _top_lower_bound(scores, top)]  # holds the top highest scores
    threshold = np.partition(values, len(values) - top)[len(values) - top]  # the top-th highest
    above = np.flatnonzero(scores > threshold)
    above = above[np.argsort(-scores[above], kind="stable")]
    ties = np.flatnonzero(scores == threshold)[:top - len(above)]  # in index order
    return np.concatenate([above, ties])


def _top_lower_bound(scores: np.ndarray, top: int) -> float:
    """A value at most the ``top``-th highest score, usually close to it: the ``top``-th
    highest of one score in 16 (or the lowest score when that sample is too small)."""
    sample = scores[::16]
    if len(sample) < top:
        return scores.min()
    return np.partition(sample, len(sample) - top)[len(sample) - top]


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


def rank_candidates(indexes: dict[str, str], queries: dict[str, str], config: CandidateConfig) -> Ranked:
    """Candidate lists of ``queries`` under ``config``, from the index folders of
    ``ensure_indexes`` (no warehouse: runs on any worker that can read the folders)."""
    if config.method == "bm25":
        return bm25_candidates(indexes["bm25"], queries, config.k, config.stopwords)
    if config.method == "dense":
        return dense_candidates(indexes["dense"], queries, config.k, config.model)
    runs = [bm25_candidates(indexes["bm25"], queries, config.depth, config.stopwords),
            dense_candidates(indexes["dense"], queries, config.depth, config.model)]
    return reciprocal_rank_fusion(runs, config.k, config.rrf_k)


def queries_without_lists(warehouse: Warehouse, snapshot_id: str, config: CandidateConfig,
                          qids: list[str] | None = None) -> dict[str, str]:
    """qid -> text of the queries (``qids``, default all) that have no stored list under
    ``config``: the only ones a build retrieves for."""
    queries = load_queries(warehouse, snapshot_id)
    stored = stored_qids(warehouse, snapshot_id, config.retriever_id())
    return {qid: queries[qid][0] for qid in (queries if qids is None else qids) if qid not in stored}


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


def selected_queries(warehouse: Warehouse, snapshot_id: str, count: int | None, seed: int) -> list[str]:
    """``select_queries`` over a snapshot's queries and qrels."""
    return select_queries(list(load_queries(warehouse, snapshot_id)), set(load_qrels(warehouse, snapshot_id)),
                          count, seed)


def ensure_candidates(warehouse: Warehouse, snapshot_id: str, config: CandidateConfig,
                      qids: list[str] | None = None) -> int:
    """Compute and store the lists of the queries (``qids``, default all) that have none
    under ``config``, from the snapshot's saved indexes; returns how many were computed."""
    queries = queries_without_lists(warehouse, snapshot_id, config, qids)
    if queries:
        ranked = (run_lists(warehouse, snapshot_id, config, queries) if config.method == "run"
                  else rank_candidates(ensure_indexes(warehouse, snapshot_id, config), queries, config))
        store_candidates(warehouse, snapshot_id, config.retriever_id(), ranked)
    return len(queries)


def run_lists(warehouse: Warehouse, snapshot_id: str, config: CandidateConfig, queries: dict[str, str]) -> Ranked:
    """``method: run``: the run file's lists of ``queries`` (read, not computed)."""
    ranked = run_candidates(warehouse, snapshot_id, config.path, config.k)
    return {qid: ranked[qid] for qid in queries if qid in ranked}


def lists_of(warehouse: Warehouse, snapshot: Snapshot, config: CandidateConfig, qids: list[str]
             ) -> list[CandidateList]:
    """The stored candidate lists of ``qids``, in that order (reads only those queries and lists)."""
    queries = load_queries(warehouse, snapshot.snapshot_id, qids)
    stored = load_candidates(warehouse, snapshot.snapshot_id, config.retriever_id(), qids)
    return [
        CandidateList(snapshot.snapshot_id, snapshot.domain, qid, queries[qid][0],
                      tuple(docid for docid, _ in stored.get(qid, [])), tuple(queries[qid][1] or ()))
        for qid in qids
    ]
