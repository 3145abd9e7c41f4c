"""Listwise generation (ReasonRank): the teacher reasons, then ranks a presented list.

Identifiers in the prompt are 1-based positions in the presented list; the answer must be
``<answer>[4] > [2] > …</answer>`` naming every position exactly once. Nothing is repaired:
an invalid answer becomes a rejected row with its reason.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from generators.candidates import CandidateList
from generators.constraints import ranking_grammar, reasoning_budget
from generators.teachers import Call, Completion, Sampling
from prompts import Prompt

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_RANKING = re.compile(r"^\[\d+\](?: > \[\d+\])*$")
_IDS = re.compile(r"\[(\d+)\]")
_CITATION = re.compile(r"\[(\d+)\]")

REJECT_REASONS = ("wrong_format", "missing_ids", "duplicate_ids", "out_of_range", "truncated",
                  "teacher_failed")


class ListwiseConfig(BaseModel):
    """Listwise stage settings (ReasonRank defaults)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = "listwise_reasonrank"
    window: int = Field(20, ge=2, le=20)
    passage_tokens: int = Field(512, ge=8)
    samples: int = Field(1, ge=1)
    constrained: bool = Field(False, description="constrain answers to the ranking shape (grammar)")


@dataclass(frozen=True)
class PlannedSample:
    """One teacher sample of one candidate list: what is presented and the call that ranks it."""

    candidates: CandidateList
    sample_index: int
    presented: tuple[str, ...]  # docids in presented order
    call: Call

    @property
    def row_id(self) -> str:
        return hashlib.sha256(f"{self.candidates.list_id}:{self.sample_index}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ParsedRanking:
    """A validated permutation (1-based positions, best first), or why there is none."""

    permutation: tuple[int, ...] | None
    reason: str | None


def clean_passage(title: str, text: str, max_tokens: int) -> str:
    """One line of passage text: title and body, cut to ``max_tokens`` whitespace tokens,
    with literal ``[n]`` rewritten to ``(n)`` so it cannot be mistaken for an identifier."""
    words = f"{title}. {text}".strip(" .").split() if title else text.split()
    return _CITATION.sub(r"(\1)", " ".join(words[:max_tokens]))


def render_messages(prompt: Prompt, query: str, passage_texts: list[str]) -> list[dict[str, str]]:
    numbered = "\n".join(f"[{i}] {text}" for i, text in enumerate(passage_texts, start=1))
    return prompt.render(num=str(len(passage_texts)), query=query, passages=numbered)


def plan_samples(lists: list[CandidateList], passages: dict[str, tuple[str, str]], prompt: Prompt,
                 config: ListwiseConfig, model: str, sampling: Sampling) -> list[PlannedSample]:
    """The teacher calls a build needs: ``config.samples`` per list, top ``window`` candidates."""
    planned = []
    for candidates in lists:
        presented = candidates.docids[: config.window]
        texts = [clean_passage(*passages[d], config.passage_tokens) for d in presented]
        messages = render_messages(prompt, candidates.query, texts)
        grammar = (ranking_grammar(len(presented), reasoning_budget(len(presented), sampling.max_tokens))
                   if config.constrained else None)
        for index in range(config.samples):
            planned.append(PlannedSample(candidates, index, presented,
                                         Call.of(model, messages, sampling, index, grammar)))
    return planned


def parse_ranking(answer: str, size: int, finish_reason: str = "stop") -> ParsedRanking:
    """Validate an answer strictly: every position 1..size exactly once, nothing else."""
    if finish_reason == "length":
        return ParsedRanking(None, "truncated")
    match = _ANSWER.search(answer)
    if match is None or not _RANKING.match(match.group(1).strip()):
        return ParsedRanking(None, "wrong_format")
    ids = [int(i) for i in _IDS.findall(match.group(1))]
    if any(i < 1 or i > size for i in ids):
        return ParsedRanking(None, "out_of_range")
    if len(set(ids)) != len(ids):
        return ParsedRanking(None, "duplicate_ids")
    if len(ids) != size:
        return ParsedRanking(None, "missing_ids")
    return ParsedRanking(tuple(ids), None)


def build_row(sample: PlannedSample, completion: Completion, prompt: Prompt, backend: str) -> dict:
    """The listwise row for one sample, accepted or not (``reason`` says why not)."""
    if completion.ok:
        parsed = parse_ranking(completion.content, len(sample.presented), completion.finish_reason)
    else:
        parsed = ParsedRanking(None, "teacher_failed")
    permutation = list(parsed.permutation or [])
    return {
        "row_id": sample.row_id,
        "list_id": sample.candidates.list_id,
        "qid": sample.candidates.qid,
        "query": sample.candidates.query,
        "domain": sample.candidates.domain,
        "snapshot_id": sample.candidates.snapshot_id,
        "initial_list": list(sample.presented),
        "final_list": [sample.presented[i - 1] for i in permutation],
        "permutation": permutation,
        "reasoning": completion.reasoning,
        "answer": completion.content if completion.ok else completion.error,
        "relevant_docids": [],
        "sample_index": sample.sample_index,
        "finish_reason": completion.finish_reason,
        "reason": parsed.reason,
        "teacher_model": sample.call.model,
        "teacher_backend": backend,
        "prompt_name": prompt.name,
        "prompt_version": prompt.version,
        "sampling": sample.call.sampling.model_dump(),
        "call_keys": [sample.call.key],
    }
