"""End to end on CISI and CACM: a build with both consistency filters (default parameters)
and 3 shuffled samples, ranked by a stub teacher that knows the qrels and orders equally
relevant passages the same way every time (tests/label_teacher.py), keeps >= 95% of the
clean rows of each collection; consensus rows reach the exports; the audit writes its
per-list table as HTML, Parquet and CSV."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from flows.report import write_audit
from tests.label_teacher import LabelTeacher, ingest_collections, judgments_from_warehouse, label_build_spec
from warehouse.audit import load_rejected_rows
from warehouse.db import Warehouse
from warehouse.exports import export_version
from warehouse.snapshots import load_qrels
from warehouse.versions import load_rows

COLLECTIONS = ("cisi", "cacm")
CHAIN = [{"name": "consistency_ndcg"}, {"name": "consistency_agreement"}]


@pytest.mark.slow
def test_consistency_filters_keep_clean_rows_and_consensus_and_audit_follow(prefect_harness, shared_data,
                                                                             tmp_path):
    from flows.build import build_flow

    warehouse_path = tmp_path / "wh.duckdb"
    snapshot_ids = ingest_collections(warehouse_path, shared_data, COLLECTIONS)
    with Warehouse.open(warehouse_path, read_only=True) as warehouse:
        judgments = judgments_from_warehouse(warehouse, snapshot_ids)
        qrels = {(sid, qid): grades for sid in snapshot_ids for qid, grades in load_qrels(warehouse, sid).items()}
    with LabelTeacher(judgments, ties="stable") as teacher:
        spec = label_build_spec(tmp_path, "stable", COLLECTIONS, teacher, "stub-stable", warehouse_path, CHAIN)
        summary = build_flow(str(spec))
    version = summary["version"]
    with Warehouse.open(warehouse_path, read_only=True) as warehouse:
        rows = load_rows(warehouse, "stable", version, "listwise")
        removed = [r for r in load_rejected_rows(warehouse, "stable", version, "listwise") if r["_stage"] != "validate"]
        sft = export_version(warehouse, "stable", version, "listwise", "reasonrank-sft", tmp_path / "sft")
    samples = [row for row in rows if not row.get("consensus")]
    consensus = [row for row in rows if row.get("consensus")]

    def clean(row: dict) -> bool:
        grades = qrels.get((row["snapshot_id"], row["qid"]), {})
        return any(grades.get(d, 0) > 0 for d in row["candidates"])

    for snapshot_id in snapshot_ids:
        kept = sum(clean(r) for r in samples if r["snapshot_id"] == snapshot_id)
        lost = sum(clean(r) for r in removed if r["snapshot_id"] == snapshot_id)
        assert kept > 100 and kept / (kept + lost) >= 0.95, (snapshot_id, kept, lost)

    # one consensus row per list with two or more kept samples, naming them
    kept_by_list: dict[str, set[str]] = {}
    for row in samples:
        kept_by_list.setdefault(row["list_id"], set()).add(row["row_id"])
    assert {row["list_id"] for row in consensus} == {k for k, ids in kept_by_list.items() if len(ids) >= 2}
    for row in consensus:
        assert set(row["consensus"]["sample_row_ids"]) == kept_by_list[row["list_id"]]
        assert row["consensus"]["agreement"] == pytest.approx(1.0)  # stable ties: identical samples
    # trainers get one example per list: its consensus row
    records = [json.loads(line) for line in sft[0].read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(
        [row["row_id"] for row in consensus]
        + [row["row_id"] for row in samples if len(kept_by_list[row["list_id"]]) == 1])

    report = write_audit(warehouse_path, "stable", version, tmp_path / "audit")
    table = pq.read_table(report.lists[0]).to_pylist()
    assert len(table) == len({row["list_id"] for row in rows} | {row["list_id"] for row in removed})
    assert {r["status"] for r in table} <= {"kept", "rejected", "no valid sample"}
    assert report.lists[1].read_text().startswith("list_id,snapshot_id,qid,query")
    page = report.html.read_text()
    assert 'id="per-list"' in page and 'class="sortable"' in page and "Position bias caveat" in page
    noisy = next(h for h in report.headline if h["figure"] == "noisy lists (estimated share)")
    assert float(noisy["value"]) <= 0.05 and "95% interval" in noisy["note"]
