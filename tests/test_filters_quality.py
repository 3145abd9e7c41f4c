"""Quality filters: length, truncation, repetition loops, empty reasoning, language."""

from __future__ import annotations

from pathlib import Path

import pytest

from filters.base import build_filter, run_chain
from filters.quality import (
    EmptyReasoningFilter,
    LanguageFilter,
    LengthFilter,
    RepetitionFilter,
    TruncationFilter,
    duplicate_line_fraction,
    repeated_ngram_fraction,
)
from tests.conftest import read_corpus


def test_length_bounds():
    flt = LengthFilter(key="reasoning", min_length=3, max_length=5)
    rows = [{"reasoning": "one two"}, {"reasoning": "one two three"}, {"reasoning": "a b c d e f"}]
    assert [(v.keep, v.reason, v.score) for _, v in flt.apply(rows)] == [
        (False, "too_short", 2),
        (True, None, None),
        (False, "too_long", 6),
    ]
    assert LengthFilter(min_length=10, unit="chars").check({"reasoning": "short"}).reason == "too_short"
    with pytest.raises(ValueError, match="unit"):
        build_filter("length", unit="tokens")


def test_truncated_and_empty_reasoning():
    rows = [
        {"row_id": "ok", "reasoning": "Passage [2] answers it.", "finish_reason": "stop"},
        {"row_id": "cut", "reasoning": "Passage [2] answers", "finish_reason": "length"},
        {"row_id": "blank", "reasoning": "  \n ... ", "finish_reason": "stop"},
    ]
    result = run_chain([TruncationFilter(), EmptyReasoningFilter()], rows)
    assert [r["row_id"] for r in result.kept] == ["ok"]
    assert [(r.row["row_id"], r.filter, r.reason) for r in result.rejected] == [
        ("cut", "truncated", "truncated"),
        ("blank", "empty_reasoning", "empty_reasoning"),
    ]


def test_repetition_loops_are_rejected_and_real_passages_are_not(shared_data):
    passages = read_corpus(shared_data, "cisi") + read_corpus(shared_data, "cacm") + read_corpus(shared_data, "korquad")
    flt = RepetitionFilter()
    false_positives = [p["_id"] for p in passages if not flt.check({"reasoning": p["text"]}).keep]
    print(f"\nrepetition filter: {len(false_positives)} of {len(passages)} real passages rejected")
    assert false_positives == []

    opening = passages[0]["text"]
    loop = opening + " " + " ".join(["Passage [3] is the most relevant because it mentions the classification."] * 12)
    verdict = flt.check({"reasoning": loop})
    assert (verdict.keep, verdict.reason) == (False, "repeated_ngrams")
    assert verdict.score > 0.5
    lines = "\n".join(["[1] > [2] > [3]", "Let me check again.", "[1] > [2] > [3]", "Let me check again."])
    assert duplicate_line_fraction(lines) == 0.5
    assert flt.check({"reasoning": lines}).reason == "repeated_lines"
    assert repeated_ngram_fraction("short text") == 0.0


def test_language_filter_on_real_korean_and_english(shared_data):
    korean = read_corpus(shared_data, "korquad")[:50]
    english = read_corpus(shared_data, "cisi")[:50]
    flt = build_filter("language", language="ko", key="answer")
    rows = [{"answer": p["text"]} for p in korean + english]
    verdicts = [v for _, v in flt.apply(rows)]
    assert all(v.keep for v in verdicts[:50])
    assert all(v.reason == "language:en" for v in verdicts[50:])
    mixed_trace = {
        "reasoning": "The question asks 차범근이 넣은 골. 분데스리가에서 98골을 넣었다.",
        "answer": "98골입니다.",
    }
    assert LanguageFilter(language="ko").check(mixed_trace).keep
    assert LanguageFilter(language="ko").check({"answer": "   "}).reason == "empty_text"
