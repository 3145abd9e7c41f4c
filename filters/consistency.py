"""Self-consistency of listwise teacher rankings.

(a) `consistency_ndcg` — ReasonRank's check: keep a listwise row only if the nDCG@10 of its
    `final_list`, judged by its own pointwise positives (`relevant_docids`), is >= alpha (0.4).
(b) `consistency_agreement` — the k samples of one candidate list (same `list_id`, each from
    a shuffled presentation or another seed) must agree on what goes on top: the same set of
    passages in their top d for some depth d (in any order: equally relevant passages may be
    ordered differently each time), with each sample's first passage inside that set;
    otherwise every sample of the list is rejected. Top-k Kendall tau and RBO(p) thresholds
    are available, off by default.
(c) `aggregate_samples` — one consensus `final_list` from the k samples (Borda or Kemeny);
    `consensus_row` makes the row that carries it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from filters.base import Filter, Verdict, register
from filters.metrics import (
    KEMENY_MAX_ITEMS,
    borda_aggregate,
    evaluate_rankings,
    kemeny_aggregate,
    kemeny_distance,
    kendall_tau_top,
    rbo,
    top_set_agreement,
)
from filters.text import Row

NO_POSITIVES = "no_positives"
SINGLE_SAMPLE = "single_sample"


@register
@dataclass
class NDCGConsistencyFilter(Filter):
    """ReasonRank's rule: nDCG@k of `final_list` judged by `relevant_docids` must be >= alpha.

    Args:
        alpha: minimum nDCG (default 0.4, as in ReasonRank).
        k: rank cut-off (default 10).
        on_no_positives: what to do with a row whose `relevant_docids` is empty, where nDCG
            is undefined. "reject" (default): the ranking cannot be checked, so it is not
            trusted as training data; reason "no_positives". "flag": keep it, reported with
            reason "no_positives" (for builds that want unverified rankings).
        require_top_positive: also reject a ranking whose first passage is not one of its
            positives (reason "top_not_positive"; default True). nDCG@10 >= 0.4 lets a
            ranking put an unrelated passage first when several are relevant (a teacher
            that lifts whatever it was shown first); the first passage is what a reranker
            learns most from, so the two judgments of the teacher must agree on it.

    The verdict's score is the nDCG (None for "no_positives").
    """

    name: ClassVar[str] = "consistency_ndcg"
    alpha: float = 0.4
    k: int = 10
    on_no_positives: str = "reject"
    require_top_positive: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"consistency_ndcg: alpha must be in [0, 1], got {self.alpha}")
        if self.k < 1:
            raise ValueError(f"consistency_ndcg: k must be >= 1, got {self.k}")
        if self.on_no_positives not in ("reject", "flag"):
            raise ValueError(
                f"consistency_ndcg: on_no_positives must be 'reject' or 'flag', got {self.on_no_positives!r}"
            )

    def check(self, row: Row) -> Verdict:
        return next(self.apply([row]))[1]

    def apply(self, rows: Sequence[Row]) -> Iterator[tuple[Row, Verdict]]:
        measure = f"nDCG@{self.k}"
        values = evaluate_rankings(
            [row["final_list"] for row in rows], [row["relevant_docids"] or () for row in rows], [measure]
        )
        for row, value in zip(rows, values):
            yield row, self._verdict(value[measure], row)

    def _verdict(self, ndcg: float | None, row: Row) -> Verdict:
        if ndcg is None:
            return Verdict(self.on_no_positives == "flag", NO_POSITIVES)
        if ndcg < self.alpha:
            return Verdict(False, "ndcg_below_alpha", ndcg)
        if self.require_top_positive and row["final_list"][0] not in set(row["relevant_docids"]):
            return Verdict(False, "top_not_positive", ndcg)
        return Verdict(True, score=ndcg)


@dataclass(frozen=True)
class Agreement:
    """How the samples of one list agree (see `sample_agreement`)."""

    top_set: float  # max over depths d of the mean pairwise `top_set_agreement` at d
    depth: int  # the smallest depth at which `top_set` is reached: the set the samples agree on
    top_support: float  # share of samples whose first passage most samples put in their top `depth`
    tau: float  # mean pairwise Kendall tau over the union of the pair's top `tau_k`
    rbo: float  # mean pairwise RBO(p)


def sample_agreement(rankings: Sequence[Sequence[str]], p: float = 0.9, tau_k: int = 10) -> Agreement:
    """How two or more rankings of the same passages agree, weighted toward the top.

    The main figure, ``top_set``, asks whether the samples put the same passages on top, in
    any order: for each depth d (1 .. n-1) the mean pairwise chance-corrected overlap of the
    top-d sets, maximised over d. A teacher that separates the relevant passages from the
    rest but orders equally relevant ones (and the unrelated tail) differently every time
    scores 1 at d = number of relevant passages; random orders score near 0 at every depth.
    ``top_support`` then checks each sample's first passage is in the agreed set: the
    passages most samples put in their top ``depth`` (a teacher that lifts whatever it was
    shown first fails it, as long as it orders the tail differently each time; with an
    identical tail the agreed set can be deep enough to hold the lifted passages:
    `consistency_ndcg`'s top-positive check covers that).
    """
    if len(rankings) < 2:
        raise ValueError("agreement needs at least two rankings")
    rankings = _common_items(rankings)
    n = len(rankings[0])
    if n < 2:  # one passage (or none) in common: nothing the samples could disagree on
        return Agreement(top_set=1.0, depth=n, top_support=1.0, tau=1.0, rbo=1.0)
    pairs = list(itertools.combinations(rankings, 2))
    profile = [sum(top_set_agreement(a, b, d) for a, b in pairs) / len(pairs) for d in range(1, n)]
    best = max(profile)
    depth = profile.index(best) + 1
    in_top = Counter(item for ranking in rankings for item in ranking[:depth])
    agreed = {item for item, count in in_top.items() if 2 * count > len(rankings)}
    supported = sum(ranking[0] in agreed for ranking in rankings)
    return Agreement(
        top_set=best, depth=depth, top_support=supported / len(rankings),
        tau=sum(kendall_tau_top(a, b, tau_k) for a, b in pairs) / len(pairs),
        rbo=sum(rbo(a, b, p) for a, b in pairs) / len(pairs),
    )


def _common_items(rankings: Sequence[Sequence[str]]) -> list[list[str]]:
    """The rankings restricted to the passages every one of them holds, order kept."""
    common = set(rankings[0]).intersection(*map(set, rankings[1:]))
    return [[item for item in ranking if item in common] for ranking in rankings]


@register
@dataclass
class SampleAgreementFilter(Filter):
    """Reject every sample of a list whose samples do not agree on what goes on top.

    Rows are grouped by `group_field` (default "list_id"); the rankings compared are
    `ranking_field` (default "final_list"). See `sample_agreement` for the figures.

    Checks, in order (a list failing one is rejected with that reason, its score the figure):
      - "samples_removed": an earlier filter of the chain removed some of the list's valid
        samples (rows say how many the list had in `valid_samples`). Two samples left agree
        at some depth by chance too often (two random orders share their first passage 1
        time in 20), so with `on_removed_samples` "relevant_set" (default) the samples left
        must agree on the whole relevant set: the top-set agreement at depth = number of the
        list's pointwise positives must reach min_top_set (score: that agreement; None when
        it cannot be computed, e.g. one sample left or no positives). "reject" rejects such
        lists outright; "check" judges the samples left like any other list.
      - "single_sample": fewer than two samples reached this filter (validation failures
        the stage could not top up, or samples an earlier filter removed). `on_single_sample`
        "reject" (default) removes them; "flag" keeps them flagged, unchecked.
      - "low_agreement_top_set": `top_set` < min_top_set (default 0.6).
      - "top_not_agreed": `top_support` < min_top_support (default 0.5): in most samples
        the first passage is one most samples do not put in the agreed top set.
      - "low_agreement_tau": mean top-`tau_k` Kendall tau < min_tau (off by default).
      - "low_agreement_rbo": mean RBO(p) < min_rbo (off by default).

    Defaults were chosen on simulated teachers with tied relevance (binary grades, lists of
    20, 3 shuffled samples; bench/label_quality.py measures them on CISI and CACM through a
    build): a teacher that ranks every relevant passage above the rest but orders ties at
    random passes whenever at least one passage is relevant; random permutations, a teacher
    that returns the presented order, and one that lifts the first-presented passage fail.
    Full-list tau and RBO are off by default because ties make them punish good lists: with
    1-2 relevant passages among 20, a good teacher's samples have tau ~ 0 and RBO(0.9) ~ 0.5.
    A list with no relevant passage at all looks like noise to any agreement figure (a good
    teacher may order 20 unrelated passages any way): such lists are rejected unless the
    teacher orders them the same way every time.

    Kept rows carry `top_set` as score.
    """

    name: ClassVar[str] = "consistency_agreement"
    min_top_set: float = 0.6
    min_top_support: float = 0.5
    min_tau: float | None = None
    tau_k: int = 10
    min_rbo: float | None = None
    p: float = 0.9
    on_single_sample: str = "reject"
    on_removed_samples: str = "relevant_set"
    group_field: str = "list_id"
    ranking_field: str = "final_list"

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_top_set <= 1.0:
            raise ValueError(f"consistency_agreement: min_top_set must be in [-1, 1], got {self.min_top_set}")
        if not 0.0 <= self.min_top_support <= 1.0:
            raise ValueError(f"consistency_agreement: min_top_support must be in [0, 1], got {self.min_top_support}")
        if self.min_tau is not None and not -1.0 <= self.min_tau <= 1.0:
            raise ValueError(f"consistency_agreement: min_tau must be in [-1, 1], got {self.min_tau}")
        if self.min_rbo is not None and not 0.0 <= self.min_rbo <= 1.0:
            raise ValueError(f"consistency_agreement: min_rbo must be in [0, 1], got {self.min_rbo}")
        if self.tau_k < 2:
            raise ValueError(f"consistency_agreement: tau_k must be >= 2, got {self.tau_k}")
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"consistency_agreement: p must be in (0, 1) (p = 1 is average overlap), got {self.p}")
        if self.on_removed_samples not in ("relevant_set", "reject", "check"):
            raise ValueError("consistency_agreement: on_removed_samples must be 'relevant_set', 'reject' or 'check', "
                             f"got {self.on_removed_samples!r}")
        if self.on_single_sample not in ("reject", "flag"):
            raise ValueError("consistency_agreement: on_single_sample must be 'reject' or 'flag', "
                             f"got {self.on_single_sample!r}")

    def apply(self, rows: Sequence[Row]) -> Iterator[tuple[Row, Verdict]]:
        groups: dict[object, list[Row]] = {}
        for row in rows:
            groups.setdefault(row[self.group_field], []).append(row)
        verdicts = {group: self._group_verdict(members) for group, members in groups.items()}
        for row in rows:
            yield row, verdicts[row[self.group_field]]

    def agreement(self, members: Sequence[Row]) -> Agreement:
        """The agreement of one list's samples, with this filter's p and tau_k."""
        return sample_agreement([row[self.ranking_field] for row in members], self.p, self.tau_k)

    def _relevant_set_agreement(self, members: list[Row]) -> float | None:
        """Mean pairwise top-set agreement at depth = number of pointwise positives."""
        rankings = _common_items([row[self.ranking_field] for row in members])
        positives = set(members[0].get("relevant_docids") or ()) & set(rankings[0])
        if len(members) < 2 or not 1 <= len(positives) < len(rankings[0]):
            return None
        pairs = list(itertools.combinations(rankings, 2))
        return sum(top_set_agreement(a, b, len(positives)) for a, b in pairs) / len(pairs)

    def _group_verdict(self, members: list[Row]) -> Verdict:
        valid = max(row.get("valid_samples") or 0 for row in members)
        if len(members) < valid and self.on_removed_samples != "check":
            relevant = None if self.on_removed_samples == "reject" else self._relevant_set_agreement(members)
            if relevant is None or relevant < self.min_top_set:
                return Verdict(False, "samples_removed", relevant)
        if len(members) < 2:
            return Verdict(self.on_single_sample == "flag", SINGLE_SAMPLE)
        agreement = self.agreement(members)
        checks = (("low_agreement_top_set", agreement.top_set, self.min_top_set),
                  ("top_not_agreed", agreement.top_support, self.min_top_support),
                  ("low_agreement_tau", agreement.tau, self.min_tau),
                  ("low_agreement_rbo", agreement.rbo, self.min_rbo))
        for reason, value, minimum in checks:
            if minimum is not None and value < minimum:
                return Verdict(False, reason, value)
        return Verdict(True, score=agreement.top_set)


def aggregate_samples(
    rows_of_one_list: Sequence[Row], method: str = "borda", max_kemeny_items: int = KEMENY_MAX_ITEMS
) -> list[str]:
    """One consensus `final_list` from the samples of one list (all with the same list_id).

    method "borda": Borda count (any list length). method "kemeny": exact Kemeny consensus
    when the list holds at most `max_kemeny_items` passages (default 8), Borda otherwise.
    """
    if not rows_of_one_list:
        raise ValueError("aggregate_samples needs at least one row")
    list_ids = {row["list_id"] for row in rows_of_one_list}
    if len(list_ids) > 1:
        raise ValueError(f"aggregate_samples got rows of several lists: {sorted(map(str, list_ids))}")
    rankings = [row["final_list"] for row in rows_of_one_list]
    if method == "borda":
        return borda_aggregate(rankings)
    if method == "kemeny":
        return kemeny_aggregate(rankings, max_items=max_kemeny_items)
    raise ValueError(f"unknown aggregation method {method!r}; use 'borda' or 'kemeny'")


def consensus_row(samples: Sequence[Row], method: str = "kemeny", p: float = 0.9) -> Row:
    """One row for a list: the consensus `final_list` of its kept samples, with lineage.

    The row copies the sample closest to the consensus (fewest pairwise disagreements; its
    messages and reasoning), replaces `final_list`, `permutation` and the order of its top
    window by the consensus, and records in `consensus` the method, the agreement of the
    samples and the row ids they came from; `call_keys` names every call behind them.
    Needs two or more samples of one list (method as in `aggregate_samples`).
    """
    if len(samples) < 2:
        raise ValueError("a consensus needs at least two samples")
    ordered = sorted(samples, key=lambda row: row["sample_index"])
    final = aggregate_samples(ordered, method)
    base = min(ordered, key=lambda row: kemeny_distance(row["final_list"], [final]))
    position = {docid: i for i, docid in enumerate(final)}
    windows = [dict(window) for window in base["windows"]]
    top = windows[base["top_window"]]
    presented_at = {docid: i for i, docid in enumerate(top["presented"], start=1)}
    top["permutation"] = [presented_at[d] for d in sorted(top["presented"], key=position.__getitem__)]
    initial_at = {docid: i for i, docid in enumerate(base["initial_list"], start=1)}
    agreement = sample_agreement([row["final_list"] for row in ordered], p)
    return {
        **base,
        "row_id": hashlib.sha256(f"{base['list_id']}:consensus".encode()).hexdigest()[:16],
        "final_list": final,
        "permutation": [initial_at[d] for d in final],
        "windows": windows,
        "answer": " > ".join(f"[{i}]" for i in top["permutation"]),
        "call_keys": [key for row in ordered for key in row["call_keys"]],
        "consensus": {"method": method, "samples": len(ordered), "agreement": agreement.top_set,
                      "agreed_depth": agreement.depth, "sample_row_ids": [row["row_id"] for row in ordered],
                      "sample_indexes": [row["sample_index"] for row in ordered], "reasoning_from": base["row_id"]},
    }


def consensus_rows(rows: Sequence[Row], method: str = "kemeny", p: float = 0.9) -> list[Row]:
    """A `consensus_row` for every list with two or more of `rows` (consensus rows excluded)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if not row.get("consensus"):
            groups.setdefault(row["list_id"], []).append(row)
    return [consensus_row(members, method, p) for members in groups.values() if len(members) >= 2]


__all__ = ["Agreement", "NDCGConsistencyFilter", "SampleAgreementFilter", "aggregate_samples", "consensus_row",
           "consensus_rows", "sample_agreement"]
