"""Ranking metrics shared by the filters and the audit.

- Relevance metrics (nDCG@k, recall@k, reciprocal rank) come from ir-measures' default
  pipeline: pytrec_eval computes nDCG@k, R@k and RR, so they match trec_eval; RR@k, which
  pytrec_eval lacks (its provider silently ignores the cut-off), comes from ir-measures'
  msmarco provider. A ranking is judged by a set of positives (grade 1) or by graded
  judgments `{docid: grade}`.
- Agreement between two rankings: Kendall tau (scipy, tau-b over the items both rankings
  hold, or over the items either puts in its top k), rank-biased overlap (Webber, Moffat &
  Zobel 2010, extrapolated form, p = 0.9), and the chance-corrected overlap of their top-d
  sets (`top_set_agreement`), which ignores the order inside a set: what survives a teacher
  that orders equally relevant passages differently each time.
- Aggregation of several rankings of one list: Borda count, and exact Kemeny for small lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Hashable, Mapping, Sequence


Ranking = Sequence[Hashable]
Judgment = Collection[str] | Mapping[str, int]

KEMENY_MAX_ITEMS = 8


def evaluate_rankings(
    rankings: Sequence[Sequence[str]], judgments: Sequence[Judgment], measures: Sequence[str]
) -> list[dict[str, float | None]]:
    """Score each ranking (best first) against its judgments with ir-measures.

    Args:
        rankings: one list of docids per query, best first; docids must be unique in a list.
        judgments: parallel to `rankings`; a collection of positive docids (grade 1) or a
            mapping `{docid: grade}`.
        measures: ir-measures names, e.g. `("nDCG@10", "R@5", "RR")`.

    Returns one `{measure: value}` per ranking. A ranking whose judgments hold no positive
    grade gets `None` for every measure (the metrics are undefined without positives).
    """
    if len(rankings) != len(judgments):
        raise ValueError(f"{len(rankings)} rankings but {len(judgments)} judgments")
    import ir_measures  # imported here: a build that computes no metric does not pay for it

    parsed = [ir_measures.parse_measure(m) for m in measures]
    qrels, run = {}, {}
    for i, (ranking, judgment) in enumerate(zip(rankings, judgments)):
        grades = _grades(judgment)
        if any(g > 0 for g in grades.values()):
            qrels[str(i)] = grades
            run[str(i)] = _run_scores(ranking)
    results: list[dict[str, float | None]] = [{m: None for m in measures} for _ in rankings]
    if qrels:
        names = dict(zip(parsed, measures))
        for metric in ir_measures.iter_calc(parsed, qrels, run):
            results[int(metric.query_id)][names[metric.measure]] = float(metric.value)
    return results


def ndcg_at_k(ranking: Sequence[str], judgment: Judgment, k: int = 10) -> float | None:
    """nDCG@k (trec_eval gains) of `ranking` judged by `judgment`; None without positives.

    >>> round(ndcg_at_k(["a", "b", "c"], {"b"}), 4)   # 1 / log2(3)
    0.6309
    """
    return evaluate_rankings([ranking], [judgment], [f"nDCG@{k}"])[0][f"nDCG@{k}"]


def recall_at_k(ranking: Sequence[str], judgment: Judgment, k: int) -> float | None:
    """Fraction of the positives found in the top k; None without positives."""
    return evaluate_rankings([ranking], [judgment], [f"R@{k}"])[0][f"R@{k}"]


def reciprocal_rank(ranking: Sequence[str], judgment: Judgment, k: int | None = None) -> float | None:
    """1 / rank of the first positive (0 if none in the top k); None without positives."""
    measure = "RR" if k is None else f"RR@{k}"
    return evaluate_rankings([ranking], [judgment], [measure])[0][measure]


def mean_reciprocal_rank(
    rankings: Sequence[Sequence[str]], judgments: Sequence[Judgment], k: int | None = None
) -> float | None:
    """MRR over the rankings that have positives; None if none has."""
    measure = "RR" if k is None else f"RR@{k}"
    values = [r[measure] for r in evaluate_rankings(rankings, judgments, [measure]) if r[measure] is not None]
    return sum(values) / len(values) if values else None


def _grades(judgment: Judgment) -> dict[str, int]:
    if isinstance(judgment, Mapping):
        return {str(d): int(g) for d, g in judgment.items()}
    return {str(d): 1 for d in judgment}


def _run_scores(ranking: Sequence[str]) -> dict[str, float]:
    _check_unique(ranking)
    return {str(d): float(len(ranking) - i) for i, d in enumerate(ranking)}


def _check_unique(ranking: Ranking) -> None:
    if len(set(ranking)) != len(ranking):
        duplicated = next(d for d in ranking if list(ranking).count(d) > 1)
        raise ValueError(f"ranking lists {duplicated!r} more than once")


def kendall_tau(a: Ranking, b: Ranking) -> float:
    """Kendall tau-b (scipy) between two rankings over the items both contain (at least 2)."""
    _check_unique(a)
    _check_unique(b)
    position_in_b = {item: i for i, item in enumerate(b)}
    common = [item for item in a if item in position_in_b]
    if len(common) < 2:
        raise ValueError(f"Kendall tau needs at least 2 common items, got {len(common)}")
    from scipy.stats import kendalltau  # imported here: scipy.stats costs ~1 s to import

    tau, _ = kendalltau(range(len(common)), [position_in_b[item] for item in common])
    return float(tau)


def kendall_tau_top(a: Ranking, b: Ranking, k: int) -> float:
    """Kendall tau-b over the items either ranking puts in its top k, each item placed at its
    position in the full rankings (items must be in both). Disorder below both top-k's
    (an unrelated tail) does not count."""
    if k < 1:
        raise ValueError(f"top-k tau needs k >= 1, got {k}")
    top = set(a[:k]) | set(b[:k])
    return kendall_tau([item for item in a if item in top], [item for item in b if item in top])


def top_set_agreement(a: Ranking, b: Ranking, depth: int) -> float:
    """Chance-corrected overlap of the top-``depth`` sets of two orders of the same n items.

    (|a[:d] & b[:d]| / d - d / n) / (1 - d / n): 1 when both put the same passages in their
    top d (in any order), 0 at what two random orders share on average, negative below.
    Needs 1 <= depth < n.

    >>> top_set_agreement(["x", "y", "z", "w"], ["y", "x", "w", "z"], 2)
    1.0
    """
    _check_unique(a)
    _check_unique(b)
    n = len(a)
    if set(a) != set(b):
        raise ValueError("top-set agreement needs two orders of the same items")
    if not 1 <= depth < n:
        raise ValueError(f"top-set agreement needs 1 <= depth < {n}, got {depth}")
    overlap = len(set(a[:depth]) & set(b[:depth])) / depth
    chance = depth / n
    return (overlap - chance) / (1 - chance)


def rbo(a: Ranking, b: Ranking, p: float = 0.9) -> float:
    """Rank-biased overlap, extrapolated (RBO_ext, Webber et al. 2010, eq. 32), in [0, 1].

    p is the persistence: the weight of depth d falls as p**(d-1), so with p = 0.9 the top
    10 ranks carry about 86% of the weight. Lists may differ in length and content.

    p = 1.0 is the degenerate case: the weights become uniform over depth and the measure
    reduces to average overlap (`average_overlap`), which is what the `rbo` package
    computes with its default p = 1.0; we return exactly that for p = 1.0.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"rbo persistence p must be in (0, 1], got {p}")
    _check_unique(a)
    _check_unique(b)
    if not a or not b:
        raise ValueError("rbo of an empty ranking is undefined")
    if p == 1.0:
        return average_overlap(a, b)
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, n = len(short), len(long_)
    overlaps = _overlaps_by_depth(short, long_)
    x_s, x_n = overlaps[s - 1], overlaps[n - 1]
    weighted = sum(overlaps[d - 1] / d * p**d for d in range(1, n + 1))
    weighted += sum(x_s * (d - s) / (s * d) * p**d for d in range(s + 1, n + 1))
    return (1 - p) / p * weighted + ((x_n - x_s) / n + x_s / s) * p**n


def average_overlap(a: Ranking, b: Ranking, depth: int | None = None) -> float:
    """Mean over depths 1..depth (default: the longer list) of |a[:d] & b[:d]| / d."""
    _check_unique(a)
    _check_unique(b)
    depth = depth or max(len(a), len(b))
    if depth == 0:
        raise ValueError("average overlap of empty rankings is undefined")
    overlaps = _overlaps_by_depth(a[:depth], b[:depth], depth)
    return sum(x / d for d, x in enumerate(overlaps, start=1)) / depth


def _overlaps_by_depth(a: Ranking, b: Ranking, depth: int | None = None) -> list[int]:
    """X_d = |a[:d] & b[:d]| for d = 1..depth (default: the longer list)."""
    depth = depth or max(len(a), len(b))
    seen_a: set = set()
    seen_b: set = set()
    overlap = 0
    overlaps = []
    for d in range(depth):
        x = a[d] if d < len(a) else None
        y = b[d] if d < len(b) else None
        if x is not None and y is not None and x == y:
            overlap += 1
        else:
            overlap += (x is not None and x in seen_b) + (y is not None and y in seen_a)
        if x is not None:
            seen_a.add(x)
        if y is not None:
            seen_b.add(y)
        overlaps.append(overlap)
    return overlaps


def borda_aggregate(rankings: Sequence[Ranking]) -> list:
    """Borda count: in a ranking of n items the item at rank i (0-based) scores n - i.

    Items missing from a ranking score 0 there. Ties go to the item seen first (reading the
    rankings in order), so the result is deterministic.
    """
    if not rankings:
        raise ValueError("nothing to aggregate")
    points: dict = {}
    for ranking in rankings:
        _check_unique(ranking)
        for i, item in enumerate(ranking):
            points[item] = points.get(item, 0) + len(ranking) - i
    first_seen = {item: i for i, item in enumerate(points)}
    return sorted(points, key=lambda item: (-points[item], first_seen[item]))


def kemeny_aggregate(rankings: Sequence[Ranking], max_items: int = KEMENY_MAX_ITEMS) -> list:
    """Kemeny-optimal consensus: the order with the fewest pairwise disagreements in total.

    Exact for lists of at most `max_items` items (default 8; the search is over item
    subsets, O(2^n n^2), and returns the same optimum as trying every permutation). Longer
    lists fall back to `borda_aggregate`: exact Kemeny is NP-hard. All rankings must hold
    the same items. Among several optima the choice is deterministic.
    """
    if not rankings:
        raise ValueError("nothing to aggregate")
    items = set(rankings[0])
    for ranking in rankings:
        _check_unique(ranking)
        if set(ranking) != items:
            raise ValueError("Kemeny aggregation needs rankings of the same items")
    order = borda_aggregate(rankings)
    if len(order) > max_items:
        return order
    return _kemeny_exact(order, rankings)


def _kemeny_exact(items: list, rankings: Sequence[Ranking]) -> list:
    n = len(items)
    index = {item: i for i, item in enumerate(items)}
    positions = [{index[item]: r for r, item in enumerate(ranking)} for ranking in rankings]
    # before[i][j]: how many rankings put item i before item j
    before = [[sum(pos[i] < pos[j] for pos in positions) for j in range(n)] for i in range(n)]
    full = (1 << n) - 1
    best = [None] * (1 << n)
    best[0] = (0, None, None)
    for mask in range(1 << n):
        if best[mask] is None:
            continue
        cost_so_far = best[mask][0]
        rest = [k for k in range(n) if not mask >> k & 1]
        for j in rest:
            cost = cost_so_far + sum(before[k][j] for k in rest if k != j)
            nxt = mask | 1 << j
            if best[nxt] is None or cost < best[nxt][0]:
                best[nxt] = (cost, mask, j)
    result = []
    mask = full
    while mask:
        _, previous, j = best[mask]
        result.append(items[j])
        mask = previous
    return result[::-1]


def kemeny_distance(candidate: Ranking, rankings: Sequence[Ranking]) -> int:
    """Total pairwise disagreements (Kendall tau distance) of `candidate` with `rankings`."""
    total = 0
    for ranking in rankings:
        position = {item: i for i, item in enumerate(ranking)}
        for x, y in itertools.combinations(candidate, 2):
            total += position[x] > position[y]
    return total


__all__ = [
    "KEMENY_MAX_ITEMS",
    "average_overlap",
    "borda_aggregate",
    "evaluate_rankings",
    "kemeny_aggregate",
    "kemeny_distance",
    "kendall_tau",
    "kendall_tau_top",
    "mean_reciprocal_rank",
    "ndcg_at_k",
    "rbo",
    "recall_at_k",
    "reciprocal_rank",
    "top_set_agreement",
]
