"""Immutable, fingerprinted source snapshots: ingest once, read many times."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.names import check_name
from warehouse.sources import SourceData, read_source


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    name: str
    domain: str
    source: str
    source_kind: str
    n_passages: int
    n_queries: int
    n_qrels: int


def fingerprint(name: str, domain: str, data: SourceData) -> str:
    """A stable id for (name, domain, content): identical input gives the identical id."""
    digest = hashlib.sha256()
    digest.update(json.dumps([name, domain]).encode())
    for docid in sorted(data.passages):
        digest.update(json.dumps(["p", docid, *data.passages[docid]], ensure_ascii=False).encode())
    for qid in sorted(data.queries):
        digest.update(json.dumps(["q", qid, *data.queries[qid]], ensure_ascii=False).encode())
    for key in sorted(data.qrels):
        digest.update(json.dumps(["r", *key, data.qrels[key]]).encode())
    return "snap-" + digest.hexdigest()[:16]


def ingest(warehouse: Warehouse, source: str | Path, name: str, domain: str,
           hub: bool = False) -> tuple[Snapshot, bool]:
    """Read ``source`` (a path, or with ``hub`` a hub id) and store it as a snapshot;
    return (snapshot, created).

    Ingesting identical content under the same name and domain returns the existing snapshot
    and writes nothing. Any invalid record raises before anything is written.
    """
    check_name(name, "snapshot name")
    if not domain.strip():
        raise InputError("ingest: the domain must be non-empty")
    data = read_source(source, hub=hub)
    snapshot_id = fingerprint(name, domain, data)
    existing = find_snapshot(warehouse, snapshot_id)
    if existing is not None:
        return existing, False
    snapshot = Snapshot(snapshot_id, name, domain, f"hf:{source}" if hub else str(source), data.kind,
                        len(data.passages), len(data.queries), len(data.qrels))
    with warehouse.transaction() as con:
        con.execute(
            "INSERT INTO snapshots (snapshot_id, name, domain, source, source_kind, n_passages,"
            " n_queries, n_qrels) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [snapshot.snapshot_id, name, domain, snapshot.source, data.kind,
             snapshot.n_passages, snapshot.n_queries, snapshot.n_qrels],
        )
        warehouse.insert_arrow("passages", _passages_table(snapshot_id, data))
        warehouse.insert_arrow("queries", _queries_table(snapshot_id, data))
        warehouse.insert_arrow("qrels", _qrels_table(snapshot_id, data))
    return snapshot, True


def _passages_table(snapshot_id: str, data: SourceData) -> pa.Table:
    docids = list(data.passages)
    return pa.table({
        "snapshot_id": [snapshot_id] * len(docids),
        "docid": docids,
        "title": [data.passages[d][0] for d in docids],
        "text": [data.passages[d][1] for d in docids],
    })


def _queries_table(snapshot_id: str, data: SourceData) -> pa.Table:
    qids = list(data.queries)
    return pa.table({
        "snapshot_id": [snapshot_id] * len(qids),
        "qid": qids,
        "text": [data.queries[q][0] for q in qids],
        "answers": pa.array([data.queries[q][1] for q in qids], type=pa.list_(pa.string())),
    })


def _qrels_table(snapshot_id: str, data: SourceData) -> pa.Table:
    keys = list(data.qrels)
    return pa.table({
        "snapshot_id": [snapshot_id] * len(keys),
        "split": [k[0] for k in keys],
        "qid": [k[1] for k in keys],
        "docid": [k[2] for k in keys],
        "grade": pa.array([data.qrels[k] for k in keys], type=pa.int32()),
    })


_SNAPSHOT_COLUMNS = "snapshot_id, name, domain, source, source_kind, n_passages, n_queries, n_qrels"


def find_snapshot(warehouse: Warehouse, snapshot_id: str) -> Snapshot | None:
    row = warehouse.fetch_one(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE snapshot_id = ?", [snapshot_id]
    )
    return Snapshot(*row) if row else None


def latest_snapshot(warehouse: Warehouse, name: str) -> Snapshot:
    """The most recently ingested snapshot with this name."""
    row = warehouse.fetch_one(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE name = ? ORDER BY created_at DESC LIMIT 1",
        [name],
    )
    if row is None:
        raise InputError(f"no snapshot named {name!r} in {warehouse.path}")
    return Snapshot(*row)


def list_snapshots(warehouse: Warehouse) -> list[Snapshot]:
    rows = warehouse.con.execute(f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots ORDER BY created_at").fetchall()
    return [Snapshot(*row) for row in rows]


def load_passages(warehouse: Warehouse, snapshot_id: str) -> dict[str, tuple[str, str]]:
    """docid -> (title, text) for every passage of the snapshot."""
    rows = warehouse.con.execute(
        "SELECT docid, title, text FROM passages WHERE snapshot_id = ? ORDER BY docid", [snapshot_id]
    ).fetchall()
    return {docid: (title, text) for docid, title, text in rows}


def load_queries(warehouse: Warehouse, snapshot_id: str) -> dict[str, tuple[str, list[str] | None]]:
    """qid -> (text, reference answers or None), in qid order."""
    rows = warehouse.con.execute(
        "SELECT qid, text, answers FROM queries WHERE snapshot_id = ? ORDER BY qid", [snapshot_id]
    ).fetchall()
    return {qid: (text, answers) for qid, text, answers in rows}


def load_qrels(warehouse: Warehouse, snapshot_id: str) -> dict[str, dict[str, int]]:
    """qid -> {docid: grade} over all splits (the highest grade where splits disagree)."""
    rows = warehouse.con.execute(
        "SELECT qid, docid, max(grade) FROM qrels WHERE snapshot_id = ? GROUP BY qid, docid",
        [snapshot_id],
    ).fetchall()
    qrels: dict[str, dict[str, int]] = {}
    for qid, docid, grade in rows:
        qrels.setdefault(qid, {})[docid] = grade
    return qrels
