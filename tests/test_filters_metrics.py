"""Ranking metrics: hand-checked values, RBO versus average overlap, aggregation."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from filters.metrics import (
    average_overlap,
    borda_aggregate,
    evaluate_rankings,
    kemeny_aggregate,
    kemeny_distance,
    kendall_tau,
    kendall_tau_top,
    mean_reciprocal_rank,
    ndcg_at_k,
    rbo,
    recall_at_k,
    reciprocal_rank,
    top_set_agreement,
)


def test_ndcg_hand_checked():
    # one positive at rank 2: DCG = 1/log2(3), IDCG = 1
    assert ndcg_at_k(["a", "b", "c"], {"b"}) == pytest.approx(1 / math.log2(3))
    # positives at ranks 1 and 3 of two: (1 + 1/2) / (1 + 1/log2(3))
    assert ndcg_at_k(["a", "b", "c"], {"a", "c"}) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # graded: gains 2 at rank 2 and 1 at rank 1, ideal puts the 2 first
    dcg = 1 + 2 / math.log2(3)
    idcg = 2 + 1 / math.log2(3)
    assert ndcg_at_k(["x", "y"], {"x": 1, "y": 2}) == pytest.approx(dcg / idcg)
    # the cut-off drops a positive below rank k
    assert ndcg_at_k(["a", "b", "c"], {"c"}, k=2) == 0.0
    assert ndcg_at_k(list("abcdefghij"), set("abcdefghij")) == pytest.approx(1.0)


def test_metrics_without_positives_are_none():
    assert ndcg_at_k(["a", "b"], set()) is None
    assert ndcg_at_k(["a", "b"], {"a": 0}) is None
    assert evaluate_rankings([["a"], ["b"]], [set(), {"b"}], ["nDCG@10"]) == [{"nDCG@10": None}, {"nDCG@10": 1.0}]


def test_recall_and_reciprocal_rank():
    assert recall_at_k(["a", "b", "c", "d"], {"b", "d", "z"}, k=2) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b", "c"], {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["a", "b", "c"], {"c"}, k=2) == 0.0
    assert mean_reciprocal_rank([["a", "b"], ["a", "b"], ["a"]], [{"a"}, {"b"}, set()]) == pytest.approx(0.75)


def test_duplicate_docids_are_refused():
    with pytest.raises(ValueError, match="'a'"):
        ndcg_at_k(["a", "b", "a"], {"a"})


def test_kendall_tau():
    assert kendall_tau(list("abcd"), list("abcd")) == pytest.approx(1.0)
    assert kendall_tau(list("abcd"), list("dcba")) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau(list("abcd"), list("bacd")) == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        kendall_tau(["a", "b"], ["c", "d"])


def test_top_k_tau_ignores_disorder_below_both_top_k():
    a = list("abcdefgh")
    b = list("abcdhgfe")  # same top 4, the tail reversed
    assert kendall_tau(a, b) < 0.6
    assert kendall_tau_top(a, b, 4) == pytest.approx(1.0)
    # an item one ranking puts in its top 2 counts at its place in the other ranking
    assert kendall_tau_top(list("abcd"), list("cabd"), 2) == pytest.approx(kendall_tau(list("abc"), list("cab")))


def test_top_set_agreement_is_chance_corrected_and_order_free():
    a = list("abcdefghij")
    assert top_set_agreement(a, list("bacdefghij"), 2) == pytest.approx(1.0)
    assert top_set_agreement(a, list("cdabefghij"), 2) == pytest.approx((0 - 0.2) / 0.8)
    # a random pair shares depth/n of its top sets on average: agreement ~ 0
    rng = random.Random(0)
    values = [top_set_agreement(a, rng.sample(a, len(a)), 5) for _ in range(2000)]
    assert abs(sum(values) / len(values)) < 0.03
    with pytest.raises(ValueError, match="depth"):
        top_set_agreement(a, a, 10)
    with pytest.raises(ValueError, match="same items"):
        top_set_agreement(a, list("abcdefghik"), 3)


def test_rbo_with_p_09_differs_from_average_overlap():
    a = list(range(10))
    b = a[::-1]
    # average overlap of a list and its reverse: depths 6..10 overlap 2/6, 4/7, 6/8, 8/9, 10/10
    expected_ao = (2 / 6 + 4 / 7 + 6 / 8 + 8 / 9 + 1) / 10
    assert average_overlap(a, b) == pytest.approx(expected_ao)
    assert rbo(a, b, p=1.0) == pytest.approx(expected_ao)
    # RBO_ext, p = 0.9, equal lengths (Webber et al. eq. 30)
    p = 0.9
    overlaps = [0, 0, 0, 0, 0, 2, 4, 6, 8, 10]
    expected_rbo = (1 - p) / p * sum(x / d * p**d for d, x in enumerate(overlaps, 1)) + 1.0 * p**10
    assert rbo(a, b, p=0.9) == pytest.approx(expected_rbo)
    assert abs(rbo(a, b, p=0.9) - rbo(a, b, p=1.0)) > 0.1


def test_rbo_properties():
    a = list("abcdefghij")
    assert rbo(a, a) == pytest.approx(1.0)
    assert rbo(a, list("klmnopqrst")) == pytest.approx(0.0)
    # top-weighted: a swap at the top costs more than a swap at the bottom
    top_swap = ["b", "a", *a[2:]]
    bottom_swap = [*a[:8], "j", "i"]
    assert rbo(a, top_swap) < rbo(a, bottom_swap) < 1.0
    # uneven lengths: a prefix extrapolates to full agreement
    assert rbo(a, a[:4]) == pytest.approx(1.0)
    assert rbo(a, a[:4]) == pytest.approx(rbo(a[:4], a))
    with pytest.raises(ValueError):
        rbo(a, a, p=0.0)


def test_borda():
    rankings = [list("abc"), list("abc"), list("cba")]
    # points: a = 3+3+1, b = 2+2+2, c = 1+1+3
    assert borda_aggregate(rankings) == ["a", "b", "c"]
    # a tie goes to the item seen first
    assert borda_aggregate([list("ab"), list("ba")]) == ["a", "b"]


def test_kemeny_is_optimal_against_brute_force():
    rng = random.Random(3)
    for _ in range(20):
        items = list("abcdef")
        rankings = [rng.sample(items, len(items)) for _ in range(rng.choice([2, 3, 5]))]
        consensus = kemeny_aggregate(rankings)
        best = min(kemeny_distance(list(order), rankings) for order in itertools.permutations(items))
        assert sorted(consensus) == sorted(items)
        assert kemeny_distance(consensus, rankings) == best


def test_kemeny_falls_back_to_borda_beyond_max_items():
    rng = random.Random(5)
    items = list(range(12))
    rankings = [rng.sample(items, 12) for _ in range(3)]
    assert kemeny_aggregate(rankings) == borda_aggregate(rankings)
    with pytest.raises(ValueError):
        kemeny_aggregate([["a", "b"], ["a", "c"]])
