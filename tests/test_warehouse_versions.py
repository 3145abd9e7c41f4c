"""Versions: manifests, immutability, failed and interrupted builds, per-row lineage."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from filters.base import Verdict
from tests.conftest import REPO
from tests.warehouse_support import listwise_row, publish
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.exports import export_version
from warehouse.versions import (add_rejections, add_rows, begin_version, code_version, fail_version,
                                list_versions, load_rows, publish_version, resolve_version, row_record,
                                spec_hash, verify_version, version_info)


@pytest.fixture
def wh(tmp_path):
    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        yield warehouse


def test_manifest_records_how_the_version_was_made(wh):
    rows = [listwise_row(i) for i in range(4)]
    rejected = [(listwise_row(9), "validate", "wrong_format", None), (listwise_row(8), "dedup", "near_duplicate", 0.93)]
    spec = {"dataset": "ds", "seed": 3}
    first = publish(wh, "ds", rows, rejected, spec=spec)
    second = publish(wh, "ds", rows[:2])

    info = version_info(wh, "ds", first)
    manifest = info["manifest"]
    assert info["status"] == "published" and info["parent_version"] is None
    assert info["spec"] == spec and info["spec_hash"] == spec_hash(spec)
    assert info["code_version"] == code_version() and info["code_version"].startswith("0.")
    assert list(info["snapshot_ids"]) == ["snap-1"]
    assert manifest["counts"] == {"listwise": 4}
    assert manifest["rejections"] == {"listwise/dedup:near_duplicate": 1, "listwise/validate:wrong_format": 1}
    # The calls behind accepted and rejected rows: 6 calls of 100 + 20 tokens each.
    assert manifest["tokens"] == {"calls": 6, "prompt": 600, "completion": 120}
    assert set(manifest["content"]) == {"listwise"}
    assert version_info(wh, "ds", second)["parent_version"] == first
    assert manifest["content"] != version_info(wh, "ds", second)["manifest"]["content"]


def test_published_counts_come_from_the_rows_themselves(wh):
    version = begin_version(wh, "ds", {"dataset": "ds"}, ["snap-1"])
    add_rows(wh, "ds", version, "listwise", [listwise_row(1), listwise_row(2)])
    publish_version(wh, "ds", version, {"counts": {"listwise": 99, "pointwise": 0}, "teachers": []})
    manifest = version_info(wh, "ds", version)["manifest"]
    assert manifest["counts"] == {"listwise": 2, "pointwise": 0} and manifest["teachers"] == []
    assert manifest["rejections"] == {} and manifest["tokens"] == {"calls": 0, "prompt": 0, "completion": 0}


def test_a_published_version_never_changes(wh, tmp_path):
    version = publish(wh, "ds", [listwise_row(i) for i in range(3)])
    before = load_rows(wh, "ds", version, "listwise")

    with pytest.raises(InputError, match=r"ds@1 is published; only a building version"):
        add_rows(wh, "ds", version, "listwise", [listwise_row(7)])
    with pytest.raises(InputError, match="is published"):
        add_rejections(wh, "ds", version, "listwise", [(listwise_row(8), "validate", "wrong_format", None)])
    with pytest.raises(InputError, match="is published"):
        publish_version(wh, "ds", version, {"counts": {"listwise": 99}})
    fail_version(wh, "ds", version, "late failure")  # must not touch a published version

    assert version_info(wh, "ds", version)["status"] == "published"
    assert load_rows(wh, "ds", version, "listwise") == before
    verify_version(wh, "ds", version)

    # A change made behind synthrank's back is caught before anything is exported.
    wh.con.execute("UPDATE dataset_rows SET data = json_object('row_id', row_id) WHERE row_id = ?",
                   [before[0]["row_id"]])
    with pytest.raises(InputError, match="no longer match the fingerprints"):
        verify_version(wh, "ds", version)
    with pytest.raises(InputError, match="no longer match"):
        export_version(wh, "ds", version, "listwise", "parquet", tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_a_failed_build_leaves_no_rows(wh):
    published = publish(wh, "ds", [listwise_row(0)])
    version = begin_version(wh, "ds", {"dataset": "ds"}, ["snap-1"])
    add_rows(wh, "ds", version, "listwise", [listwise_row(i, "new") for i in range(5)])
    add_rejections(wh, "ds", version, "listwise", [(listwise_row(9), "validate", "truncated", None)])
    fail_version(wh, "ds", version, "RuntimeError: teacher down")

    info = version_info(wh, "ds", version)
    assert info["status"] == "failed" and info["manifest"] == {"error": "RuntimeError: teacher down"}
    for table in ("dataset_rows", "rejections"):
        assert wh.fetch_one(f"SELECT count(*) FROM {table} WHERE version = ?", [version])[0] == 0
    assert resolve_version(wh, "ds") == published
    with pytest.raises(InputError, match="ds@2 is failed, not published"):
        resolve_version(wh, "ds", version)


def test_an_interrupted_build_is_invisible_and_cleaned_by_the_next(tmp_path):
    path = tmp_path / "wh.duckdb"
    with Warehouse.open(path) as wh:
        published = publish(wh, "ds", [listwise_row(0)])
        staged = begin_version(wh, "ds", {"dataset": "ds"}, ["snap-1"])
        add_rows(wh, "ds", staged, "listwise", [listwise_row(i, "x") for i in range(3)])
    # The process "died" here: rows staged, never published.
    with Warehouse.open(path, read_only=True) as wh:
        assert resolve_version(wh, "ds") == published
        assert [v["status"] for v in list_versions(wh, "ds")] == ["published", "building"]
    with Warehouse.open(path) as wh:
        following = begin_version(wh, "ds", {"dataset": "ds"}, ["snap-1"])
        assert following == staged + 1
        assert version_info(wh, "ds", following)["parent_version"] == published
        assert version_info(wh, "ds", staged)["status"] == "failed"
        assert wh.fetch_one("SELECT count(*) FROM dataset_rows WHERE version = ?", [staged])[0] == 0


def test_row_record_gives_lineage_verdicts_and_teacher_calls(wh):
    kept = {**listwise_row(1), "filter_verdicts": {"consistency": Verdict(True, None, 0.8)}}
    dropped = listwise_row(2)
    version = publish(wh, "ds", [kept, listwise_row(3)], [(dropped, "consistency", "low_ndcg", 0.21)])

    [record] = row_record(wh, "ds", version, kept["row_id"][:8])
    assert record["status"] == "accepted" and record["kind"] == "listwise"
    lineage = record["lineage"]
    assert lineage["teacher_model"] == "fake-teacher" and lineage["prompt_version"] == "0123456789ab"
    assert lineage["sampling"]["seed"] == 7 and lineage["call_keys"] == kept["call_keys"]
    assert lineage["filter_verdicts"] == {"consistency": {"keep": True, "reason": None, "score": 0.8}}
    [call] = record["calls"]
    assert call["call_key"] == kept["call_keys"][0]
    assert call["request"]["messages"][1]["content"].startswith("query 1")
    assert call["reasoning"] == kept["reasoning"] and call["content"] == kept["answer"]

    [rejected] = row_record(wh, "ds", version, dropped["row_id"])
    assert rejected["status"] == "rejected" and rejected["rejections"] == [("consistency", "low_ndcg", 0.21)]
    assert rejected["lineage"]["filter_verdicts"]["consistency"] == {"keep": False, "reason": "low_ndcg",
                                                                     "score": 0.21}
    assert row_record(wh, "ds", version, "zzzz") == []
    with pytest.raises(InputError, match="matches 3 rows"):
        row_record(wh, "ds", version, "")


def test_cli_show_row_prints_lineage_and_the_teacher_call(tmp_path):
    path = tmp_path / "wh.duckdb"
    row = listwise_row(5)
    with Warehouse.open(path) as wh:
        publish(wh, "ds", [row, listwise_row(6)])
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    shown = subprocess.run([sys.executable, "-m", "flows.cli", "show", "ds@1", "--row", row["row_id"],
                            "-w", str(path)], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for expected in (f"row {row['row_id']}", "teacher_model: fake-teacher", "prompt_version: 0123456789ab",
                     f"teacher call {row['call_keys'][0][:16]}", "user: query 5",
                     f"reasoning: {row['reasoning']}", f"answer: {row['answer']}"):
        assert expected in shown.stdout, (expected, shown.stdout)
    missing = subprocess.run([sys.executable, "-m", "flows.cli", "show", "ds@1", "--row", "nope", "-w", str(path)],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2 and "no row 'nope' in ds@1" in missing.stderr
    assert "Traceback" not in missing.stderr
