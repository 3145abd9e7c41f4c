"""Exports of ``negatives`` rows for embedding and reranker trainers.

Trainers get the row's positives (relabeled false negatives included) and its usable
negatives: hard negatives the judge did not find relevant, best score first. Suspected false
negatives never become training negatives; they stay in the warehouse and the parquet export
with their verdicts. Rows are written in ``row_id`` order, columns in the order trainers read
them (anchor first; JSONL keys sorted), so the same version always exports to the same bytes (the generic ``parquet``, ``jsonl`` and ``hf`` exports
hold every field, verdicts included).

- ``st``: sentence-transformers n-tuples ``anchor, positive, negative_1..negative_n``, one per
  (query, positive); ``n`` is the fewest usable negatives of any row that has one, so no such
  row is left out (``MultipleNegativesRankingLoss`` and friends).
- ``st-triplets``: ``anchor, positive, negative`` for every positive and usable negative.
- ``flagembedding``: FlagEmbedding JSONL, one ``{"query", "pos", "neg"}`` line per query.
"""

from __future__ import annotations

from pathlib import Path

from warehouse.formats.registry import exporter, write_jsonl, write_parquet


def usable_negatives(row: dict) -> list[str]:
    """Texts of the row's hard negatives that the judge did not find relevant, best first."""
    return [n["text"] for n in row["negatives"]
            if n["status"] == "hard_negative" and n["verdict"] != "relevant"]


def _trainable(rows: list[dict]) -> list[tuple[dict, list[str]]]:
    """(row, usable negatives) for rows that have at least one, in row_id order."""
    pairs = [(row, usable_negatives(row)) for row in sorted(rows, key=lambda r: r["row_id"])]
    return [(row, negatives) for row, negatives in pairs if negatives]


@exporter("negatives", "st")
def export_st(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    trainable = _trainable(rows)
    size = min((len(negatives) for _, negatives in trainable), default=0)
    tuples = [{"anchor": row["query"], "positive": positive["text"],
               **{f"negative_{i}": text for i, text in enumerate(negatives[:size], start=1)}}
              for row, negatives in trainable for positive in row["positives"]]
    return [write_parquet(tuples, out_dir / f"{kind}_st.parquet")]


@exporter("negatives", "st-triplets")
def export_st_triplets(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    triplets = [{"anchor": row["query"], "positive": positive["text"], "negative": negative}
                for row, negatives in _trainable(rows) for positive in row["positives"]
                for negative in negatives]
    return [write_parquet(triplets, out_dir / f"{kind}_st_triplets.parquet")]


@exporter("negatives", "flagembedding")
def export_flagembedding(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    lines = [{"query": row["query"], "pos": [p["text"] for p in row["positives"]], "neg": negatives}
             for row, negatives in _trainable(rows)]
    return [write_jsonl(lines, out_dir / f"{kind}_flagembedding.jsonl")]
