"""Self-consistency: ReasonRank's nDCG check, agreement across samples, aggregation."""

from __future__ import annotations

import math
import random

import pytest

from filters.base import run_chain
from filters.consistency import NDCGConsistencyFilter, SampleAgreementFilter, aggregate_samples, sample_agreement

DOCS = [f"d{i}" for i in range(20)]


def listwise_row(list_id: str, sample_index: int, final_list: list[str], relevant: list[str]) -> dict:
    return {
        "row_id": f"{list_id}-{sample_index}",
        "qid": list_id,
        "query": "what is information retrieval?",
        "list_id": list_id,
        "sample_index": sample_index,
        "initial_list": DOCS,
        "final_list": final_list,
        "relevant_docids": relevant,
    }


def test_ndcg_check_keeps_rankings_that_put_their_positives_on_top():
    good = listwise_row("q1", 0, DOCS, ["d0", "d1"])
    # positives at ranks 9 and 10: (1/log2(10) + 1/log2(11)) / (1 + 1/log2(3)) ~ 0.36 < 0.4
    late = listwise_row("q2", 0, DOCS[2:10] + DOCS[:2] + DOCS[10:], ["d0", "d1"])
    empty = listwise_row("q3", 0, DOCS, [])
    result = run_chain([NDCGConsistencyFilter()], [good, late, empty])
    assert [r["row_id"] for r in result.kept] == ["q1-0"]
    assert result.verdicts[0]["consistency_ndcg"].score == pytest.approx(1.0)
    rejected = {r.row["row_id"]: (r.reason, r.score) for r in result.rejected}
    expected_late = (1 / math.log2(10) + 1 / math.log2(11)) / (1 + 1 / math.log2(3))
    assert rejected["q2-0"][0] == "ndcg_below_alpha"
    assert rejected["q2-0"][1] == pytest.approx(expected_late)
    assert rejected["q3-0"] == ("no_positives", None)


def test_ndcg_check_alpha_is_inclusive_and_no_positives_can_be_flagged():
    late = listwise_row("q2", 0, DOCS[2:10] + DOCS[:2] + DOCS[10:], ["d0", "d1"])
    assert NDCGConsistencyFilter(alpha=0.3).check(late).keep
    empty = listwise_row("q3", 0, DOCS, [])
    result = run_chain([NDCGConsistencyFilter(on_no_positives="flag")], [empty])
    assert result.kept == [empty]
    assert [(f.filter, f.reason) for f in result.flagged] == [("consistency_ndcg", "no_positives")]


def _samples(list_id: str, rankings: list[list[str]]) -> list[dict]:
    return [listwise_row(list_id, i, ranking, ["d0"]) for i, ranking in enumerate(rankings)]


def test_agreement_accepts_identical_and_rejects_reversed_and_random_samples():
    rng = random.Random(11)
    identical = _samples("same", [DOCS, DOCS, DOCS])
    reversed_ = _samples("reversed", [DOCS, DOCS[::-1], DOCS])
    random_ = _samples("random", [rng.sample(DOCS, len(DOCS)) for _ in range(3)])
    # a teacher that only swaps neighbours stays consistent
    swapped = DOCS[:]
    for i in (1, 6, 12):
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    close = _samples("close", [DOCS, swapped, DOCS])
    result = run_chain([SampleAgreementFilter()], identical + reversed_ + random_ + close)
    assert {r["list_id"] for r in result.kept} == {"same", "close"}
    assert len(result.kept) == 6
    reasons = {r.row["list_id"]: r.reason for r in result.rejected}
    assert reasons == {"reversed": "low_agreement_tau", "random": "low_agreement_tau"}
    assert sum(r.row["list_id"] == "random" for r in result.rejected) == 3


def test_agreement_rbo_threshold_catches_disagreement_at_the_top():
    # the bottom 15 agree and the top 5 are reshuffled: tau stays high, RBO(0.9) drops
    top_shuffled = [DOCS[4], DOCS[3], DOCS[2], DOCS[1], DOCS[0], *DOCS[5:]]
    agreement = sample_agreement([DOCS, top_shuffled])
    assert agreement["tau"] > 0.8
    verdict = next(SampleAgreementFilter(min_tau=0.4, min_rbo=0.9).apply(_samples("top", [DOCS, top_shuffled])))[1]
    assert (verdict.keep, verdict.reason) == (False, "low_agreement_rbo")
    assert verdict.score == pytest.approx(agreement["rbo"])


def test_single_sample_lists_are_kept_and_flagged():
    result = run_chain([SampleAgreementFilter()], _samples("alone", [DOCS]))
    assert len(result.kept) == 1 and result.flagged[0].reason == "single_sample"


def test_aggregate_samples():
    rows = _samples("q", [["a", "b", "c", "d"], ["b", "a", "c", "d"], ["a", "b", "d", "c"]])
    assert aggregate_samples(rows) == ["a", "b", "c", "d"]
    assert aggregate_samples(rows, method="kemeny") == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="several lists"):
        aggregate_samples(rows + _samples("other", [["a", "b", "c", "d"]]))
    with pytest.raises(ValueError, match="method"):
        aggregate_samples(rows, method="mean")
