"""Teacher against people: how often the labels of a version agree with the human judgments
made on it (``synthrank review pull``), per kind, with sample sizes and 95% Wilson intervals.

Per kind, over the latest judgment of each item:

- listwise: passage relevance (the teacher's ``relevant_docids`` against the people's, per
  passage shown) and the top passage (the teacher's first against the people's first, where
  they ranked one);
- negatives: the candidate's label (the judge's verdict; an unjudged hard negative counts as
  "not relevant", an unjudged suspect is left out) against the people's verdict, and how many
  suspected false negatives people found relevant (how right setting them aside was);
- mixed_cot: the answer check (``answer_correct``) against the people's correct / incorrect,
  and how many accepted traces people found acceptable overall.

The *error rate* of a kind counts only items pushed with a ``sample:N`` selection, a random
sample of accepted items, so it estimates the share of wrong labels in the whole kind: a
listwise row whose relevant passages differ, a candidate whose label differs, a trace judged
incorrect or unacceptable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from warehouse.db import Warehouse
from warehouse.review import Item, judged_items, judgments_of_version

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Figure:
    kind: str
    name: str
    hits: int
    n: int
    unit: str

    @property
    def value(self) -> float | None:
        return self.hits / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.hits, self.n) if self.n else None

    @property
    def value_text(self) -> str:
        return "n/a" if self.value is None else f"{self.value:.3f}"

    @property
    def interval_text(self) -> str:
        return "n/a" if self.interval is None else "{:.3f}–{:.3f}".format(*self.interval)


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (n > 0)."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def human_agreement(warehouse: Warehouse, dataset: str, version: int) -> list[Figure]:
    """Agreement and sample error-rate figures of every kind people judged in ``dataset@version``."""
    latest = {}
    for record in judgments_of_version(warehouse, dataset, version):  # oldest first: the last one stands
        latest[(record["kind"], record["row_id"], record["item"])] = record
    items = judged_items(warehouse, dataset, version, set(latest))
    pairs = [(items[key], record) for key, record in latest.items() if key in items]
    figures = []
    for kind, measure in (("listwise", _listwise), ("negatives", _negatives), ("mixed_cot", _mixed_cot)):
        of_kind = [(item, record) for item, record in pairs if item.kind == kind]
        if of_kind:
            figures += measure(of_kind)
    return figures


def _sampled(pairs: list[tuple[Item, dict]]) -> list[tuple[Item, dict]]:
    return [(item, record) for item, record in pairs if record["selection"].startswith("sample:")
            and item.status == "accepted"]


def _listwise(pairs: list[tuple[Item, dict]]) -> list[Figure]:
    same_passage = passages = same_top = tops = 0
    for item, record in pairs:
        teacher, human = set(item.row["relevant_docids"]), set(record["judgment"]["relevant"])
        passages += len(item.row["initial_list"])
        same_passage += sum((d in teacher) == (d in human) for d in item.row["initial_list"])
        ranking = record["judgment"]["ranking"]
        if ranking and item.row["final_list"]:
            tops += 1
            same_top += item.row["final_list"][0] == ranking[0]
    sampled = _sampled(pairs)
    wrong = sum(set(i.row["relevant_docids"]) != set(r["judgment"]["relevant"]) for i, r in sampled)
    return [Figure("listwise", "passage relevance agreement", same_passage, passages, "passages"),
            Figure("listwise", "top passage agreement", same_top, tops, "rows"),
            Figure("listwise", "error rate (sample)", wrong, len(sampled), "rows")]


def teacher_verdict(negative: dict) -> str | None:
    """The label a mined candidate carries: the judge's verdict, else not relevant for a hard negative."""
    if negative.get("verdict") in ("relevant", "not_relevant"):
        return negative["verdict"]
    return "not_relevant" if negative.get("status") == "hard_negative" else None


def _negatives(pairs: list[tuple[Item, dict]]) -> list[Figure]:
    labelled = [(teacher_verdict(i.negative), r["judgment"]["verdict"]) for i, r in pairs
                if teacher_verdict(i.negative) is not None]
    sampled = [(teacher_verdict(i.negative), r["judgment"]["verdict"]) for i, r in _sampled(pairs)
               if teacher_verdict(i.negative) is not None]
    suspects = [r["judgment"]["verdict"] for i, r in pairs if i.negative.get("status") == "suspected_false_negative"]
    return [Figure("negatives", "candidate label agreement", sum(t == h for t, h in labelled), len(labelled),
                   "candidates"),
            Figure("negatives", "suspects people found relevant", suspects.count("relevant"), len(suspects),
                   "candidates"),
            Figure("negatives", "error rate (sample)", sum(t != h for t, h in sampled), len(sampled), "candidates")]


def _mixed_cot(pairs: list[tuple[Item, dict]]) -> list[Figure]:
    checked = [(i.row["answer_correct"], r["judgment"]["answer"] == "correct") for i, r in pairs
               if i.row.get("answer_correct") is not None]
    accepted = [r for i, r in pairs if i.status == "accepted"]
    sampled = _sampled(pairs)
    bad = sum(r["judgment"]["answer"] == "incorrect" or r["judgment"]["reasoning"] == "unacceptable"
              for _, r in sampled)
    return [Figure("mixed_cot", "answer check agreement", sum(a == b for a, b in checked), len(checked), "traces"),
            Figure("mixed_cot", "accepted traces judged acceptable",
                   sum(r["judgment"]["reasoning"] == "acceptable" for r in accepted), len(accepted), "traces"),
            Figure("mixed_cot", "error rate (sample)", bad, len(sampled), "traces")]
