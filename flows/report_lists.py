"""The audit's per-list figures: one record per listwise candidate list, and the share of
noisy lists with its uncertainty.

A list's record says what happened to its samples (presented, valid, kept), how they agree
(`filters.consistency.sample_agreement`), how good they are against the human judgments and
against the teacher's own pointwise positives (mean nDCG@10 over its valid samples), whether
a consensus row was made, and every verdict with its reason. `write_list_files` writes the
records as Parquet and CSV beside the HTML page.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from filters.consistency import sample_agreement
from filters.metrics import evaluate_rankings
from warehouse.audit import AuditData

NDCG_K = 10
CONSISTENCY_PREFIX = "consistency_"
LIST_COLUMNS = ("list_id", "snapshot_id", "qid", "query", "domain", "presented", "valid", "kept", "consensus",
                "agreement", "agreed_depth", "ndcg_qrels", "ndcg_positives", "status", "flags", "reasons")


def docids_of(items: Any) -> list[str]:
    """Docids from a list of docids or of ``{"docid": ...}`` records."""
    if not isinstance(items, list):
        return []
    return [str(i["docid"]) if isinstance(i, dict) else str(i) for i in items
            if not isinstance(i, dict) or "docid" in i]


def judgments(data: AuditData, row: dict) -> dict[str, int] | None:
    """The qrels of the row's query in its snapshot, or None where there are none."""
    by_query = data.qrels.get(row.get("snapshot_id"))
    if by_query is None and row.get("snapshot_id") is None and len(data.qrels) == 1:
        by_query = next(iter(data.qrels.values()))
    grades = (by_query or {}).get(str(row.get("qid")))
    return grades if grades and any(g > 0 for g in grades.values()) else None


def list_records(data: AuditData) -> list[dict]:
    """One record per listwise list (columns `LIST_COLUMNS`), in list_id order."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for status, rows in (("kept", data.rows.get("listwise", [])), ("rejected", data.rejected.get("listwise", []))):
        for row in rows:
            if row.get("list_id") is not None:
                member = "consensus" if row.get("consensus") else status
                groups.setdefault(str(row["list_id"]), {}).setdefault(member, []).append(row)
    return [_list_record(data, members) for _, members in sorted(groups.items())]


def _list_record(data: AuditData, members: dict[str, list[dict]]) -> dict:
    kept, rejected = members.get("kept", []), members.get("rejected", [])
    samples = kept + rejected
    valid = [row for row in samples if row.get("final_list")]
    first = (samples or members["consensus"])[0]
    agreement = _agreement([row["final_list"] for row in valid])
    flags = Counter(verdict["reason"] for row in kept for verdict in (row.get("filter_verdicts") or {}).values()
                    if verdict.get("keep") and verdict.get("reason"))
    flags.update("samples_short" for row in kept if row.get("samples_short"))
    reasons = Counter(f"{row['_stage']}:{row['_reason']}" for row in rejected)
    return {
        "list_id": str(first["list_id"]), "snapshot_id": first.get("snapshot_id"), "qid": str(first.get("qid")),
        "query": first.get("query"), "domain": first.get("domain"),
        "presented": len(samples), "valid": len(valid), "kept": len(kept), "consensus": "consensus" in members,
        "agreement": agreement.top_set if agreement else None, "agreed_depth": agreement.depth if agreement else None,
        "ndcg_qrels": _mean_ndcg(valid, [judgments(data, row) for row in valid]),
        "ndcg_positives": _mean_ndcg(valid, [docids_of(row.get("relevant_docids")) for row in valid]),
        "status": "kept" if kept else ("rejected" if valid else "no valid sample"),
        "flags": _counted(flags), "reasons": _counted(reasons),
    }


def _agreement(rankings: list[list[str]]):
    if len(rankings) < 2:
        return None
    try:
        return sample_agreement(rankings)
    except ValueError:  # fewer than two passages common to every sample
        return None


def _mean_ndcg(rows: list[dict], judged: list) -> float | None:
    pairs = [(row["final_list"], j) for row, j in zip(rows, judged) if j]
    if not pairs:
        return None
    values = evaluate_rankings([p[0] for p in pairs], [p[1] for p in pairs], [f"nDCG@{NDCG_K}"])
    defined = [v[f"nDCG@{NDCG_K}"] for v in values if v[f"nDCG@{NDCG_K}"] is not None]
    return statistics.fmean(defined) if defined else None


def _counted(counts: Counter) -> str:
    return "; ".join(f"{key} ×{n}" if n > 1 else key for key, n in sorted(counts.items()))


def consistency_checked(data: AuditData) -> bool:
    """Whether a consistency filter judged this version's listwise rows."""
    kept = data.rows.get("listwise", [])
    return (any(label.startswith(CONSISTENCY_PREFIX) for row in kept for label in row.get("filter_verdicts") or {})
            or any(row["_stage"].startswith(CONSISTENCY_PREFIX) for row in data.rejected.get("listwise", [])))


def noisy_lists(records: list[dict]) -> tuple[int, int]:
    """(noisy, judged): lists whose samples carry pointwise positives (a consistency filter
    could judge them), and those of them the consistency filters rejected whole."""
    judged = [r for r in records if r["valid"] and r["ndcg_positives"] is not None]
    noisy = [r for r in judged if not r["kept"] and CONSISTENCY_PREFIX in r["reasons"]]
    return len(noisy), len(judged)


def wilson_interval(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible at 0 and 1 and for small n)."""
    if total == 0:
        raise ValueError("an interval needs at least one observation")
    share = hits / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def kept_unchecked(records: list[dict]) -> dict[str, int]:
    """Lists kept with a flag that means their samples were not (fully) checked."""
    kept = [r for r in records if r["kept"]]
    return {"single_sample": sum("single_sample" in r["flags"] for r in kept),
            "samples_short": sum("samples_short" in r["flags"] for r in kept),
            "no_positives": sum("no_positives" in r["flags"] for r in kept)}


def write_list_files(records: list[dict], stem: Path) -> tuple[Path, Path]:
    """``<stem>-lists.parquet`` and ``<stem>-lists.csv``, each written whole then moved in place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet, table_csv = stem.with_name(stem.name + "-lists.parquet"), stem.with_name(stem.name + "-lists.csv")
    columns = {name: [r[name] for r in records] for name in LIST_COLUMNS}
    partial = parquet.with_name(parquet.name + ".partial")
    pq.write_table(pa.table(columns), partial)
    os.replace(partial, parquet)
    partial = table_csv.with_name(table_csv.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LIST_COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    os.replace(partial, table_csv)
    return parquet, table_csv
