"""Language-mixed chain-of-thought generation (Yi-Sang / KO-REAson).

A snapshot's questions in a target language (optionally with each question's judged passage)
go to the teacher with a short system prompt: think carefully, keep the question's key terms
in the target language, answer fluently in it. Every trace is measured (target-script ratio
and script switches of the reasoning, language of the final answer, n-gram repetition,
answer check against the reference answers) and passes a chain of gates; a trace that fails
one is a rejected row whose reason is the first gate it failed (``failed_gates`` lists all).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generators.candidates import passage_text, select_queries
from generators.language import LANGUAGES, Language, detect_language, script_switches, target_ratio
from generators.lineage import call_lineage
from generators.teachers import Call, Completion, Sampling
from generators.teachers.base import THINK_BLOCK_SEPARATOR
from prompts import Prompt
from warehouse.errors import InputError
from warehouse.snapshots import Snapshot

# Yi-Sang keeps a Korean trace when 5-20% of its reasoning's letters are Hangul.
DEFAULT_RATIO_BANDS = {"ko": (0.05, 0.20)}

# Gates in the order they are checked; a rejected row's reason is the first that fails.
GATES = ("truncated", "over_token_cap", "several_think_blocks", "no_reasoning", "repetition_loop",
         "no_answer", "answer_language", "ratio_out_of_band", "wrong_answer")
REJECT_REASONS = ("teacher_failed", *GATES)

# The statistic recorded as a rejection's score, per reason.
_SCORE_FIELDS = {"over_token_cap": "completion_tokens", "several_think_blocks": "think_blocks",
                 "repetition_loop": "max_ngram_repeats", "answer_language": "answer_language_score",
                 "ratio_out_of_band": "target_ratio", "wrong_answer": "answer_f1"}

# Korean particles and copula endings dropped from the end of a word before answers are
# compared ("차붐이라는" -> "차붐"), longest first.
_KO_ENDINGS = tuple(sorted((
    "은", "는", "이", "가", "을", "를", "의", "에", "에서", "로", "으로", "와", "과", "도", "만",
    "까지", "부터", "에게", "이다", "입니다", "이에요", "예요", "이라는", "라는", "이라고", "라고",
    "이며", "이고"), key=len, reverse=True))
# Languages written without spaces between words or with syllable blocks: answers are
# compared character by character (as the KorQuAD evaluation does).
_CHARACTER_F1 = {"ko", "ja", "zh"}
# English articles are dropped as in the SQuAD evaluation.
_EN_ARTICLES = {"a", "an", "the"}
_LOOP_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]|\w+")


class MixedCotConfig(BaseModel):
    """Settings of the ``mixed_cot`` kind (Yi-Sang defaults).

    - ``language``: target language code (see ``generators.language.LANGUAGES``), e.g. ``ko``.
    - ``with_passage``: give each question its judged passage (from qrels) as context.
    - ``ratio_bands``: language -> [min, max] share of the reasoning's letters in the target
      script; Korean defaults to [0.05, 0.20]; another target language needs its band here.
    - ``token_cap``: most completion tokens a trace may have (16k).
    - ``repetition_ngram`` / ``repetition_max``: a trace in which any word n-gram occurs more
      than ``repetition_max`` times is a repetition loop.
    - ``answer_f1`` / ``answer_contains``: where the source has reference answers, an answer
      is right when it matches one after normalisation, contains it (if enabled), or reaches
      this token F1 (character F1 for Korean, Japanese, Chinese).
    """

    model_config = ConfigDict(extra="forbid")

    language: str = "ko"
    with_passage: bool = False
    passage_tokens: int = Field(512, ge=8, description="passages are cut to this many words")
    prompt: str = "mixed_cot"
    passage_prompt: str = Field("mixed_cot_passage", description="the prompt used with_passage")
    samples: int = Field(1, ge=1)
    ratio_bands: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_RATIO_BANDS))
    token_cap: int = Field(16384, ge=1)
    repetition_ngram: int = Field(10, ge=2)
    repetition_max: int = Field(3, ge=1)
    answer_f1: float = Field(0.8, ge=0.0, le=1.0)
    answer_contains: bool = True

    @model_validator(mode="after")
    def _known_language_with_band(self) -> "MixedCotConfig":
        if self.language not in LANGUAGES:
            raise ValueError(f"mixed_cot.language {self.language!r} is not one of {sorted(LANGUAGES)}")
        if self.language not in self.ratio_bands:
            raise ValueError(f"mixed_cot.ratio_bands has no band for {self.language!r}")
        for code, (low, high) in self.ratio_bands.items():
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"mixed_cot.ratio_bands.{code}: need 0 <= min <= max <= 1")
        return self

    @property
    def target(self) -> Language:
        return LANGUAGES[self.language]

    @property
    def band(self) -> tuple[float, float]:
        return self.ratio_bands[self.language]

    @property
    def prompt_name(self) -> str:
        return self.passage_prompt if self.with_passage else self.prompt


@dataclass(frozen=True)
class Trace:
    """A teacher trace as the gates see it: reasoning and answer apart."""

    reasoning: str
    answer: str
    finish_reason: str = "stop"
    completion_tokens: int = 0
    references: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PlannedTrace:
    """One teacher sample for one question: where it comes from and the call that asks it."""

    snapshot_id: str
    domain: str
    qid: str
    question: str
    references: tuple[str, ...] | None
    passage_docid: str | None
    language: str
    sample_index: int
    call: Call

    @property
    def row_id(self) -> str:
        payload = json.dumps([self.snapshot_id, self.qid, self.passage_docid, self.language,
                              self.sample_index], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --- statistics -------------------------------------------------------------------------

def count_think_blocks(reasoning: str, answer: str) -> int:
    """``<think>`` blocks of the raw trace: those ``split_reasoning`` joined (it keeps their
    boundaries) plus any think tag left in the answer (an unclosed or stray block)."""
    joined = reasoning.count(THINK_BLOCK_SEPARATOR) + 1 if reasoning.strip() else 0
    return joined + max(answer.count("<think>"), answer.count("</think>"))


def max_ngram_repeats(text: str, n: int) -> int:
    """How often the most frequent word n-gram of ``text`` occurs (CJK characters are words)."""
    tokens = _LOOP_TOKEN.findall(unicodedata.normalize("NFKC", text).lower())
    if len(tokens) < n:
        return 1 if tokens else 0
    return max(Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)).values())


def answer_words(text: str, language: str) -> list[str]:
    """Normalised words of an answer: NFKC, lower case, punctuation and symbols dropped; for
    Korean one trailing particle or copula ending dropped from each word, for English articles."""
    text = unicodedata.normalize("NFKC", text).lower()
    words = "".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in text).split()
    if language == "ko":
        return [_strip_ending(word) for word in words]
    if language == "en":
        return [word for word in words if word not in _EN_ARTICLES]
    return words


def _strip_ending(word: str) -> str:
    for ending in _KO_ENDINGS:
        if word.endswith(ending) and len(word) > len(ending):
            return word[: -len(ending)]
    return word


def token_f1(answer: str, reference: str, language: str) -> float:
    """Token F1 of normalised answer and reference (characters for ko/ja/zh, else words)."""
    units = (lambda words: list("".join(words))) if language in _CHARACTER_F1 else (lambda words: words)
    predicted, gold = units(answer_words(answer, language)), units(answer_words(reference, language))
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def check_answer(answer: str, references: tuple[str, ...] | None,
                 config: MixedCotConfig) -> tuple[bool | None, float | None, bool | None]:
    """(exact match, best token F1, right?) against the references; Nones without references.

    Right means: equal to a reference after normalisation (spaces ignored), containing it
    (``answer_contains``), or a token F1 of at least ``answer_f1``.
    """
    if not references:
        return None, None, None
    language = config.language
    compact = "".join(answer_words(answer, language))
    golds = ["".join(answer_words(reference, language)) for reference in references]
    exact = any(gold == compact for gold in golds)
    contains = config.answer_contains and any(gold and gold in compact for gold in golds)
    f1 = max(token_f1(answer, reference, language) for reference in references)
    return exact, f1, exact or contains or f1 >= config.answer_f1


def trace_statistics(trace: Trace, config: MixedCotConfig) -> dict:
    """The language statistics and answer check of one trace (ratios on the reasoning only)."""
    answer_language, answer_language_score = detect_language(trace.answer)
    exact, f1, correct = check_answer(trace.answer, trace.references, config)
    return {
        "think_blocks": count_think_blocks(trace.reasoning, trace.answer),
        "target_ratio": target_ratio(trace.reasoning, config.target),
        "script_switches": script_switches(trace.reasoning),
        "answer_language": answer_language,
        "answer_language_score": answer_language_score,
        "max_ngram_repeats": max_ngram_repeats(f"{trace.reasoning}\n{trace.answer}",
                                               config.repetition_ngram),
        "completion_tokens": trace.completion_tokens,
        "answer_exact": exact,
        "answer_f1": f1,
        "answer_correct": correct,
    }


# --- gates ------------------------------------------------------------------------------

def failed_gates(trace: Trace, stats: dict, config: MixedCotConfig) -> list[str]:
    """Every gate the trace fails, in ``GATES`` order (empty: accepted)."""
    low, high = config.band
    ratio = stats["target_ratio"]
    failures = {
        "truncated": trace.finish_reason == "length",
        "over_token_cap": trace.completion_tokens > config.token_cap,
        "several_think_blocks": stats["think_blocks"] > 1,
        "no_reasoning": not trace.reasoning.strip(),
        "repetition_loop": stats["max_ngram_repeats"] > config.repetition_max,
        "no_answer": not trace.answer.strip(),
        "answer_language": stats["answer_language"] != config.language,
        "ratio_out_of_band": ratio is None or not low <= ratio <= high,
        "wrong_answer": stats["answer_correct"] is False,
    }
    return [gate for gate in GATES if failures[gate]]


def check_trace(trace: Trace, config: MixedCotConfig) -> tuple[dict, list[str]]:
    """Statistics and failed gates of one trace."""
    stats = trace_statistics(trace, config)
    return stats, failed_gates(trace, stats, config)


def rejection_score(row: dict) -> float | None:
    """The statistic behind a rejected row's reason (e.g. the ratio for ``ratio_out_of_band``)."""
    value = row.get(_SCORE_FIELDS.get(row["reason"], ""))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- planning and rows ------------------------------------------------------------------

def judged_passage(grades: dict[str, int]) -> str | None:
    """The question's passage: its highest-graded relevant docid (ties: the smallest id)."""
    best = min(grades.items(), key=lambda item: (-item[1], item[0]), default=None)
    return best[0] if best and best[1] > 0 else None


def render_messages(prompt: Prompt, language: Language, question: str,
                    passage: str | None = None) -> list[dict[str, str]]:
    values = {"language": language.name, "question": question}
    if passage is not None:
        values["passage"] = passage
    return prompt.render(**values)


def plan_traces(snapshot: Snapshot, queries: dict[str, tuple[str, list[str] | None]],
                qrels: dict[str, dict[str, int]], passages: dict[str, tuple[str, str]],
                prompt: Prompt, config: MixedCotConfig, model: str, sampling: Sampling,
                count: int | None, seed: int) -> list[PlannedTrace]:
    """The teacher calls for ``count`` questions of a snapshot (seeded choice), ``samples`` each."""
    passage_of = {qid: judged_passage(grades) for qid, grades in qrels.items()}
    if config.with_passage:
        if not any(passage_of.values()):
            raise InputError(f"mixed_cot.with_passage: snapshot {snapshot.name!r} has no judged "
                             "passages (qrels) to give the questions as context")
        if "passage" not in prompt.placeholders():
            raise InputError(f"mixed_cot.passage_prompt {prompt.name!r} has no {{passage}} placeholder")
        judged = {qid for qid, docid in passage_of.items() if docid}
    else:
        judged = set(qrels)
    planned = []
    for qid in select_queries(list(queries), judged, count, seed):
        question, answers = queries[qid]
        docid = passage_of.get(qid) if config.with_passage else None
        context = (" ".join(passage_text(*passages[docid]).split()[: config.passage_tokens])
                   if docid else None)
        messages = render_messages(prompt, config.target, question, context)
        references = tuple(answers) if answers else None
        for index in range(config.samples):
            planned.append(PlannedTrace(snapshot.snapshot_id, snapshot.domain, qid, question, references,
                                        docid, config.language, index,
                                        Call.of(model, messages, sampling, index)))
    return planned


def build_row(planned: PlannedTrace, completion: Completion, prompt: Prompt, backend: str,
              config: MixedCotConfig) -> dict:
    """The mixed_cot row of one sample, accepted or not (``reason`` says why not)."""
    trace = Trace(completion.reasoning, completion.content, completion.finish_reason,
                  completion.completion_tokens, planned.references)
    stats, failures = check_trace(trace, config)
    if not completion.ok:
        failures = ["teacher_failed"]
    return {
        "row_id": planned.row_id,
        "qid": planned.qid,
        "domain": planned.domain,
        "snapshot_id": planned.snapshot_id,
        "language": planned.language,
        "question": planned.question,
        "passage_docid": planned.passage_docid,
        "prompt_messages": planned.call.message_dicts(),
        "reasoning": completion.reasoning,
        "answer": completion.content,
        "references": list(planned.references) if planned.references else None,
        "sample_index": planned.sample_index,
        "finish_reason": completion.finish_reason,
        "error": completion.error or None,
        **stats,
        "failed_gates": failures,
        "reason": failures[0] if failures else None,
        **call_lineage([planned.call], prompt, backend),
    }
