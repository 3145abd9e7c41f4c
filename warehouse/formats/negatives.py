"""Exports of ``negatives`` rows for embedding and reranker trainers.

Trainers get the row's positives (relabeled false negatives included) and its usable
negatives, best score first: the hard negatives the judge did not find relevant and, with
``cleared_suspects`` (default on), the suspected false negatives the judge found *not
relevant* — near-positives a judge cleared are the most useful hard negatives (RLHN). A
suspect the judge did not clear (relevant, or never judged) is never a negative; it stays in
the warehouse and the parquet export with its verdict. Rows are written in ``row_id`` order,
columns in the order trainers read them (anchor first; JSONL keys sorted), so the same
version always exports to the same bytes (the generic ``parquet``, ``jsonl`` and ``hf``
exports hold every field, verdicts included).

- ``st``: sentence-transformers n-tuples ``anchor, positive, negative_1..negative_n``, one per
  (query, positive) (``MultipleNegativesRankingLoss`` and friends).
- ``st-triplets``: ``anchor, positive, negative`` for every positive and usable negative.
- ``flagembedding``: FlagEmbedding JSONL, one ``{"query", "pos", "neg"}`` line per query.

``st`` and ``flagembedding`` give every row ``num_negatives`` negatives (default: the build
spec's ``negatives.num_negatives``, else the most any row has). A row with fewer usable
negatives is, with ``short_rows: pad`` (default), padded by repeating its own negatives in
order (best first, again from the best); with ``short_rows: drop``, left out. A row with no
usable negative is always left out. The manifest entry reports the rows written and left
out, the anchors and rows per anchor, and warns when a few anchors dominate: the largest
anchor holds more than 10% of the rows, or the largest tenth of the anchors more than half.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from warehouse.formats.registry import Written, exporter, write_jsonl, write_parquet

SHORT_ROWS = ("pad", "drop")
SELECTION = {"cleared_suspects": True}
FIXED_COUNT = {"num_negatives": None, "short_rows": "pad", **SELECTION}
TOP_ANCHOR_SHARE = 0.10  # warn when the largest anchor holds more than this share of rows,
TOP_TENTH_SHARE = 0.50   # or the largest tenth of the anchors more than this


def usable_negatives(row: dict, cleared_suspects: bool = True) -> list[str]:
    """Texts of the row's usable negatives, best first: hard negatives not judged relevant,
    and (``cleared_suspects``) suspected false negatives judged not relevant."""
    return [n["text"] for n in row["negatives"]
            if (n["status"] == "hard_negative" and n["verdict"] != "relevant")
            or (cleared_suspects and n["status"] == "suspected_false_negative" and n["verdict"] == "not_relevant")]


def fixed_negatives(negatives: list[str], count: int, short_rows: str) -> list[str] | None:
    """Exactly ``count`` negatives: the first ``count``, or a short list padded by repeating
    it in order (``pad``); None when the row is left out (none at all, or short with ``drop``)."""
    if not negatives or (len(negatives) < count and short_rows == "drop"):
        return None
    return [negatives[i % len(negatives)] for i in range(count)]


def _selected(rows: list[dict], num_negatives: int | None, short_rows: str,
              cleared_suspects: bool) -> tuple[list[tuple[dict, list[str]]], dict]:
    """(row, its negatives) for the rows written, in row_id order, and what was left out."""
    if short_rows not in SHORT_ROWS:
        raise ValueError(f"short_rows must be one of {SHORT_ROWS}, got {short_rows!r}")
    ordered = [(row, usable_negatives(row, cleared_suspects)) for row in sorted(rows, key=lambda r: r["row_id"])]
    count = num_negatives or max((len(negatives) for _, negatives in ordered), default=0)
    chosen = [(row, fixed_negatives(negatives, count, short_rows)) for row, negatives in ordered]
    report = {"num_negatives": count,
              "queries_without_negatives": sum(1 for _, negatives in ordered if not negatives),
              "queries_padded": sum(1 for _, n in ordered if n and len(n) < count and short_rows == "pad"),
              "queries_left_short": sum(1 for _, n in ordered if n and len(n) < count and short_rows == "drop")}
    return [(row, negatives) for row, negatives in chosen if negatives is not None], report


def anchor_report(anchors: list[str]) -> dict:
    """Anchors, rows per anchor, and warnings when a few anchors dominate the rows."""
    per_anchor = sorted(Counter(anchors).values(), reverse=True)
    if not per_anchor:
        return {"anchors": 0, "rows_per_anchor": None, "warnings": []}
    rows, tenth = len(anchors), max(1, math.ceil(len(per_anchor) / 10))
    top_share, tenth_share = per_anchor[0] / rows, sum(per_anchor[:tenth]) / rows
    warnings = []
    if top_share > TOP_ANCHOR_SHARE or tenth_share > TOP_TENTH_SHARE:
        warnings.append(
            f"{rows} rows come from {len(per_anchor)} anchors ({per_anchor[-1]} to {per_anchor[0]} rows each; the "
            f"largest holds {top_share:.0%} of the rows, the largest tenth of the anchors {tenth_share:.0%}): "
            "in-batch negatives see few distinct queries. Use BatchSamplers.NO_DUPLICATES (a batch then holds one "
            "row per anchor) or more queries.")
    return {"anchors": len(per_anchor),
            "rows_per_anchor": {"min": per_anchor[-1], "median": per_anchor[len(per_anchor) // 2],
                                "max": per_anchor[0]},
            "top_anchor_share": round(top_share, 4), "top_tenth_share": round(tenth_share, 4),
            "warnings": warnings}


@exporter("negatives", "st", options=FIXED_COUNT)
def export_st(rows: list[dict], out_dir: Path, kind: str, num_negatives: int | None = None,
              short_rows: str = "pad", cleared_suspects: bool = True) -> Written:
    selected, report = _selected(rows, num_negatives, short_rows, cleared_suspects)
    tuples = [{"anchor": row["query"], "positive": positive["text"],
               **{f"negative_{i}": text for i, text in enumerate(negatives, start=1)}}
              for row, negatives in selected for positive in row["positives"]]
    report.update(written_rows=len(tuples), **anchor_report([t["anchor"] for t in tuples]))
    return Written([write_parquet(tuples, out_dir / f"{kind}_st.parquet")], report)


@exporter("negatives", "st-triplets", options=SELECTION)
def export_st_triplets(rows: list[dict], out_dir: Path, kind: str, cleared_suspects: bool = True) -> Written:
    triplets = [{"anchor": row["query"], "positive": positive["text"], "negative": negative}
                for row in sorted(rows, key=lambda r: r["row_id"]) for positive in row["positives"]
                for negative in usable_negatives(row, cleared_suspects)]
    report = {"written_rows": len(triplets), **anchor_report([t["anchor"] for t in triplets])}
    return Written([write_parquet(triplets, out_dir / f"{kind}_st_triplets.parquet")], report)


@exporter("negatives", "flagembedding", options=FIXED_COUNT)
def export_flagembedding(rows: list[dict], out_dir: Path, kind: str, num_negatives: int | None = None,
                         short_rows: str = "pad", cleared_suspects: bool = True) -> Written:
    selected, report = _selected(rows, num_negatives, short_rows, cleared_suspects)
    lines = [{"query": row["query"], "pos": [p["text"] for p in row["positives"]], "neg": negatives}
             for row, negatives in selected]
    report.update(written_rows=len(lines), **anchor_report([line["query"] for line in lines]))
    return Written([write_jsonl(lines, out_dir / f"{kind}_flagembedding.jsonl")], report)
