"""The filter chain: records, flags, order, registry and manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from filters.base import (
    Filter,
    Verdict,
    build_chain,
    build_filter,
    describe_chain,
    registered_filters,
    run_chain,
)


@dataclass
class _MinWords(Filter):
    name: ClassVar[str] = "test_min_words"
    min_words: int = 3

    def check(self, row):
        words = len(row["text"].split())
        return Verdict(True, score=words) if words >= self.min_words else Verdict(False, "too_short", words)


@dataclass
class _FlagQuestions(Filter):
    name: ClassVar[str] = "test_flag_questions"

    def check(self, row):
        return Verdict(True, "question") if row["text"].endswith("?") else Verdict(True)


@dataclass
class _Reorders(Filter):
    name: ClassVar[str] = "test_reorders"

    def apply(self, rows):
        for row in reversed(rows):
            yield row, Verdict(True)


ROWS = [
    {"row_id": "a", "text": "one two three"},
    {"row_id": "b", "text": "too short"},
    {"row_id": "c", "text": "is this a question?"},
    {"row_id": "d", "text": "short?"},
]


def test_chain_records_rejections_with_filter_reason_and_score():
    result = run_chain([_MinWords(), _FlagQuestions()], ROWS)
    assert [r["row_id"] for r in result.kept] == ["a", "c"]
    assert [(r.row["row_id"], r.filter, r.reason, r.score) for r in result.rejected] == [
        ("b", "test_min_words", "too_short", 2),
        ("d", "test_min_words", "too_short", 1),
    ]
    assert [(f.row["row_id"], f.filter, f.reason) for f in result.flagged] == [("c", "test_flag_questions", "question")]
    assert result.verdicts[0]["test_min_words"].score == 3
    assert result.steps[0] == {
        "step": "test_min_words",
        "name": "test_min_words",
        "params": {"min_words": 3},
        "seen": 4,
        "kept": 2,
        "rejected": 2,
        "flagged": 0,
    }
    assert result.steps[1]["seen"] == 2 and result.steps[1]["flagged"] == 1


def test_rejected_rows_are_not_shown_to_later_filters():
    seen_by_second = []

    @dataclass
    class _Spy(Filter):
        name: ClassVar[str] = "test_spy"

        def check(self, row):
            seen_by_second.append(row["row_id"])
            return Verdict(True)

    run_chain([_MinWords(), _Spy()], ROWS)
    assert seen_by_second == ["a", "c"]


def test_repeated_filters_get_distinct_step_labels():
    result = run_chain([_MinWords(min_words=2), _MinWords(min_words=3)], ROWS)
    assert [s["step"] for s in result.steps] == ["test_min_words", "test_min_words#2"]
    assert {r.filter for r in result.rejected} == {"test_min_words", "test_min_words#2"}


def test_apply_must_answer_rows_in_order():
    with pytest.raises(RuntimeError, match="test_reorders"):
        run_chain([_Reorders()], ROWS)


def test_rejecting_verdict_needs_a_reason():
    with pytest.raises(ValueError):
        Verdict(False)


def test_registry_builds_a_chain_from_specs_and_describes_it_back():
    specs = [{"name": "consistency_ndcg", "alpha": 0.5}, {"name": "minhash_dedup", "threshold": 0.7, "key": "text"}]
    chain = build_chain(specs)
    described = describe_chain(chain)
    assert described[0] == {"name": "consistency_ndcg", "alpha": 0.5, "k": 10, "on_no_positives": "reject",
                            "require_top_positive": True}
    assert described[1]["threshold"] == 0.7 and described[1]["num_perm"] == 128 and described[1]["key"] == "text"
    rebuilt = describe_chain(build_chain([{k: v for k, v in d.items() if k != "seen"} for d in described]))
    assert rebuilt == described


def test_registry_errors_name_the_bad_field():
    with pytest.raises(ValueError, match="'no_such_filter'"):
        build_filter("no_such_filter")
    with pytest.raises(ValueError, match="'treshold'"):
        build_chain([{"name": "minhash_dedup", "treshold": 0.8}])
    with pytest.raises(ValueError, match="'language'"):
        build_filter("language")
    with pytest.raises(ValueError, match="has no 'name'"):
        build_chain([{"alpha": 0.4}])
    with pytest.raises(ValueError, match="alpha"):
        build_filter("consistency_ndcg", alpha=1.5)


def test_all_builtin_filters_are_registered():
    assert {
        "consistency_ndcg",
        "consistency_agreement",
        "exact_dedup",
        "minhash_dedup",
        "semantic_dedup",
        "contamination",
        "length",
        "truncated",
        "empty_reasoning",
        "repetition",
        "language",
        "injection",
    } <= set(registered_filters())
