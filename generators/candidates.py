"""Candidate retrieval: top-k passages per query from a snapshot."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from warehouse.candidates import has_candidates, load_candidates, store_candidates
from warehouse.db import Warehouse
from warehouse.snapshots import Snapshot, load_passages, load_qrels, load_queries


class CandidateConfig(BaseModel):
    """How candidate lists are built (``k`` passages per query)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["bm25"] = "bm25"
    k: int = Field(20, ge=1)

    def retriever_id(self) -> str:
        """A stable name for these settings, under which the lists are stored."""
        return f"{self.method}:k={self.k}"


def passage_text(title: str, text: str) -> str:
    """The text a retriever indexes: title and body."""
    return f"{title}\n{text}".strip()


def bm25_candidates(passages: dict[str, tuple[str, str]], queries: dict[str, str],
                    k: int) -> dict[str, list[tuple[str, float]]]:
    """qid -> [(docid, score), ...], the top ``k`` passages by BM25 (bm25s), best first."""
    import bm25s

    docids = list(passages)
    corpus_tokens = bm25s.tokenize([passage_text(*passages[d]) for d in docids], stopwords="en",
                                   show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    qids = list(queries)
    query_tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False)
    top = min(k, len(docids))
    indices, scores = retriever.retrieve(query_tokens, k=top, show_progress=False, n_threads=1)
    return {
        qid: [(docids[int(i)], float(s)) for i, s in zip(indices[row], scores[row])]
        for row, qid in enumerate(qids)
    }


@dataclass(frozen=True)
class CandidateList:
    """One query's candidates as the retriever ranked them."""

    snapshot_id: str
    domain: str
    qid: str
    query: str
    docids: tuple[str, ...]

    @property
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
    passages = load_passages(warehouse, snapshot_id)
    queries = {qid: text for qid, (text, _) in load_queries(warehouse, snapshot_id).items()}
    store_candidates(warehouse, snapshot_id, config.retriever_id(),
                     bm25_candidates(passages, queries, config.k))
    return True


def candidate_lists(warehouse: Warehouse, snapshot: Snapshot, config: CandidateConfig,
                    count: int | None, seed: int) -> list[CandidateList]:
    """The stored candidate lists of ``count`` selected queries of a snapshot."""
    queries = load_queries(warehouse, snapshot.snapshot_id)
    judged = set(load_qrels(warehouse, snapshot.snapshot_id))
    stored = load_candidates(warehouse, snapshot.snapshot_id, config.retriever_id())
    return [
        CandidateList(snapshot.snapshot_id, snapshot.domain, qid, queries[qid][0],
                      tuple(docid for docid, _ in stored[qid]))
        for qid in select_queries(list(queries), judged, count, seed)
    ]
