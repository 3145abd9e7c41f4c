"""Listwise generation (ReasonRank): the teacher reasons, then ranks a presented list.

Identifiers in a prompt are 1-based positions in the presented window; the answer must be
``<answer>[4] > [2] > …</answer>`` naming every position exactly once. Nothing is repaired:
an invalid answer rejects the whole sample with its reason.

A list of up to ``window`` candidates is ranked in one call. A longer one (``depth`` >
``window``) is ranked with sliding windows from the bottom up (window w, stride s); each
pass settles its top w − s positions, so a later pass sweeps only the positions below the
ones already settled, and ``passes: full`` runs as many passes as a complete ranking of the
top ``depth`` needs. A sample's row holds the merged ranking, every window (presented ids
and permutation, in call order, aligned with ``call_keys``), and the reasoning, answer and
messages of its top window (``top_window``, an index into ``windows``): the last window
starting at the first position, i.e. the top window of the first pass, whose ranking fixes
the top w − s of the final list. The other windows' reasoning stays in the call record
(``teacher_calls``). A rejected sample keeps the reasoning and messages of the failed window.

Shuffled presentations: sample 0 shows the candidates in retriever order; sample i > 0 in
a seeded shuffle (distinct from the other samples' orders where the list allows). Every
sample is mapped back to passage ids and stored as its own row (same ``list_id``).

Top-up (with ``samples`` >= 2): a list with fewer valid samples than ``samples`` (invalid answers, failed calls) is
given new presentations, with the next sample indexes (new calls, recorded and resumable
like the others), until it has enough or has used ``samples + top_up`` presentations. A list
still short then follows ``short_lists``: "reject" (default) rejects its valid samples with
reason ``too_few_samples``; "flag" keeps them, each row saying ``samples_short`` (how many
are missing), and the audit lists them.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generators.candidates import CandidateList
from generators.constraints import ranking_grammar, reasoning_budget
from generators.teachers import Call, Completion, Sampling, TeacherRunner, TeacherStats
from prompts import Prompt

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_RANKING = re.compile(r"^\[\d+\](?: > \[\d+\])*$")
_IDS = re.compile(r"\[(\d+)\]")
_CITATION = re.compile(r"\[(\d+)\]")

REJECT_REASONS = ("wrong_format", "missing_ids", "duplicate_ids", "out_of_range", "truncated",
                  "teacher_failed", "too_few_samples")

Span = tuple[int, int, int]  # (pass, start, end): positions [start, end) of the current order


class ListwiseConfig(BaseModel):
    """Listwise stage settings (ReasonRank defaults: one window of 20, 512-token passages).

    ``passage_tokens`` counts whitespace-separated words.
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str = "listwise_reasonrank"
    window: int = Field(20, ge=2, le=20)
    stride: int | None = Field(None, ge=1, description="sliding-window step (default window // 2)")
    depth: int | None = Field(None, ge=2, description="top candidates to rank (default one window)")
    passes: int | Literal["full"] = Field(1, description="sliding-window passes; 'full' ranks all of depth")
    passage_tokens: int = Field(512, ge=8)
    samples: int = Field(1, ge=1, description="presentations per list: retriever order, then shuffles")
    constrained: bool = Field(False, description="constrain answers to the ranking shape (grammar)")
    top_up: int = Field(2, ge=0, description="extra presentations per list, at most, to replace invalid samples")
    short_lists: Literal["reject", "flag"] = Field(
        "reject", description="a list still short of valid samples after top-up: reject its samples, or flag them")
    consensus: Literal["add", "off"] = Field(
        "add", description="with samples >= 2: add one consensus row per list with two or more kept samples")
    consensus_method: Literal["kemeny", "borda"] = Field(
        "kemeny", description="kemeny: exact for lists of at most 8 passages, Borda beyond; borda: always Borda")

    @model_validator(mode="after")
    def _coherent(self) -> "ListwiseConfig":
        if self.stride is not None and self.stride >= self.window:
            raise ValueError(f"stride ({self.stride}) must be smaller than window ({self.window})")
        if isinstance(self.passes, int) and self.passes < 1:
            raise ValueError("passes must be at least 1 (or 'full')")
        return self

    @property
    def step(self) -> int:
        return self.stride or self.window // 2

    @property
    def ranked_depth(self) -> int:
        return self.depth or self.window


@dataclass(frozen=True)
class ParsedRanking:
    """A validated permutation (1-based positions, best first), or why there is none."""

    permutation: tuple[int, ...] | None
    reason: str | None


def clean_passage(title: str, text: str, max_tokens: int) -> str:
    """One line of passage text: title and body, cut to ``max_tokens`` whitespace tokens,
    with literal ``[n]`` rewritten to ``(n)`` so it cannot be mistaken for an identifier."""
    words = f"{title}. {text}".strip(" .").split() if title else text.split()
    line = " ".join(words[:max_tokens])
    return _CITATION.sub(r"(\1)", line) if "[" in line else line  # most passages have no "["


def numbered(passage_texts: Sequence[str]) -> str:
    """Passages as ``[1] text`` lines."""
    return "\n".join(f"[{i}] {text}" for i, text in enumerate(passage_texts, start=1))


def render_messages(prompt: Prompt, query: str, passage_texts: list[str]) -> list[dict[str, str]]:
    return prompt.render(num=str(len(passage_texts)), query=query, passages=numbered(passage_texts))


# --------------------------------------------------------------------------- windows

def full_passes(size: int, window: int, stride: int) -> int:
    """Passes after which a consistent teacher has ranked all ``size`` positions."""
    return 1 if size <= window else math.ceil((size - window) / (window - stride)) + 1


def window_schedule(size: int, window: int, stride: int, passes: int | str = 1) -> tuple[Span, ...]:
    """The windows to rank, in order: each pass sweeps from the bottom up, moving by
    ``stride``, over the positions below those earlier passes settled (w − s per pass).
    More passes than a complete ranking needs are not run."""
    needed = full_passes(size, window, stride)
    count = needed if passes == "full" else min(int(passes), needed)
    spans = []
    for number in range(1, count + 1):
        low = (number - 1) * (window - stride)
        end, start = size, max(low, size - window)
        spans.append((number, start, end))
        while start > low:
            end, start = end - stride, max(low, start - stride)
            spans.append((number, start, end))
    return tuple(spans)


def apply_window(order: tuple[str, ...], span: Span, permutation: Sequence[int]) -> tuple[str, ...]:
    """``order`` with the window ``span`` reordered by ``permutation`` (1-based, best first)."""
    _, start, end = span
    window = order[start:end]
    return order[:start] + tuple(window[i - 1] for i in permutation) + order[end:]


def merge_windows(order: tuple[str, ...], schedule: Sequence[Span],
                  rank: Callable[[tuple[str, ...]], Sequence[int]]) -> tuple[str, ...]:
    """Run a schedule with ``rank(window ids) -> permutation``; the merged final order."""
    for span in schedule:
        order = apply_window(order, span, rank(order[span[1]:span[2]]))
    return order


def presentation_orders(docids: tuple[str, ...], samples: int, seed: int, list_id: str) -> list[tuple[str, ...]]:
    """``samples`` presented orders: the retriever order, then seeded shuffles, distinct
    from each other while the list has enough permutations."""
    orders = [docids]
    if samples <= 1:  # the retriever order only: no shuffle, so no seeded generator to build
        return orders
    rng = random.Random(f"{seed}:{list_id}")
    possible = math.factorial(len(docids)) if len(docids) < 13 else samples
    while len(orders) < samples:
        order = tuple(rng.sample(docids, len(docids)))
        if order not in orders or len(orders) >= possible:
            orders.append(order)
    return orders


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class WindowPrompter:
    """Makes the call that ranks one window: cleaned passages, prompt, model, sampling."""

    prompt: Prompt
    texts: Mapping[str, str]  # docid -> cleaned passage text
    model: str
    sampling: Sampling
    constrained: bool

    def call(self, query: str, docids: Sequence[str], sample_index: int) -> Call:
        messages = render_messages(self.prompt, query, [self.texts[d] for d in docids])
        grammar = (ranking_grammar(len(docids), reasoning_budget(len(docids), self.sampling.max_tokens))
                   if self.constrained else None)
        return Call.of(self.model, messages, self.sampling, sample_index, grammar)


@dataclass(frozen=True)
class PlannedSample:
    """One presentation of one candidate list and the windows that will rank it."""

    candidates: CandidateList
    sample_index: int
    presented: tuple[str, ...]  # docids in the order first shown (sample 0: retriever order)
    schedule: tuple[Span, ...]
    prompter: WindowPrompter = field(repr=False)

    @property
    def row_id(self) -> str:
        return hashlib.sha256(f"{self.candidates.list_id}:{self.sample_index}".encode()).hexdigest()[:16]

    @property
    def first_call(self) -> Call:
        _, start, end = self.schedule[0]
        return self.prompter.call(self.candidates.query, self.presented[start:end], self.sample_index)


def plan_samples(lists: list[CandidateList], passages: dict[str, tuple[str, str]], prompt: Prompt,
                 config: ListwiseConfig, model: str, sampling: Sampling, seed: int = 0) -> list[PlannedSample]:
    """``config.samples`` presentations of the top ``depth`` candidates of every list.

    The prompt shows the query and the passages only: reference answers never reach it.
    """
    planned = []
    cleaned: dict[str, str] = {}  # docid -> cleaned text: lists share passages, clean each once
    for candidates in lists:
        top = candidates.docids[: config.ranked_depth]
        if not top:
            continue
        texts = {}
        for d in top:
            text = cleaned.get(d)
            if text is None:
                text = cleaned[d] = clean_passage(*passages[d], config.passage_tokens)
            texts[d] = text
        prompter = WindowPrompter(prompt, texts, model, sampling, config.constrained)
        schedule = window_schedule(len(top), config.window, config.step, config.passes)
        for index, order in enumerate(presentation_orders(top, config.samples, seed, candidates.list_id)):
            planned.append(PlannedSample(candidates, index, order, schedule, prompter))
    return planned


# --------------------------------------------------------------------------- ranking

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


@dataclass
class SampleRanking:
    """A sample being ranked window by window; stops at the first invalid answer."""

    sample: PlannedSample
    order: tuple[str, ...]
    windows: list[dict] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    reason: str | None = None

    @classmethod
    def start(cls, sample: PlannedSample) -> "SampleRanking":
        return cls(sample, sample.presented)

    @property
    def pending(self) -> bool:
        return self.reason is None and len(self.windows) < len(self.sample.schedule)

    @property
    def accepted(self) -> bool:
        return self.reason is None and not self.pending

    @property
    def top_window(self) -> int | None:
        """Index of the window whose call the row shows: the top window of the first pass
        once ranked, else the window that failed."""
        if not self.accepted:
            return len(self.windows) - 1 if self.windows else None
        return max(i for i, window in enumerate(self.windows) if window["start"] == 0)

    def next_call(self) -> Call:
        _, start, end = self.sample.schedule[len(self.windows)]
        return self.sample.prompter.call(self.sample.candidates.query, self.order[start:end],
                                         self.sample.sample_index)

    def record(self, call: Call, completion: Completion) -> None:
        """Apply one window's answer, or stop with the reason it is invalid."""
        span = self.sample.schedule[len(self.windows)]
        presented = self.order[span[1]:span[2]]
        if completion.ok:
            parsed = parse_ranking(completion.content, len(presented), completion.finish_reason)
        else:
            parsed = ParsedRanking(None, "teacher_failed")
        self.calls.append(call)
        self.completions.append(completion)
        self.windows.append({"pass": span[0], "start": span[1], "end": span[2], "presented": list(presented),
                             "permutation": list(parsed.permutation or [])})
        if parsed.reason is not None:
            self.reason = parsed.reason
            return
        self.order = apply_window(self.order, span, parsed.permutation)


def rank_samples(planned: list[PlannedSample], runner: TeacherRunner,
                 label: str = "listwise") -> tuple[list[SampleRanking], TeacherStats]:
    """Rank every sample. Windows of one sample depend on each other, so calls go in rounds:
    each round sends the next window of every unfinished sample at once."""
    rankings = [SampleRanking.start(sample) for sample in planned]
    stats = TeacherStats()
    while active := [r for r in rankings if r.pending]:
        stats.add(rank_round(active, runner, label))
    return rankings, stats


def rank_round(active: list[SampleRanking], runner: TeacherRunner, label: str) -> TeacherStats:
    """Send the next window of every sample in ``active``. Each call is built as the runner
    takes it (the first requests go out at once) and each answer recorded (parsed, validated)
    as it arrives, while the round's other calls are in flight."""
    waiting: dict[str, list[tuple[SampleRanking, Call]]] = {}  # key -> the samples asking it
    answered: dict[str, Completion] = {}

    def next_calls() -> Iterator[Call]:
        for ranking in active:
            call = ranking.next_call()
            if call.key in answered:  # an earlier sample asked the same call, answered already
                ranking.record(call, answered[call.key])
                continue
            waiting.setdefault(call.key, []).append((ranking, call))
            yield call

    def record(key: str, completion: Completion) -> None:
        answered[key] = completion
        for ranking, call in waiting.pop(key):
            ranking.record(call, completion)

    _, stats = runner.run(next_calls(), label, record, total=len(active))
    return stats


def top_up_samples(rankings: Sequence[SampleRanking], config: ListwiseConfig, seed: int = 0) -> list[PlannedSample]:
    """New presentations for the lists short of valid samples: one per missing sample, with
    the next sample indexes, within ``samples + top_up`` presentations per list. Builds of one
    sample per list are not topped up (a list whose only sample failed is simply absent)."""
    if config.samples < 2:
        return []
    by_list: dict[str, list[SampleRanking]] = {}
    for ranking in rankings:
        by_list.setdefault(ranking.sample.candidates.list_id, []).append(ranking)
    planned = []
    for list_id, members in by_list.items():
        used = 1 + max(r.sample.sample_index for r in members)
        missing = min(config.samples - sum(r.accepted for r in members), config.samples + config.top_up - used)
        if missing <= 0:
            continue
        first = min((r.sample for r in members), key=lambda sample: sample.sample_index)
        top = first.candidates.docids[: len(first.presented)]
        orders = presentation_orders(top, used + missing, seed, list_id)
        planned += [PlannedSample(first.candidates, index, orders[index], first.schedule, first.prompter)
                    for index in range(used, used + missing)]
    return planned


def rank_with_top_up(planned: list[PlannedSample], runner: TeacherRunner, config: ListwiseConfig, seed: int = 0,
                     label: str = "listwise") -> tuple[list[SampleRanking], TeacherStats]:
    """``rank_samples``, then top-up rounds until every list has enough valid samples or has
    used its extra presentations."""
    rankings, stats = rank_samples(planned, runner, label)
    while extra := top_up_samples(rankings, config, seed):
        more, round_stats = rank_samples(extra, runner, label)
        rankings += more
        stats.add(round_stats)
    return rankings, stats


def short_lists(rankings: Sequence[SampleRanking], samples: int) -> dict[str, int]:
    """list_id -> valid samples missing, for lists with at least one valid sample but fewer
    than ``samples``."""
    valid: dict[str, int] = {}
    for ranking in rankings:
        list_id = ranking.sample.candidates.list_id
        valid[list_id] = valid.get(list_id, 0) + ranking.accepted
    return {list_id: samples - n for list_id, n in valid.items() if 0 < n < samples}


def build_row(ranking: SampleRanking, prompt: Prompt, backend: str) -> dict:
    """The listwise row of one sample, accepted or not (``reason`` says why not).

    ``relevant_docids`` stays empty until pointwise positives are attached.
    """
    sample, top = ranking.sample, ranking.top_window
    call = ranking.calls[top] if top is not None else None
    completion = ranking.completions[top] if top is not None else Completion(status="failed")
    position = {docid: i for i, docid in enumerate(sample.presented, start=1)}
    final = list(ranking.order) if ranking.accepted else []
    return {
        "row_id": sample.row_id,
        "list_id": sample.candidates.list_id,
        "sample_index": sample.sample_index,
        "qid": sample.candidates.qid,
        "query": sample.candidates.query,
        "domain": sample.candidates.domain,
        "snapshot_id": sample.candidates.snapshot_id,
        "candidates": list(sample.candidates.docids[: len(sample.presented)]),
        "initial_list": list(sample.presented),
        "final_list": final,
        "permutation": [position[d] for d in final],
        "windows": ranking.windows,
        "top_window": top,
        "messages": call.message_dicts() if call else [],
        "reasoning": completion.reasoning,
        "answer": completion.content if completion.ok else completion.error,
        "relevant_docids": [],
        "positives_judged": False,
        "finish_reason": completion.finish_reason,
        "reason": ranking.reason,
        "teacher_model": sample.prompter.model,
        "teacher_backend": backend,
        "prompt_name": prompt.name,
        "prompt_version": prompt.version,
        "sampling": sample.prompter.sampling.model_dump(),
        "call_keys": [c.key for c in ranking.calls],
    }
