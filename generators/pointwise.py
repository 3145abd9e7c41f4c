"""Pointwise positive selection (ReasonRank): the teacher reads the query, the source's
reference answer when it has one, and a batch of candidates, reasons, and names the
relevant ones.

The answer is ``<answer>[2], [5]</answer>`` (1-based positions in the batch, each at most
once) or ``<answer>none</answer>``; anything else is rejected with its reason, never
repaired. Accepted judgments become ``pointwise`` rows and the ``relevant_docids`` of the
listwise rows of the same query.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from generators.candidates import CandidateList
from generators.constraints import positives_grammar, reasoning_budget
from generators.listwise import clean_passage, numbered
from generators.lineage import call_lineage
from generators.teachers import Call, Completion, Sampling
from prompts import Prompt

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_POSITIVES = re.compile(r"^(?:none|\[\d+\](?:, \[\d+\])*)$")
_IDS = re.compile(r"\[(\d+)\]")

REJECT_REASONS = ("wrong_format", "duplicate_ids", "out_of_range", "truncated", "teacher_failed")


class PointwiseConfig(BaseModel):
    """Pointwise stage settings. ``depth`` defaults to the candidates the listwise stage
    ranks, so every ranked passage is judged; they are judged ``window`` at a time."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = "pointwise_reasonrank"
    window: int = Field(20, ge=1, le=20)
    depth: int | None = Field(None, ge=1, description="top candidates to judge (default: listwise depth)")
    passage_tokens: int = Field(512, ge=8)
    show_answers: bool = Field(True, description="show the source's reference answers to the teacher")
    constrained: bool = Field(False, description="constrain answers to the positives shape (grammar)")


@dataclass(frozen=True)
class ParsedPositives:
    """Validated positions (1-based, as the teacher gave them), or why there are none."""

    positions: tuple[int, ...] | None
    reason: str | None


@dataclass(frozen=True)
class PlannedJudgment:
    """One batch of one query's candidates and the call that judges it."""

    candidates: CandidateList
    batch_index: int
    presented: tuple[str, ...]
    reference_answers: tuple[str, ...]
    call: Call

    @property
    def row_id(self) -> str:
        key = f"pointwise:{self.candidates.list_id}:{self.batch_index}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def reference_block(answers: tuple[str, ...]) -> str:
    """The prompt's reference-answer paragraph (empty when the source has none)."""
    if not answers:
        return ""
    label = "Reference answer" if len(answers) == 1 else "Reference answers"
    return f"{label} (for judging only): " + " | ".join(answers) + "\n\n"


def plan_judgments(lists: list[CandidateList], passages: dict[str, tuple[str, str]], prompt: Prompt,
                   config: PointwiseConfig, depth: int, model: str, sampling: Sampling) -> list[PlannedJudgment]:
    """One call per batch of ``config.window`` among the top ``depth`` candidates of each list."""
    planned = []
    for candidates in lists:
        top = candidates.docids[:depth]
        answers = candidates.answers if config.show_answers else ()
        for index, start in enumerate(range(0, len(top), config.window)):
            batch = top[start:start + config.window]
            texts = [clean_passage(*passages[d], config.passage_tokens) for d in batch]
            messages = prompt.render(num=str(len(batch)), query=candidates.query,
                                     reference=reference_block(answers), passages=numbered(texts))
            grammar = (positives_grammar(len(batch), reasoning_budget(len(batch), sampling.max_tokens))
                       if config.constrained else None)
            planned.append(PlannedJudgment(candidates, index, batch, answers,
                                           Call.of(model, messages, sampling, 0, grammar)))
    return planned


def parse_positives(answer: str, size: int, finish_reason: str = "stop") -> ParsedPositives:
    """Validate strictly: ``none`` or distinct positions in 1..size, comma-separated."""
    if finish_reason == "length":
        return ParsedPositives(None, "truncated")
    match = _ANSWER.search(answer)
    if match is None or not _POSITIVES.match(match.group(1).strip()):
        return ParsedPositives(None, "wrong_format")
    ids = [int(i) for i in _IDS.findall(match.group(1))]
    if any(i < 1 or i > size for i in ids):
        return ParsedPositives(None, "out_of_range")
    if len(set(ids)) != len(ids):
        return ParsedPositives(None, "duplicate_ids")
    return ParsedPositives(tuple(ids), None)


def build_judgment_row(planned: PlannedJudgment, completion: Completion, prompt: Prompt, backend: str) -> dict:
    """The pointwise row of one batch, accepted or not (``reason`` says why not)."""
    if completion.ok:
        parsed = parse_positives(completion.content, len(planned.presented), completion.finish_reason)
    else:
        parsed = ParsedPositives(None, "teacher_failed")
    chosen = set(parsed.positions or ())
    return {
        "row_id": planned.row_id,
        "list_id": planned.candidates.list_id,
        "batch_index": planned.batch_index,
        "qid": planned.candidates.qid,
        "query": planned.candidates.query,
        "domain": planned.candidates.domain,
        "snapshot_id": planned.candidates.snapshot_id,
        "candidates": list(planned.presented),
        "relevant_docids": [d for i, d in enumerate(planned.presented, start=1) if i in chosen],
        "reference_answers": list(planned.reference_answers),
        "messages": planned.call.message_dicts(),
        "reasoning": completion.reasoning,
        "answer": completion.content if completion.ok else completion.error,
        "finish_reason": completion.finish_reason,
        "reason": parsed.reason,
        **call_lineage([planned.call], prompt, backend),
    }


@dataclass(frozen=True)
class Positives:
    """What the accepted pointwise rows of one query say: judged and relevant docids."""

    judged: frozenset[str]
    relevant: frozenset[str]
    row_ids: tuple[str, ...]
    call_keys: tuple[str, ...]
    prompt_name: str
    prompt_version: str


def positives_by_query(rows: list[dict]) -> dict[tuple[str, str], Positives]:
    """(snapshot_id, qid) -> the positives of its accepted pointwise rows."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["snapshot_id"], row["qid"]), []).append(row)
    return {
        key: Positives(
            judged=frozenset(d for row in members for d in row["candidates"]),
            relevant=frozenset(d for row in members for d in row["relevant_docids"]),
            row_ids=tuple(sorted(row["row_id"] for row in members)),
            call_keys=tuple(k for row in members for k in row["call_keys"]),
            prompt_name=members[0]["prompt_name"],
            prompt_version=members[0]["prompt_version"],
        )
        for key, members in grouped.items()
    }


def attach_positives(row: dict, positives: dict[tuple[str, str], Positives]) -> dict:
    """Set a listwise row's ``relevant_docids`` (in retriever order), whether every
    candidate of it was judged, and where the judgments came from."""
    found = positives.get((row["snapshot_id"], row["qid"]))
    if found is None:
        return {**row, "relevant_docids": [], "positives_judged": False, "positives_lineage": None}
    return {
        **row,
        "relevant_docids": [d for d in row["candidates"] if d in found.relevant],
        "positives_judged": set(row["candidates"]) <= found.judged,
        "positives_lineage": {"prompt_name": found.prompt_name, "prompt_version": found.prompt_version,
                              "row_ids": list(found.row_ids), "call_keys": list(found.call_keys)},
    }
