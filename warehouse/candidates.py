"""Stored candidate lists, one per (snapshot, retriever settings, query).

Lists are stored per query: a build computes and stores only the lists of the queries it
selects that have none yet, and reads back only those it uses.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import pyarrow as pa

from warehouse.db import Warehouse

_QIDS = "_synthrank_qids"


def stored_qids(warehouse: Warehouse, snapshot_id: str, retriever: str) -> set[str]:
    """The queries of a snapshot that have a stored list under ``retriever``."""
    rows = warehouse.con.execute(
        "SELECT DISTINCT qid FROM candidates WHERE snapshot_id = ? AND retriever = ?",
        [snapshot_id, retriever]).fetchall()
    return {qid for (qid,) in rows}


def store_candidates(warehouse: Warehouse, snapshot_id: str, retriever: str,
                     lists: dict[str, list[tuple[str, float]]]) -> None:
    """Store qid -> [(docid, score), ...] (best first) in one transaction, replacing any
    stored list of those queries (lists of other queries stay)."""
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
    with warehouse.transaction(), _registered_qids(warehouse, lists):
        warehouse.con.execute(f"DELETE FROM candidates WHERE snapshot_id = ? AND retriever = ? "
                              f"AND qid IN (SELECT qid FROM {_QIDS})", [snapshot_id, retriever])
        warehouse.insert_arrow("candidates", table)


def load_candidates(warehouse: Warehouse, snapshot_id: str, retriever: str,
                    qids: Iterable[str] | None = None) -> dict[str, list[tuple[str, float]]]:
    """qid -> [(docid, score), ...] best first: the stored lists of ``qids`` (default: all)."""
    sql = ("SELECT qid, docid, score FROM candidates WHERE snapshot_id = ? AND retriever = ? "
           + ("" if qids is None else f"AND qid IN (SELECT qid FROM {_QIDS}) ") + "ORDER BY qid, rank")
    with _registered_qids(warehouse, qids):
        rows = warehouse.con.execute(sql, [snapshot_id, retriever]).fetchall()
    lists: dict[str, list[tuple[str, float]]] = {}
    for qid, docid, score in rows:
        lists.setdefault(qid, []).append((docid, score))
    return lists


def candidate_passages(warehouse: Warehouse, snapshot_id: str, docids: Iterable[str]
                       ) -> dict[str, tuple[str, str]]:
    """docid -> (title, text) for the given passages of a snapshot only (a build reads the
    passages of the lists it ranks, not the whole corpus)."""
    wanted = pa.table({"docid": pa.array(sorted(set(docids)), pa.string())})
    warehouse.con.register("_synthrank_docids", wanted)
    try:
        rows = warehouse.con.execute(
            "SELECT docid, title, text FROM passages WHERE snapshot_id = ? "
            "AND docid IN (SELECT docid FROM _synthrank_docids) ORDER BY docid", [snapshot_id]).fetchall()
    finally:
        warehouse.con.unregister("_synthrank_docids")
    return {docid: (title, text) for docid, title, text in rows}


def passage_batches(warehouse: Warehouse, snapshot_id: str, batch_rows: int = 50_000
                    ) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """Every passage of a snapshot in docid order, as (docids, titles, texts) batches, so
    an index can be built without the whole corpus in Python objects at once."""
    cursor = warehouse.con.cursor()  # its own cursor: the caller may query meanwhile
    try:
        reader = cursor.sql("SELECT docid, title, text FROM passages WHERE snapshot_id = ? ORDER BY docid",
                            params=[snapshot_id]).to_arrow_reader(batch_rows)
        for batch in reader:
            yield (batch.column(0).to_pylist(), batch.column(1).to_pylist(), batch.column(2).to_pylist())
    finally:
        cursor.close()


@contextmanager
def _registered_qids(warehouse: Warehouse, qids: Iterable[str] | None) -> Iterator[None]:
    """``qids`` registered as the table ``_synthrank_qids`` for the block (nothing when None)."""
    if qids is None:
        yield
        return
    warehouse.con.register(_QIDS, pa.table({"qid": pa.array(list(qids), pa.string())}))
    try:
        yield
    finally:
        warehouse.con.unregister(_QIDS)
