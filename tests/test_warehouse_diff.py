"""Diffs between versions: what was added, removed and changed is exactly what the builds changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.warehouse_support import listwise_row, publish
from warehouse.db import Warehouse
from warehouse.diff import diff_rows, diff_versions
from warehouse.exported import ExportedVersions, WarehouseVersions
from warehouse.exports import publish_exports


@pytest.fixture
def two_versions(tmp_path):
    """v1: rows 0..19. v2, "built with a changed spec": rows 0-1 gone, row 2 rejected, rows 3-7
    re-ranked, rows 8-9 with new filter verdicts only, rows 20-22 new (20 had been rejected in
    v1), the rest identical."""
    path = tmp_path / "wh.duckdb"
    first = [listwise_row(i) for i in range(20)]
    second = ([listwise_row(i, "reranked") for i in range(3, 8)]
              + [{**listwise_row(i), "filter_verdicts": {"consistency": {"keep": True, "reason": "flag", "score": 0.5}}}
                 for i in (8, 9)]
              + [listwise_row(i) for i in range(10, 23)])
    with Warehouse.open(path) as wh:
        publish(wh, "ds", first, [(listwise_row(20, "bad"), "validate", "wrong_format", None)],
                spec={"dataset": "ds", "sampling": {"seed": 1}})
        publish(wh, "ds", second, [(listwise_row(2), "consistency", "low_ndcg", 0.1)],
                spec={"dataset": "ds", "sampling": {"seed": 2}})
    expected = {
        "added": sorted(listwise_row(i)["row_id"] for i in (20, 21, 22)),
        "removed": sorted(listwise_row(i)["row_id"] for i in (0, 1, 2)),
        "label_changed": sorted(listwise_row(i)["row_id"] for i in range(3, 8)
                                if listwise_row(i, "reranked")["final_list"] != listwise_row(i)["final_list"]),
        "verdict_changed": sorted(listwise_row(i)["row_id"] for i in (8, 9)),
    }
    expected["changed"] = sorted(listwise_row(i)["row_id"] for i in range(3, 10))
    return path, expected


def test_diff_matches_the_rows_changed(two_versions):
    path, expected = two_versions
    assert len(expected["label_changed"]) >= 3  # the reranking really changed most lists
    with Warehouse.open(path, read_only=True) as wh:
        result = diff_versions(WarehouseVersions(wh), "ds", 1, 2, examples=2)
    [kind] = result.kinds
    assert (kind.kind, kind.rows_a, kind.rows_b) == ("listwise", 20, 20)
    for name, ids in expected.items():
        assert getattr(kind, name) == ids, name
    assert kind.now_rejected == [listwise_row(2)["row_id"]]
    assert kind.now_accepted == [listwise_row(20)["row_id"]]
    assert kind.unchanged == 10
    assert kind.fields_changed["filter_verdicts"] == 2
    assert kind.fields_changed["call_keys"] == 5 and "query" not in kind.fields_changed
    sorts = [e["change"] for e in kind.examples]
    assert sorts == ["added", "added", "removed", "removed", "label", "label", "other", "other"]
    removed = next(e for e in kind.examples if e["row_id"] == listwise_row(2)["row_id"])
    assert removed["after"] == "rejected (consistency:low_ndcg)"
    label = next(e for e in kind.examples if e["change"] == "label")
    assert set(label["fields"]) <= {"final_list", "permutation"} and label["fields"]["final_list"]["a"] != \
        label["fields"]["final_list"]["b"]


def test_diff_reads_the_exports_the_same_way(two_versions, tmp_path):
    path, expected = two_versions
    with Warehouse.open(path) as wh:
        for version in (1, 2):
            publish_exports(wh, "ds", version, ["listwise"], tmp_path / "out" / "ds")
    result = diff_versions(ExportedVersions(tmp_path / "out"), "ds", 1, 2)
    [kind] = result.kinds
    for name, ids in expected.items():
        assert getattr(kind, name) == ids, name
    assert kind.now_rejected == []  # rejected rows are not exported


def test_label_fields_default_to_every_data_field_for_other_kinds():
    base = {"row_id": "r1", "qid": "q", "score": 3, "call_keys": ["a"]}
    relabeled = diff_rows("pointwise", {"r1": base}, {"r1": {**base, "score": 7}})
    rerun = diff_rows("pointwise", {"r1": base}, {"r1": {**base, "call_keys": ["b"]}})
    assert relabeled.label_changed == ["r1"] and relabeled.examples[0]["fields"]["score"] == {"a": 3, "b": 7}
    assert rerun.changed == ["r1"] and rerun.label_changed == []


def test_cli_diff(two_versions):
    path, expected = two_versions
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160"}
    as_json = subprocess.run([sys.executable, "-m", "flows.cli", "diff", "ds@1", "ds@2", "--json", "-w", str(path)],
                             capture_output=True, text=True, env=env, timeout=120)
    assert as_json.returncode == 0, as_json.stderr
    [kind] = json.loads(as_json.stdout)["kinds"]
    assert {name: kind[name] for name in expected} == {name: len(ids) for name, ids in expected.items()}
    text = subprocess.run([sys.executable, "-m", "flows.cli", "diff", "ds@1", "@2", "-w", str(path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "ds@1 → @2" in text.stdout and "removed " + listwise_row(2)["row_id"] in text.stdout
    assert "1 removed rows were rejected in @2" in text.stdout
    wrong = subprocess.run([sys.executable, "-m", "flows.cli", "diff", "ds@1", "ds@7", "-w", str(path)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert wrong.returncode == 2 and "ds@7 is not a version, not published" in wrong.stderr
