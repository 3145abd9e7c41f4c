"""What the label-quality audit reads from the warehouse, in one place.

`load_audit_data(warehouse, dataset, version)` gathers everything for one published version:
its manifest and spec, accepted and rejected rows of every kind, the human judgments (qrels)
of its source snapshots, the retrievers' stored candidate orders, rejection counts with two
examples each, and the recorded teacher calls behind its rows. Nothing here computes a
figure; flows/report.py does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from warehouse.db import Warehouse
from warehouse.snapshots import Snapshot, find_snapshot, load_qrels
from warehouse.versions import load_rows, resolve_version

EXAMPLES_PER_REASON = 2


@dataclass
class AuditData:
    """One published version, as the audit needs it."""

    dataset: str
    version: int
    spec: dict
    manifest: dict
    code_version: str
    published_at: str
    snapshots: list[Snapshot]
    rows: dict[str, list[dict]]  # kind -> accepted rows
    rejected: dict[str, list[dict]]  # kind -> rejected rows, each with _stage, _reason, _score
    rejections: list[dict]  # kind, stage, reason, count, examples (rows)
    qrels: dict[str, dict[str, dict[str, int]]]  # snapshot_id -> qid -> docid -> grade
    retriever_orders: dict[tuple[str, str], dict[str, list[str]]]  # (sid, qid) -> retriever -> docids
    calls: list[dict]  # kind, model, calls, ok, prompt_tokens, completion_tokens, latency_ms
    passages: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # filled on demand

    @property
    def label(self) -> str:
        return f"{self.dataset}@{self.version}"


def load_audit_data(warehouse: Warehouse, dataset: str, version: int | None = None) -> AuditData:
    """Everything the audit reads about ``dataset@version`` (latest published when None)."""
    version = resolve_version(warehouse, dataset, version)
    spec, manifest, code_version, published_at, snapshot_ids = warehouse.fetch_one(
        "SELECT spec, manifest, code_version, published_at, snapshot_ids FROM dataset_versions "
        "WHERE dataset = ? AND version = ?", [dataset, version])
    kinds = row_kinds(warehouse, dataset, version)
    snapshots = [s for s in (find_snapshot(warehouse, sid) for sid in snapshot_ids) if s is not None]
    return AuditData(
        dataset=dataset, version=version, spec=json.loads(spec), manifest=json.loads(manifest),
        code_version=code_version, published_at=str(published_at or ""), snapshots=snapshots,
        rows={kind: load_rows(warehouse, dataset, version, kind) for kind in kinds["accepted"]},
        rejected={kind: load_rejected_rows(warehouse, dataset, version, kind) for kind in kinds["rejected"]},
        rejections=rejection_examples(warehouse, dataset, version),
        qrels={s.snapshot_id: load_qrels(warehouse, s.snapshot_id) for s in snapshots if s.n_qrels},
        retriever_orders=retriever_orders(warehouse, list(snapshot_ids)),
        calls=call_totals(warehouse, dataset, version),
    )


def row_kinds(warehouse: Warehouse, dataset: str, version: int) -> dict[str, list[str]]:
    """The kinds that have accepted rows and the kinds that have rejected rows."""
    accepted = warehouse.con.execute(
        "SELECT DISTINCT kind FROM dataset_rows WHERE dataset = ? AND version = ? ORDER BY kind",
        [dataset, version]).fetchall()
    rejected = warehouse.con.execute(
        "SELECT DISTINCT kind FROM rejections WHERE dataset = ? AND version = ? ORDER BY kind",
        [dataset, version]).fetchall()
    return {"accepted": [k for (k,) in accepted], "rejected": [k for (k,) in rejected]}


def load_rejected_rows(warehouse: Warehouse, dataset: str, version: int, kind: str) -> list[dict]:
    """Rejected rows of one kind, data and lineage merged, with ``_stage``, ``_reason``, ``_score``."""
    rows = warehouse.con.execute(
        "SELECT data, lineage, stage, reason, score FROM rejections "
        "WHERE dataset = ? AND version = ? AND kind = ? ORDER BY row_id, stage",
        [dataset, version, kind]).fetchall()
    return [{**json.loads(data), **json.loads(lineage), "_stage": stage, "_reason": reason, "_score": score}
            for data, lineage, stage, reason, score in rows]


def rejection_examples(warehouse: Warehouse, dataset: str, version: int,
                       examples: int = EXAMPLES_PER_REASON) -> list[dict]:
    """Rejections grouped by (kind, stage, reason), most frequent first, with ``examples``
    rows each (the lowest row ids, so the choice is stable)."""
    rows = warehouse.con.execute(
        """
        SELECT kind, stage, reason, count(*) OVER (PARTITION BY kind, stage, reason) AS n,
               row_number() OVER (PARTITION BY kind, stage, reason ORDER BY row_id) AS pick,
               row_id, score, data, lineage
        FROM rejections WHERE dataset = ? AND version = ?
        QUALIFY pick <= ?
        ORDER BY n DESC, kind, stage, reason, pick
        """, [dataset, version, examples]).fetchall()
    groups: dict[tuple[str, str, str], dict] = {}
    for kind, stage, reason, n, _, row_id, score, data, lineage in rows:
        group = groups.setdefault((kind, stage, reason), {"kind": kind, "stage": stage, "reason": reason,
                                                          "count": n, "examples": []})
        group["examples"].append({**json.loads(data), **json.loads(lineage), "row_id": row_id,
                                  "_score": score})
    return list(groups.values())


def retriever_orders(warehouse: Warehouse, snapshot_ids: list[str]) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(snapshot_id, qid) -> retriever -> stored candidate docids in the retriever's order."""
    rows = warehouse.con.execute(
        "SELECT snapshot_id, qid, retriever, docid FROM candidates "
        "WHERE snapshot_id IN (SELECT unnest(?)) ORDER BY snapshot_id, qid, retriever, rank",
        [snapshot_ids]).fetchall()
    orders: dict[tuple[str, str], dict[str, list[str]]] = {}
    for sid, qid, retriever, docid in rows:
        orders.setdefault((sid, qid), {}).setdefault(retriever, []).append(docid)
    return orders


def call_totals(warehouse: Warehouse, dataset: str, version: int) -> list[dict]:
    """The recorded teacher calls behind the version's rows (accepted and rejected), by row
    kind and model: what its labels cost, whether or not this build made the calls."""
    rows = warehouse.con.execute(
        """
        WITH keys AS (
            SELECT DISTINCT kind, unnest(CAST(json_extract(lineage, '$.call_keys') AS VARCHAR[])) AS call_key
            FROM (SELECT kind, lineage FROM dataset_rows WHERE dataset = ? AND version = ?
                  UNION ALL
                  SELECT kind, lineage FROM rejections WHERE dataset = ? AND version = ?)
            WHERE json_extract(lineage, '$.call_keys') IS NOT NULL
        )
        SELECT k.kind, c.model, count(*), count(*) FILTER (WHERE c.status = 'ok'),
               sum(c.prompt_tokens), sum(c.completion_tokens), sum(c.latency_ms)
        FROM keys k JOIN teacher_calls c USING (call_key)
        GROUP BY k.kind, c.model ORDER BY k.kind, c.model
        """, [dataset, version, dataset, version]).fetchall()
    names = ("kind", "model", "calls", "ok", "prompt_tokens", "completion_tokens", "latency_ms")
    return [dict(zip(names, row)) for row in rows]


def load_passage_texts(warehouse: Warehouse, keys: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(snapshot_id, docid) -> (title, text) for just the passages asked for."""
    if not keys:
        return {}
    sids, docids = zip(*sorted(keys))
    rows = warehouse.con.execute(
        "SELECT p.snapshot_id, p.docid, p.title, p.text FROM passages p "
        "JOIN (SELECT unnest(?) AS snapshot_id, unnest(?) AS docid) k USING (snapshot_id, docid)",
        [list(sids), list(docids)]).fetchall()
    return {(sid, docid): (title, text) for sid, docid, title, text in rows}
