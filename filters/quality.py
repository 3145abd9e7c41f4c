"""Row quality: length bounds, truncation, repetition loops, empty reasoning, language.

Each filter reads one field (or several, see `filters.text.key_text`) and rejects with a
short reason; the score is the measured value (length, repeated share, language probability).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from filters.base import KEEP, Filter, Verdict, register
from filters.text import Row, RowKey, describe_key, key_text, word_tokens


class _KeyedFilter(Filter):
    def params(self) -> dict[str, Any]:
        return {**super().params(), "key": describe_key(self.key)}


@register
@dataclass
class LengthFilter(_KeyedFilter):
    """Reject texts shorter than `min_length` or longer than `max_length` (either optional).

    Args:
        key: field(s) measured (default "reasoning").
        min_length, max_length: inclusive bounds (default None: unbounded).
        unit: "words" (word tokens, default) or "chars".

    Reasons "too_short" / "too_long"; score: the length.
    """

    name: ClassVar[str] = "length"
    key: RowKey = "reasoning"
    min_length: int | None = None
    max_length: int | None = None
    unit: str = "words"

    def __post_init__(self) -> None:
        if self.unit not in ("words", "chars"):
            raise ValueError(f"length: unit must be 'words' or 'chars', got {self.unit!r}")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError(f"length: min_length {self.min_length} > max_length {self.max_length}")

    def check(self, row: Row) -> Verdict:
        text = key_text(row, self.key)
        length = len(word_tokens(text)) if self.unit == "words" else len(text)
        if self.min_length is not None and length < self.min_length:
            return Verdict(False, "too_short", length)
        if self.max_length is not None and length > self.max_length:
            return Verdict(False, "too_long", length)
        return KEEP


@register
@dataclass
class TruncationFilter(Filter):
    """Reject generations the teacher did not finish (`finish_reason` == "length").

    Args: field (default "finish_reason"), truncated_values (default ["length"]).
    Reason "truncated".
    """

    name: ClassVar[str] = "truncated"
    field: str = "finish_reason"
    truncated_values: Sequence[str] = ("length",)

    def check(self, row: Row) -> Verdict:
        return Verdict(False, "truncated") if row.get(self.field) in self.truncated_values else KEEP


@register
@dataclass
class EmptyReasoningFilter(_KeyedFilter):
    """Reject rows whose reasoning holds no word. Reason "empty_reasoning"."""

    name: ClassVar[str] = "empty_reasoning"
    key: RowKey = "reasoning"

    def check(self, row: Row) -> Verdict:
        return KEEP if word_tokens(key_text(row, self.key)) else Verdict(False, "empty_reasoning")


def repeated_ngram_fraction(text: str, n: int = 8) -> float:
    """Share of word positions covered by a word n-gram that occurs more than once.

    Near 0 for prose; near 1 for a generation stuck in a loop.
    """
    tokens = word_tokens(text)
    if len(tokens) < 2 * n:
        return 0.0
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    counts = Counter(grams)
    covered = [False] * len(tokens)
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[i : i + n] = [True] * n
    return sum(covered) / len(tokens)


def duplicate_line_fraction(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line (after stripping)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


@register
@dataclass
class RepetitionFilter(_KeyedFilter):
    """Reject repetition loops.

    Args:
        key: field(s) checked (default "reasoning").
        ngram_size: words per n-gram (default 8).
        max_repeated_ngram_fraction: largest share of words inside repeated n-grams
            (default 0.5; reason "repeated_ngrams"). Prose stays below: the highest share
            among the CISI, CACM and KorQuAD passages is 0.42, a 43-word abstract that says
            "between every pair of vertices in a directed graph" twice.
        max_duplicate_line_fraction: largest share of non-empty lines repeating an earlier
            line (default 0.3, Gopher's duplicate-line bound; reason "repeated_lines").
    """

    name: ClassVar[str] = "repetition"
    key: RowKey = "reasoning"
    ngram_size: int = 8
    max_repeated_ngram_fraction: float = 0.5
    max_duplicate_line_fraction: float = 0.3

    def check(self, row: Row) -> Verdict:
        text = key_text(row, self.key)
        lines = duplicate_line_fraction(text)
        if lines > self.max_duplicate_line_fraction:
            return Verdict(False, "repeated_lines", lines)
        grams = repeated_ngram_fraction(text, self.ngram_size)
        if grams > self.max_repeated_ngram_fraction:
            return Verdict(False, "repeated_ngrams", grams)
        return KEEP


@functools.lru_cache(maxsize=1)
def _language_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) from py3langid."""
    language, probability = _language_identifier().classify(text)
    return language, float(probability)


@register
@dataclass
class LanguageFilter(_KeyedFilter):
    """Reject texts not in the spec's language (py3langid).

    Args:
        language: ISO 639-1 code, e.g. "ko" (required).
        key: field(s) checked (default "answer").
        min_probability: least probability of `language` when it is the top guess (default 0.5).

    Reasons "empty_text", "language:<detected>" (score: its probability), and
    "language_uncertain" (score: the probability of `language`).
    """

    name: ClassVar[str] = "language"
    language: str
    key: RowKey = "answer"
    min_probability: float = 0.5

    def check(self, row: Row) -> Verdict:
        text = key_text(row, self.key)
        if not word_tokens(text):
            return Verdict(False, "empty_text")
        detected, probability = identify_language(text)
        if detected != self.language:
            return Verdict(False, f"language:{detected}", probability)
        if probability < self.min_probability:
            return Verdict(False, "language_uncertain", probability)
        return Verdict(True, score=probability)


__all__ = [
    "EmptyReasoningFilter",
    "LanguageFilter",
    "LengthFilter",
    "RepetitionFilter",
    "TruncationFilter",
    "duplicate_line_fraction",
    "identify_language",
    "repeated_ngram_fraction",
]
