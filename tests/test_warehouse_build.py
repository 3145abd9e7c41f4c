"""One real build (Prefect flow, OpenAI-compatible fake teacher): what the version's manifest,
its rows' lineage and its published exports record."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from flows.spec import load_spec
from warehouse.db import Warehouse
from warehouse.exports import INDEX_NAME, read_manifest, verify_export
from warehouse.versions import load_rows, row_record, spec_hash, verify_version, version_info

pytestmark = pytest.mark.slow


def test_build_records_manifest_lineage_and_published_exports(prefect_harness, tmp_path):
    from flows.build import build_flow

    with FakeTeacher(mode="random", model="fake-ranker") as teacher:
        spec_path = tmp_path / "spec.yaml"
        spec_path.write_text(yaml.safe_dump({
            "dataset": "wh-demo", "output": str(tmp_path / "out"),
            "sources": [{"name": "demo-medicine", "domain": "medicine",
                         "path": str(REPO / "examples/demo/medicine"), "queries": 3}],
            "candidates": {"k": 4}, "listwise": {"window": 4, "passage_tokens": 20},
            "teacher": {"backend": "openai", "base_url": teacher.base_url, "model": "fake-ranker"},
            "sampling": {"temperature": 0.7, "max_tokens": 64, "seed": 5},
            "pricing": {"prompt_usd_per_mtok": 2.0, "completion_usd_per_mtok": 10.0},
        }))
        summary = build_flow(str(spec_path))
    assert summary["outcome"] == "published" and summary["version"] == 1

    cost = summary["cost"]
    assert cost["calls_made"] == 3 and cost["prompt_tokens"] > 0
    assert cost["usd"] == pytest.approx((cost["prompt_tokens"] * 2 + cost["completion_tokens"] * 10) / 1e6)

    with Warehouse.open(summary["warehouse"], read_only=True) as wh:
        info = version_info(wh, "wh-demo", 1)
        rows = load_rows(wh, "wh-demo", 1, "listwise")
        [record] = row_record(wh, "wh-demo", 1, rows[0]["row_id"])
        verify_version(wh, "wh-demo", 1)
    manifest = info["manifest"]
    assert info["spec_hash"] == spec_hash(load_spec(spec_path).model_dump(mode="json"))
    assert info["code_version"].startswith("0.") and len(info["snapshot_ids"]) == 1
    assert manifest["counts"] == {"listwise": len(rows)} == {"listwise": 3}
    assert manifest["tokens"]["calls"] == 3
    assert manifest["tokens"]["prompt"] == cost["prompt_tokens"]  # every call behind a row was made now
    assert set(manifest["timings"]["stage_seconds"]) == {"listwise"}
    assert manifest["teachers"][0]["model"] == "fake-ranker"

    assert record["lineage"]["teacher_model"] == "fake-ranker" and record["lineage"]["sampling"]["seed"] == 5
    [call] = record["calls"]
    assert rows[0]["query"] in json.dumps(call["request"]["messages"], ensure_ascii=False)
    assert call["status"] == "ok" and call["content"] and "<answer>" in call["content"]

    dataset_dir = tmp_path / "out" / "wh-demo"
    assert summary["outputs"] == [str(dataset_dir / "v1" / name) for name in ("listwise.parquet", "README.md")]
    assert verify_export(dataset_dir / "v1") == []
    exported = read_manifest(dataset_dir / "v1")
    assert exported["build"]["content"] == manifest["content"]
    assert exported["lineage"]["listwise"]["teachers"] == [{"backend": "openai", "model": "fake-ranker", "rows": 3}]
    index = json.loads((dataset_dir / INDEX_NAME).read_text())
    assert [v["version"] for v in index["versions"]] == [1]
