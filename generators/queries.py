"""Synthesized queries (InPars / Promptagator; reasoning-intensive as in ReasonIR).

For a source with passages and no (or too few) queries, the teacher reads a sampled passage,
with a few examples in the prompt (``prompts/queries_inpars.yaml``, or
``queries_reasoning.yaml`` for questions that need reasoning to connect to the passage), and
writes ``per_passage`` queries, each as ``<query>…</query>``. A query is kept only if

- **round trip**: the retriever (``round_trip``, BM25 by default) ranks its source passage
  within the top ``round_trip.k`` of the whole corpus for it (Promptagator's consistency
  filter), and
- **no near duplicate**: it is not a near duplicate of a query kept before it (the flow runs
  MinHash dedup at ``dedup_threshold``).

Kept queries and their source passages (qrels of split ``synthetic``) join the source's own
in a new snapshot that every other kind of the build uses. Each query's row names the
passage, prompt and calls it came from.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from generators.candidates import CandidateConfig, Ranked, passage_text
from generators.lineage import call_lineage
from generators.teachers import Call, Completion, Sampling
from prompts import Prompt

_QUERY = re.compile(r"<query>(.*?)</query>", re.S | re.I)
REJECT_REASONS = ("wrong_format", "truncated", "teacher_failed", "round_trip")


class SynthesizeConfig(BaseModel):
    """Settings of the ``queries`` kind (for sources with ``synthesize: true``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field("queries_inpars", description="queries_inpars, queries_reasoning, or your own")
    passages: int = Field(50, ge=1, description="passages sampled per source (seeded)")
    per_passage: int = Field(3, ge=1, le=10, description="queries the teacher writes per passage")
    passage_tokens: int = Field(300, ge=8, description="words of the passage shown")
    round_trip: CandidateConfig = Field(
        CandidateConfig(method="bm25", k=10),
        description="keep a query only if this retriever ranks its passage in the top k")
    dedup_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard of near-duplicate queries")


@dataclass(frozen=True)
class PlannedPassage:
    """One sampled passage and the call that asks for its queries."""

    snapshot_id: str
    domain: str
    docid: str
    passage: str
    call: Call


def sample_passages(docids: list[str], count: int, seed: int) -> list[str]:
    """A seeded sample of ``count`` passage ids (all when fewer), in a stable order."""
    ordered = sorted(docids)
    if count >= len(ordered):
        return ordered
    return sorted(random.Random(seed).sample(ordered, count))


def plan_queries(snapshot_id: str, domain: str, passages: dict[str, tuple[str, str]], prompt: Prompt,
                 config: SynthesizeConfig, model: str, sampling: Sampling, seed: int) -> list[PlannedPassage]:
    """The teacher calls for the sampled passages of one snapshot."""
    planned = []
    for docid in sample_passages(list(passages), config.passages, seed):
        shown = " ".join(passage_text(*passages[docid]).split()[: config.passage_tokens])
        messages = prompt.render(passage=shown, k=str(config.per_passage))
        planned.append(PlannedPassage(snapshot_id, domain, docid, shown, Call.of(model, messages, sampling)))
    return planned


def parse_queries(completion: Completion, limit: int) -> tuple[list[str], str | None]:
    """The queries of an answer (at most ``limit``, in order, blanks dropped), or why none."""
    if completion.status != "ok":
        return [], "teacher_failed"
    if completion.finish_reason == "length" and not _QUERY.search(completion.content or ""):
        return [], "truncated"
    found = [" ".join(q.split()) for q in _QUERY.findall(completion.content or "")]
    found = [q for q in found if q]
    return (found[:limit], None) if found else ([], "wrong_format")


def query_rows(planned: list[PlannedPassage], answers: dict[str, Completion], prompt: Prompt,
               backend: str, limit: int) -> list[dict]:
    """One row per written query (or per unreadable answer, with its ``reason``)."""
    rows = []
    for item in planned:
        queries, reason = parse_queries(answers[item.call.key], limit)
        base = {"domain": item.domain, "snapshot_id": item.snapshot_id, "source_docid": item.docid,
                "passage": item.passage, **call_lineage([item.call], prompt, backend)}
        if reason is not None:
            rows.append({**base, "row_id": _row_id(item.snapshot_id, item.docid, ""), "qid": "",
                         "query": "", "reason": reason})
        for index, query in enumerate(queries):
            rows.append({**base, "row_id": _row_id(item.snapshot_id, item.docid, query),
                         "qid": synthetic_qid(item.docid, query), "query": query, "query_index": index,
                         "reason": None})
    return rows


def synthetic_qid(docid: str, query: str) -> str:
    """The id of a synthesized query: its source passage and a hash of its text."""
    return f"syn-{docid}-{hashlib.sha1(query.encode()).hexdigest()[:10]}"


def _row_id(snapshot_id: str, docid: str, query: str) -> str:
    return hashlib.sha256(f"queries:{snapshot_id}:{docid}:{query}".encode()).hexdigest()[:16]


def round_trip(rows: list[dict], ranked_by: Callable[[dict[str, str]], Ranked], k: int) -> None:
    """Set each row's ``round_trip_rank`` (rank of its source passage for its query, or None
    past ``k``) and reject (``reason = round_trip``) those not in the top k. ``ranked_by``
    ranks the snapshot's passages for queries (row id -> query text)."""
    readable = [row for row in rows if row["reason"] is None]
    ranked = ranked_by({row["row_id"]: row["query"] for row in readable})
    for row in readable:
        order = [docid for docid, _ in ranked.get(row["row_id"], [])]
        rank = order.index(row["source_docid"]) + 1 if row["source_docid"] in order else None
        row["round_trip_rank"], row["round_trip_k"] = rank, k
        if rank is None:
            row["reason"] = "round_trip"
