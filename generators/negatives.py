"""Hard negatives with a false-negative verdict on each (NV-Retriever mining, RLHN-style judge).

Mining keeps the filters of ``sentence_transformers.util.mine_hard_negatives`` and their
meaning (``positive_fraction`` 0.95 is its ``relative_margin=0.05``, NV-Retriever's
TopK-PercPos; the reference is the query's lowest-scoring positive, as there), with two
differences:

- candidates come from the snapshot's stored candidate lists (``generators/candidates.py``:
  BM25, dense, hybrid), pooled, then scored with the dense model; ``mine_hard_negatives``
  searches its own dense index over texts and re-encodes the corpus, where the snapshot's
  passage embeddings are already stored;
- nothing set aside vanishes: a candidate scoring too close to a positive (or above
  ``max_score``, or among the first ``range_min``) stays on the row as a
  ``suspected_false_negative``, next to the sampled ``hard_negative`` ones.

The teacher then judges each suspect (and, with ``judge: all``, each hard negative) with the
query and the known positives for reference. A candidate it finds relevant is a confirmed
false negative: relabeled as a positive or excluded, per spec. The exports
(``warehouse/formats/negatives.py``) train on hard negatives the judge did not find relevant.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generators.candidates import (DEFAULT_EMBEDDER, CandidateConfig, ensure_candidates, passage_text,
                                   select_queries)
from generators.constraints import reasoning_budget
from generators.embeddings import encode, snapshot_embeddings
from generators.listwise import clean_passage
from generators.teachers import Call, Completion, Sampling
from prompts import Prompt
from warehouse.candidates import load_candidates
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.snapshots import Snapshot, load_passages, load_qrels, load_queries

HARD_NEGATIVE = "hard_negative"
SUSPECTED_FALSE_NEGATIVE = "suspected_false_negative"

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_VERDICTS = {"relevant": "relevant", "not relevant": "not_relevant"}


class NegativesConfig(BaseModel):
    """Mining and judging settings (defaults: NV-Retriever's 95% of the positive's score)."""

    model_config = ConfigDict(extra="forbid")

    retrievers: list[Literal["bm25", "dense", "hybrid"]] = Field(
        ["dense"], min_length=1, description="where candidates come from; several are pooled")
    depth: int = Field(30, ge=1, description="candidates taken from each retriever per query "
                       "(the stored lists of candidates.method=<retriever>, k=depth, model=embedder)")
    embedder: str = Field(DEFAULT_EMBEDDER, description="dense model that retrieves and scores")
    positive_fraction: float | None = Field(
        0.95, gt=0, le=1, description="set aside candidates scoring above this fraction of the "
        "positive's score (None: off)")
    absolute_margin: float | None = Field(
        None, description="set aside candidates within this margin of the positive's score")
    max_score: float | None = Field(None, description="set aside candidates scoring above this")
    min_score: float | None = Field(None, description="ignore candidates scoring below this")
    range_min: int = Field(0, ge=0, description="set aside the first range_min eligible candidates")
    range_max: int | None = Field(None, ge=1, description="sample among the first range_max eligible")
    num_negatives: int = Field(5, ge=1)
    sampling_strategy: Literal["top", "random"] = "top"
    judge: Literal["none", "suspected", "all"] = Field(
        "suspected", description="which negatives the teacher judges")
    judge_prompt: str = "fn_judge"
    judge_positives: int = Field(2, ge=1, description="known positives shown to the judge")
    passage_tokens: int = Field(256, ge=8, description="words of each passage shown to the judge")
    constrained: bool = Field(False, description="constrain the judge's answer shape (grammar)")
    false_negatives: Literal["relabel", "exclude"] = Field(
        "relabel", description="what a confirmed false negative becomes")

    @model_validator(mode="after")
    def _range_is_ordered(self) -> "NegativesConfig":
        if self.range_max is not None and self.range_min >= self.range_max:
            raise ValueError("negatives.range_min must be smaller than negatives.range_max")
        return self


@dataclass(frozen=True)
class Candidate:
    """A pooled candidate: the retriever that ranked it best, its rank there, its dense score."""

    docid: str
    retriever: str
    rank: int
    score: float


@dataclass(frozen=True)
class PlannedJudgment:
    """The teacher call that judges one negative of one row."""

    row_index: int
    negative_index: int
    call: Call


# --- mining ---------------------------------------------------------------------------------


def pool_candidates(rankings: dict[str, list[str]], scores: dict[str, float]) -> list[Candidate]:
    """Every docid of the retrievers' lists once, with the retriever that ranked it best
    (the first listed on ties) and its dense score."""
    best: dict[str, tuple[str, int]] = {}
    for retriever, docids in rankings.items():
        for rank, docid in enumerate(docids, start=1):
            if docid not in best or rank < best[docid][1]:
                best[docid] = (retriever, rank)
    return [Candidate(docid, retriever, rank, scores[docid]) for docid, (retriever, rank) in best.items()]


def classify_candidates(candidates: list[Candidate], positive_scores: list[float],
                        config: NegativesConfig, rng: random.Random) -> list[dict]:
    """Hard negatives and suspected false negatives of one query, best score first.

    Candidates that are positives must not be passed. Each candidate is set aside as a
    suspect (``positive_fraction``, ``absolute_margin``, ``max_score``), ignored as too easy
    (``min_score``), or eligible; the first ``range_min`` eligible ones are suspects too, and
    ``num_negatives`` are sampled (``top`` or ``random``) among the first ``range_max``.
    """
    reference = min(positive_scores)
    suspects: list[tuple[Candidate, str]] = []
    eligible: list[Candidate] = []
    for candidate in sorted(candidates, key=lambda c: (-c.score, c.docid)):
        reason = _set_aside_reason(candidate.score, reference, config)
        if reason is not None:
            suspects.append((candidate, reason))
        elif config.min_score is None or candidate.score >= config.min_score:
            eligible.append(candidate)
    window = eligible[: config.range_max]
    suspects += [(candidate, "range_min") for candidate in window[: config.range_min]]
    picked = _sample(window[config.range_min:], config.num_negatives, config.sampling_strategy, rng)
    entries = [_negative_entry(c, reference, HARD_NEGATIVE, None) for c in picked]
    entries += [_negative_entry(c, reference, SUSPECTED_FALSE_NEGATIVE, why) for c, why in suspects]
    return sorted(entries, key=lambda e: (-e["score"], e["docid"]))


def _set_aside_reason(score: float, reference: float, config: NegativesConfig) -> str | None:
    if (config.positive_fraction is not None
            and score > reference - abs(reference) * (1 - config.positive_fraction)):
        return "positive_fraction"
    if config.absolute_margin is not None and score + config.absolute_margin > reference:
        return "absolute_margin"
    if config.max_score is not None and score > config.max_score:
        return "max_score"
    return None


def _sample(window: list[Candidate], count: int, strategy: str, rng: random.Random) -> list[Candidate]:
    if strategy == "top" or len(window) <= count:
        return window[:count]
    return rng.sample(window, count)


def _negative_entry(candidate: Candidate, reference: float, status: str, set_aside_by: str | None) -> dict:
    return {
        "docid": candidate.docid, "retriever": candidate.retriever, "rank": candidate.rank,
        "score": round(candidate.score, 6), "margin_to_positive": round(reference - candidate.score, 6),
        "status": status, "set_aside_by": set_aside_by, "verdict": None, "judge_model": None,
        "judge_prompt_version": None, "reasoning": None, "judge_error": None,
    }


def positives_from_qrels(qrels: dict[str, dict[str, int]]) -> dict[str, list[str]]:
    """qid -> docids graded above 0 (queries without one are left out)."""
    positives = {qid: sorted(d for d, grade in judged.items() if grade > 0) for qid, judged in qrels.items()}
    return {qid: docids for qid, docids in positives.items() if docids}


def mine_snapshot(warehouse: Warehouse, snapshot: Snapshot, config: NegativesConfig,
                  count: int | None = None, seed: int = 0,
                  positives: dict[str, list[str]] | None = None) -> list[dict]:
    """One ``negatives`` row (not yet judged) per selected query with positives.

    ``positives`` overrides the qrels (qid -> positive docids); ``count`` queries are drawn
    with ``seed`` (all when None). The whole snapshot is the candidate corpus.
    """
    sid = snapshot.snapshot_id
    if positives is None:
        positives = positives_from_qrels(load_qrels(warehouse, sid))
    positives = {qid: docids for qid, docids in positives.items() if docids}
    if not positives:
        raise InputError(f"snapshot {sid} ({snapshot.name}): no query has a positive (qrels grade > 0); "
                         "hard negatives need positives")
    passages = load_passages(warehouse, sid)
    queries = {qid: text for qid, (text, _) in load_queries(warehouse, sid).items()}
    qids = select_queries(list(positives), set(positives), count, seed)
    lists = {retriever: stored_lists(warehouse, sid, retriever, config, qids) for retriever in config.retrievers}
    docids, matrix = snapshot_embeddings(warehouse, sid, config.embedder)
    scores = encode([queries[qid] for qid in qids], config.embedder) @ matrix.T
    rows = []
    for qid, query_scores in zip(qids, scores):
        by_docid = dict(zip(docids, query_scores.tolist()))
        rankings = {retriever: ranked.get(qid, []) for retriever, ranked in lists.items()}
        known = set(positives[qid])
        candidates = [c for c in pool_candidates(rankings, by_docid) if c.docid not in known]
        negatives = classify_candidates(candidates, [by_docid[d] for d in positives[qid]], config,
                                        random.Random(f"{seed}:{sid}:{qid}"))
        rows.append(_mined_row(snapshot, qid, queries[qid], positives[qid], negatives, by_docid,
                               passages, config, len(candidates)))
    return rows


def stored_lists(warehouse: Warehouse, snapshot_id: str, retriever: str, config: NegativesConfig,
                 qids: list[str] | None = None) -> dict[str, list[str]]:
    """qid -> the retriever's top ``depth`` docids for ``qids`` (default all), from the stored
    candidate lists (computed and stored on first use, shared with other stages using the
    same settings)."""
    candidates = CandidateConfig(method=retriever, k=config.depth, model=config.embedder)
    ensure_candidates(warehouse, snapshot_id, candidates, qids)
    stored = load_candidates(warehouse, snapshot_id, candidates.retriever_id(), qids)
    return {qid: [docid for docid, _ in ranked] for qid, ranked in stored.items()}


def _mined_row(snapshot: Snapshot, qid: str, query: str, positive_ids: list[str], negatives: list[dict],
               scores: dict[str, float], passages: dict[str, tuple[str, str]], config: NegativesConfig,
               pooled: int) -> dict:
    for negative in negatives:
        negative["text"] = passage_text(*passages[negative["docid"]])
    positives = sorted(({"docid": d, "text": passage_text(*passages[d]), "score": round(scores[d], 6),
                         "label_source": "qrels"} for d in positive_ids),
                       key=lambda p: (-p["score"], p["docid"]))
    return {
        "row_id": hashlib.sha256(f"{snapshot.snapshot_id}:{qid}".encode()).hexdigest()[:16],
        "qid": qid, "query": query, "domain": snapshot.domain, "snapshot_id": snapshot.snapshot_id,
        "positives": positives, "negatives": negatives, "num_negatives": config.num_negatives,
        "candidates_pooled": pooled, "retrievers": list(config.retrievers), "embedder": config.embedder,
    }


# --- judging --------------------------------------------------------------------------------


def verdict_grammar(max_reasoning_chars: int) -> str:
    """GBNF for ``<think>…</think> <answer>relevant|not relevant</answer>`` (llama.cpp)."""
    return ('root ::= "<think>" think "</think> <answer>" verdict "</answer>"\n'
            f"think ::= [^<]{{1,{max_reasoning_chars}}}\n"
            'verdict ::= "relevant" | "not relevant"\n')


def judged_statuses(config: NegativesConfig) -> tuple[str, ...]:
    """Which negatives the teacher judges under ``config.judge``."""
    return {"none": (), "suspected": (SUSPECTED_FALSE_NEGATIVE,),
            "all": (SUSPECTED_FALSE_NEGATIVE, HARD_NEGATIVE)}[config.judge]


def plan_judgments(rows: list[dict], prompt: Prompt, config: NegativesConfig, model: str,
                   sampling: Sampling) -> list[PlannedJudgment]:
    """One judge call per negative whose status ``config.judge`` covers."""
    statuses = judged_statuses(config)
    grammar = verdict_grammar(reasoning_budget(1, sampling.max_tokens)) if config.constrained else None
    planned = []
    for row_index, row in enumerate(rows):
        reference = "\n".join(f"- {clean_passage('', p['text'], config.passage_tokens)}"
                              for p in row["positives"][: config.judge_positives])
        for negative_index, negative in enumerate(row["negatives"]):
            if negative["status"] not in statuses:
                continue
            messages = prompt.render(query=row["query"], positives=reference,
                                     candidate=clean_passage("", negative["text"], config.passage_tokens))
            planned.append(PlannedJudgment(row_index, negative_index,
                                           Call.of(model, messages, sampling, 0, grammar)))
    return planned


def parse_verdict(answer: str, finish_reason: str = "stop") -> tuple[str | None, str | None]:
    """(``relevant`` | ``not_relevant``, None), or (None, why not): exactly one
    ``<answer>`` holding exactly "relevant" or "not relevant" (any case); nothing repaired."""
    if finish_reason == "length":
        return None, "truncated"
    found = _ANSWER.findall(answer)
    if len(found) != 1:
        return None, "wrong_format"
    verdict = _VERDICTS.get(" ".join(found[0].split()).lower())
    return (verdict, None) if verdict else (None, "wrong_format")


def apply_verdicts(rows: list[dict], planned: list[PlannedJudgment], answers: dict[str, Completion],
                   prompt: Prompt, backend: str, model: str, config: NegativesConfig,
                   sampling: Sampling) -> list[dict]:
    """Rows with each judged negative's verdict, judge model and prompt version; confirmed
    false negatives relabeled as positives (``false_negatives: relabel``) or left out of the
    positives (``exclude``). Every row gets the judge's lineage."""
    keys: dict[int, list[str]] = {}
    for judgment in planned:
        negative = rows[judgment.row_index]["negatives"][judgment.negative_index]
        _record_verdict(negative, answers[judgment.call.key], prompt, model)
        keys.setdefault(judgment.row_index, []).append(judgment.call.key)
    for row_index, row in enumerate(rows):
        if config.false_negatives == "relabel":
            row["positives"] += [_relabeled(n) for n in row["negatives"] if n["verdict"] == "relevant"]
        if config.judge != "none":
            row.update(teacher_model=model, teacher_backend=backend, prompt_name=prompt.name,
                       prompt_version=prompt.version, sampling=sampling.model_dump(),
                       call_keys=keys.get(row_index, []))
    return rows


def _record_verdict(negative: dict, completion: Completion, prompt: Prompt, model: str) -> None:
    if completion.ok:
        verdict, error = parse_verdict(completion.content, completion.finish_reason)
    else:
        verdict, error = None, "teacher_failed"
    reasoning = completion.reasoning or _ANSWER.sub("", completion.content).strip()
    negative.update(verdict=verdict, judge_error=error, judge_model=model,
                    judge_prompt_version=prompt.version, reasoning=reasoning or None)


def _relabeled(negative: dict) -> dict:
    return {"docid": negative["docid"], "text": negative["text"], "score": negative["score"],
            "label_source": "judge"}
