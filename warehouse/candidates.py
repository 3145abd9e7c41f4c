"""Stored candidate lists, one per (snapshot, retriever settings, query)."""

from __future__ import annotations

import pyarrow as pa

from warehouse.db import Warehouse


def has_candidates(warehouse: Warehouse, snapshot_id: str, retriever: str) -> bool:
    row = warehouse.fetch_one(
        "SELECT count(*) FROM candidates WHERE snapshot_id = ? AND retriever = ?",
        [snapshot_id, retriever])
    return row[0] > 0


def store_candidates(warehouse: Warehouse, snapshot_id: str, retriever: str,
                     lists: dict[str, list[tuple[str, float]]]) -> None:
    """Store qid -> [(docid, score), ...] (best first) in one transaction."""
    qids, ranks, docids, scores = [], [], [], []
    for qid, ranked in lists.items():
        for rank, (docid, score) in enumerate(ranked, start=1):
            qids.append(qid)
            ranks.append(rank)
            docids.append(docid)
            scores.append(float(score))
    table = pa.table({"snapshot_id": [snapshot_id] * len(qids), "retriever": [retriever] * len(qids),
                      "qid": qids, "rank": pa.array(ranks, pa.int32()), "docid": docids,
                      "score": scores})
    with warehouse.transaction():
        warehouse.con.execute("DELETE FROM candidates WHERE snapshot_id = ? AND retriever = ?",
                              [snapshot_id, retriever])
        warehouse.insert_arrow("candidates", table)


def load_candidates(warehouse: Warehouse, snapshot_id: str, retriever: str) -> dict[str, list[tuple[str, float]]]:
    rows = warehouse.con.execute(
        "SELECT qid, docid, score FROM candidates WHERE snapshot_id = ? AND retriever = ? "
        "ORDER BY qid, rank", [snapshot_id, retriever]).fetchall()
    lists: dict[str, list[tuple[str, float]]] = {}
    for qid, docid, score in rows:
        lists.setdefault(qid, []).append((docid, score))
    return lists
