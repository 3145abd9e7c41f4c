"""Self-consistency: ReasonRank's nDCG check, agreement across samples, aggregation."""

from __future__ import annotations

import math
import random

import pytest

from filters.base import run_chain
from filters.consistency import (NDCGConsistencyFilter, SampleAgreementFilter, aggregate_samples, consensus_row,
                                 consensus_rows, sample_agreement)

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
    assert NDCGConsistencyFilter(alpha=0.3, require_top_positive=False).check(late).keep
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
    assert reasons == {"reversed": "low_agreement_top_set", "random": "low_agreement_top_set"}
    assert sum(r.row["list_id"] == "random" for r in result.rejected) == 3


def tied_teacher(relevant: set[str], presented: list[str], rng: random.Random) -> list[str]:
    """Relevant passages first; equally relevant ones (and the unrelated tail) in random order."""
    return sorted(presented, key=lambda d: (d not in relevant, rng.random()))


@pytest.mark.parametrize("n_relevant", [1, 2, 5, 10])
def test_a_teacher_that_orders_ties_at_random_is_kept_and_random_orders_are_not(n_relevant):
    rng = random.Random(n_relevant)
    good, noise = [], []
    for trial in range(40):
        relevant = set(rng.sample(DOCS, n_relevant))
        presentations = [DOCS] + [rng.sample(DOCS, len(DOCS)) for _ in range(2)]
        good += [listwise_row(f"good{trial}", i, tied_teacher(relevant, p, rng), sorted(relevant))
                 for i, p in enumerate(presentations)]
        noise += [listwise_row(f"noise{trial}", i, rng.sample(DOCS, len(DOCS)), sorted(relevant)) for i in range(3)]
    if n_relevant <= 2:  # full-list Kendall tau of such a teacher is near 0: the old default (0.4) rejected it
        assert sample_agreement([r["final_list"] for r in good[:3]], tau_k=20).tau < 0.4
    result = run_chain([SampleAgreementFilter()], good + noise)
    kept = {r["list_id"] for r in result.kept}
    assert all(f"good{t}" in kept for t in range(40))
    assert sum(f"noise{t}" in kept for t in range(40)) <= 2


def test_lazy_and_position_biased_teachers_are_caught_through_shuffled_presentations():
    rng = random.Random(3)
    relevant = {"d3", "d7", "d11"}
    presentations = [DOCS] + [rng.sample(DOCS, len(DOCS)) for _ in range(2)]
    lazy = [listwise_row("lazy", i, list(p), sorted(relevant)) for i, p in enumerate(presentations)]
    biased = []
    for i, presented in enumerate(presentations):
        ranking = tied_teacher(relevant, presented, rng)
        biased.append(listwise_row("biased", i, [presented[0]] + [d for d in ranking if d != presented[0]],
                                   sorted(relevant)))
    result = run_chain([NDCGConsistencyFilter(), SampleAgreementFilter()], lazy + biased)
    assert result.kept == []
    reasons = {(r.row["list_id"], r.filter, r.reason) for r in result.rejected}
    # the biased samples that lifted an unrelated passage fail the top-positive check; what is left
    # of the list is a single sample, which cannot be checked and is rejected
    assert ("biased", "consistency_ndcg", "top_not_positive") in reasons
    assert {reason for list_id, _, reason in reasons if list_id == "lazy"} <= {
        "ndcg_below_alpha", "top_not_positive", "low_agreement_top_set", "top_not_agreed", "single_sample"}


def test_top_support_rejects_samples_whose_first_passage_the_others_do_not_put_on_top():
    rng = random.Random(5)
    relevant = ["d0", "d1", "d2", "d3"]
    rest = [d for d in DOCS if d not in relevant]
    rankings = []
    for intruder in ("d10", "d11", "d12"):  # each sample lifts another unrelated passage; the tail is in any order
        tail = [d for d in rest if d != intruder]
        rng.shuffle(tail)
        rankings.append([intruder, *rng.sample(relevant, 4), *tail])
    agreement = sample_agreement(rankings)
    assert agreement.top_set > 0.6 and agreement.top_support == 0.0
    verdict = next(SampleAgreementFilter().apply(_samples("lifted", rankings)))[1]
    assert (verdict.keep, verdict.reason) == (False, "top_not_agreed")


def test_agreement_rbo_and_top_k_tau_thresholds_can_be_switched_on():
    # the bottom 15 agree and the top 5 are reshuffled: full tau stays high, RBO(0.9) drops
    top_shuffled = [DOCS[4], DOCS[3], DOCS[2], DOCS[1], DOCS[0], *DOCS[5:]]
    agreement = sample_agreement([DOCS, top_shuffled], tau_k=20)
    assert agreement.tau > 0.8
    assert sample_agreement([DOCS, top_shuffled], tau_k=5).tau == pytest.approx(-1.0)
    only_rbo = SampleAgreementFilter(min_top_set=-1.0, min_top_support=0.0, min_rbo=0.9)
    verdict = next(only_rbo.apply(_samples("top", [DOCS, top_shuffled])))[1]
    assert (verdict.keep, verdict.reason) == (False, "low_agreement_rbo")
    assert verdict.score == pytest.approx(agreement.rbo)
    only_tau = SampleAgreementFilter(min_top_set=-1.0, min_top_support=0.0, min_tau=0.0, tau_k=5)
    assert next(only_tau.apply(_samples("top", [DOCS, top_shuffled])))[1].reason == "low_agreement_tau"


def test_a_list_that_lost_samples_to_an_earlier_filter_is_rejected_unless_asked_to_check_the_rest():
    rng = random.Random(2)
    # two random orders that happen to share their first passage agree at depth 1
    first, second = rng.sample(DOCS[1:], 19), rng.sample(DOCS[1:], 19)
    left = [{**row, "valid_samples": 3, "relevant_docids": ["d0", *first[:5]]}
            for row in _samples("lost", [["d0", *first], ["d0", *second]])]
    result = run_chain([SampleAgreementFilter()], left)  # they do not agree on the 6 positives
    assert result.kept == [] and {r.reason for r in result.rejected} == {"samples_removed"}
    assert result.rejected[0].score < 0.6
    assert len(run_chain([SampleAgreementFilter(on_removed_samples="check")], left).kept) == 2
    # two samples left that put the same positives on top (in any order) are kept
    agreeing = [{**row, "valid_samples": 3, "relevant_docids": ["d0", *first[:5]]}
                for row in _samples("agree", [["d0", *first], [*first[:5], "d0", *first[5:]]])]
    assert len(run_chain([SampleAgreementFilter()], agreeing).kept) == 2
    assert run_chain([SampleAgreementFilter(on_removed_samples="reject")], agreeing).kept == []


def test_single_sample_lists_are_rejected_or_flagged_by_policy():
    result = run_chain([SampleAgreementFilter()], _samples("alone", [DOCS]))
    assert result.kept == [] and result.rejected[0].reason == "single_sample"
    result = run_chain([SampleAgreementFilter(on_single_sample="flag")], _samples("alone", [DOCS]))
    assert len(result.kept) == 1 and result.flagged[0].reason == "single_sample"


def test_ndcg_check_rejects_a_ranking_whose_first_passage_is_not_a_positive():
    lifted = listwise_row("q", 0, ["d9", "d0", "d1", "d2", *DOCS[3:9], *DOCS[10:]], ["d0", "d1", "d2"])
    verdict = NDCGConsistencyFilter().check(lifted)
    assert (verdict.keep, verdict.reason) == (False, "top_not_positive") and verdict.score > 0.4
    assert NDCGConsistencyFilter(require_top_positive=False).check(lifted).keep


def window_row(list_id: str, index: int, presented: list[str], final: list[str]) -> dict:
    position = {d: i for i, d in enumerate(presented, start=1)}
    return {**listwise_row(list_id, index, final, ["a"]), "initial_list": presented,
            "windows": [{"pass": 1, "start": 0, "end": len(presented), "presented": presented,
                         "permutation": [position[d] for d in final]}],
            "top_window": 0, "call_keys": [f"{list_id}-call{index}"], "reasoning": f"reasoning {index}"}


def test_consensus_row_carries_the_consensus_its_samples_and_the_closest_sample_reasoning():
    samples = [window_row("q", 0, ["a", "b", "c", "d"], ["a", "b", "c", "d"]),
               window_row("q", 1, ["c", "a", "d", "b"], ["b", "a", "c", "d"]),
               window_row("q", 2, ["d", "c", "b", "a"], ["a", "b", "d", "c"])]
    row = consensus_row(samples)
    assert row["final_list"] == ["a", "b", "c", "d"]
    assert row["reasoning"] == "reasoning 0"  # sample 0 is the consensus itself
    assert row["windows"][0]["permutation"] == [1, 2, 3, 4] and row["permutation"] == [1, 2, 3, 4]
    assert row["consensus"]["sample_row_ids"] == ["q-0", "q-1", "q-2"]
    assert row["consensus"]["samples"] == 3 and row["consensus"]["agreement"] > 0
    assert row["call_keys"] == ["q-call0", "q-call1", "q-call2"]
    assert row["row_id"] not in {s["row_id"] for s in samples}
    # the top window's order follows the consensus even when the closest sample differs from it
    shifted = consensus_row([samples[1], samples[2], window_row("q", 3, ["b", "a", "c", "d"], ["b", "a", "d", "c"])])
    presented = shifted["windows"][0]["presented"]
    assert [presented[i - 1] for i in shifted["windows"][0]["permutation"]] == shifted["final_list"]
    assert consensus_rows(samples[:1] + [window_row("other", 0, ["a", "b"], ["a", "b"])]) == []
    with pytest.raises(ValueError, match="two samples"):
        consensus_row(samples[:1])


def test_aggregate_samples():
    rows = _samples("q", [["a", "b", "c", "d"], ["b", "a", "c", "d"], ["a", "b", "d", "c"]])
    assert aggregate_samples(rows) == ["a", "b", "c", "d"]
    assert aggregate_samples(rows, method="kemeny") == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="several lists"):
        aggregate_samples(rows + _samples("other", [["a", "b", "c", "d"]]))
    with pytest.raises(ValueError, match="method"):
        aggregate_samples(rows, method="mean")
