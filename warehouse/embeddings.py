"""Stored passage embeddings, one set per (snapshot, embedding model)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from warehouse.db import Warehouse


def has_embeddings(warehouse: Warehouse, snapshot_id: str, model: str) -> bool:
    row = warehouse.fetch_one("SELECT count(*) FROM embeddings WHERE snapshot_id = ? AND model = ?",
                              [snapshot_id, model])
    return row[0] > 0


def store_embeddings(warehouse: Warehouse, snapshot_id: str, model: str, docids: list[str],
                     vectors: np.ndarray) -> None:
    table = pa.table({
        "snapshot_id": [snapshot_id] * len(docids), "model": [model] * len(docids), "docid": docids,
        "vector": pa.array(list(vectors.astype(np.float32)), type=pa.list_(pa.float32())),
    })
    with warehouse.transaction():
        warehouse.con.execute("DELETE FROM embeddings WHERE snapshot_id = ? AND model = ?",
                              [snapshot_id, model])
        warehouse.insert_arrow("embeddings", table)


def load_embeddings(warehouse: Warehouse, snapshot_id: str, model: str) -> tuple[list[str], np.ndarray]:
    """(docids, matrix) in docid order."""
    table = warehouse.con.sql(
        "SELECT docid, vector FROM embeddings WHERE snapshot_id = ? AND model = ? ORDER BY docid",
        params=[snapshot_id, model]).to_arrow_table()
    docids = table.column("docid").to_pylist()
    if not docids:
        return [], np.zeros((0, 0), dtype=np.float32)
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = flat.astype(np.float32).reshape(len(docids), -1)
    return docids, vectors
