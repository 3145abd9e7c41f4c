"""ReasonRank's multi-view ranking reward for verl, as ``compute_score`` (verl's default name
and signature). Standard library only: verl loads this file by path in its own environment,
where synthrank need not be installed, so the ``verl`` export copies it next to the parquet
(``listwise_verl_reward.py``)::

    reward.custom_reward_function.path=EXPORT/listwise_verl_reward.py
    reward.custom_reward_function.name=compute_score

(with synthrank installed in verl's environment, ``path=pkg://warehouse.rewards`` works too).

The score of a response, as in ReasonRank's verl fork (``ranking`` data source):

- **format**: the response must be ``[<think>]…</think> <answer>[4] > [2] > …</answer>``
  (nothing after ``</answer>``); otherwise ``format_penalty`` (default -1.0).
- **valid ranking**: the answer must name every position of the presented list
  (``extra_info["initial_list"]``) exactly once, as ``[i]`` joined by ``>`` (spaces around
  it optional); otherwise 0.0.
- otherwise ``ndcg_weight * nDCG@10 + recall_weight * Recall@10 + rbo_weight * RBO``:
  nDCG@10 and Recall@10 of the ranked passage ids against ``extra_info["relevant_docids"]``
  (binary relevance, as pytrec_eval's ``ndcg_cut.10`` / ``recall.10``), RBO between the
  response's ranking and the label (``ground_truth``), extrapolated with persistence
  ``rbo_p``. Defaults 1.0 / 0.2 / 0.1 are ReasonRank's weights. ReasonRank used the ``rbo``
  package's default p = 1.0 (plain average overlap); the default here is p = 0.9, which
  weights the top of the list (``reward_kwargs: {rbo_p: 1.0}`` gives theirs).

Any of these can be changed through verl's ``reward.custom_reward_function.reward_kwargs``.
The result is a dict: ``score`` plus its parts, which verl logs as reward extra info.
"""

from __future__ import annotations

import math
import re

_RESPONSE = re.compile(r"^\s*(?:<think>)?(?P<reasoning>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.S)
_RANKING = re.compile(r"^\[\d+\](?:\s*>\s*\[\d+\])*$")  # spacing as the tokenizer decodes it
_POSITION = re.compile(r"\[(\d+)\]")


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  ndcg_weight: float = 1.0, recall_weight: float = 0.2, rbo_weight: float = 0.1,
                  rbo_p: float = 0.9, format_penalty: float = -1.0, **_: object) -> dict:
    """The reward of one response: ``{"score", "format_ok", "valid_ranking", "ndcg@10",
    "recall@10", "rbo"}``. ``extra_info`` needs ``initial_list`` (the presented passage ids)
    and ``relevant_docids``; verl passes the row's ``extra_info`` column as it is."""
    extra_info = extra_info or {}
    missing = [key for key in ("initial_list", "relevant_docids") if extra_info.get(key) is None]
    if missing:
        raise KeyError(f"compute_score({data_source!r}): extra_info lacks {missing}; "
                       "use the rows of synthrank's verl export")
    presented = list(extra_info["initial_list"])
    parts = {"format_ok": 0.0, "valid_ranking": 0.0, "ndcg@10": 0.0, "recall@10": 0.0, "rbo": 0.0}
    match = _RESPONSE.match(solution_str or "")
    if match is None:
        return {"score": float(format_penalty), **parts}
    parts["format_ok"] = 1.0
    ranking = parse_positions(match["answer"], len(presented))
    if ranking is None:
        return {"score": 0.0, **parts}
    label = parse_positions(ground_truth, len(presented)) or []
    ranked_ids = [presented[i - 1] for i in ranking]
    relevant = set(extra_info["relevant_docids"])
    parts.update({"valid_ranking": 1.0, "ndcg@10": ndcg_at_10(ranked_ids, relevant),
                  "recall@10": recall_at_10(ranked_ids, relevant),
                  "rbo": rbo(ranking, label, rbo_p) if label else 0.0})
    score = ndcg_weight * parts["ndcg@10"] + recall_weight * parts["recall@10"] + rbo_weight * parts["rbo"]
    return {"score": score, **parts}


def parse_positions(answer: str, size: int) -> list[int] | None:
    """``[4] > [2] > …`` as positions, or None unless it names 1..size exactly once each."""
    answer = (answer or "").strip()
    if not _RANKING.match(answer):
        return None
    positions = [int(p) for p in _POSITION.findall(answer)]
    return positions if sorted(positions) == list(range(1, size + 1)) else None


def ndcg_at_10(ranked_ids: list[str], relevant: set[str]) -> float:
    """Binary-relevance nDCG@10 (0 when nothing is relevant)."""
    dcg = sum(1 / math.log2(rank + 1) for rank, docid in enumerate(ranked_ids[:10], start=1) if docid in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), 10) + 1))
    return dcg / ideal if ideal else 0.0


def recall_at_10(ranked_ids: list[str], relevant: set[str]) -> float:
    return len(relevant & set(ranked_ids[:10])) / len(relevant) if relevant else 0.0


def rbo(a: list, b: list, p: float) -> float:
    """Extrapolated rank-biased overlap of two rankings of the same items (p = 1.0: average
    overlap)."""
    seen_a, seen_b, overlap, total = set(), set(), 0, 0.0
    depth = max(len(a), len(b))
    for d in range(1, depth + 1):
        x, y = (a[d - 1] if d <= len(a) else None), (b[d - 1] if d <= len(b) else None)
        overlap += (x is not None and x in seen_b) + (y is not None and y in seen_a) + (x is not None and x == y)
        seen_a.add(x)
        seen_b.add(y)
        total += overlap / d * (p ** d if p < 1.0 else 1.0)
    if p == 1.0:
        return total / depth
    return (1 - p) / p * total + overlap / depth * p ** depth
