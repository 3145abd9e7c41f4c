"""Exports: manifests whose hashes match the files, byte-identical re-exports, the published
layout readers fall back to, and clear errors from --push-to-hub without a token or network."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, free_port
from tests.warehouse_support import listwise_row, publish
from warehouse.db import Warehouse
from warehouse.errors import InputError, SynthrankError
from warehouse.exported import ExportedVersions
from warehouse.exports import (INDEX_NAME, MANIFEST_NAME, export_version, publish_exports, push_to_hub,
                               read_manifest, verify_export)
from warehouse.formats.registry import write_parquet
from warehouse.versions import load_rows

FORMATS = ("parquet", "jsonl", "hf")


@pytest.fixture
def warehouse_path(tmp_path):
    path = tmp_path / "wh.duckdb"
    rows = [listwise_row(i) for i in range(12)]
    rows[0]["reasoning"] = "ünïcode 한국어 [1] > [2]"
    rows[1]["filter_verdicts"] = {"injection": {"keep": True, "reason": "instruction_like", "score": 0.9}}
    with Warehouse.open(path) as wh:
        publish(wh, "ds", rows, [(listwise_row(40), "validate", "missing_ids", None)])
        publish(wh, "ds", rows[:5])
    return path


def verdict_list(verdicts: dict | None) -> list[dict] | None:
    """Filter verdicts as the typed exports hold them: a list of {filter, keep, reason, score}."""
    return None if verdicts is None else [{"filter": name, **v} for name, v in sorted(verdicts.items())]


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_exports_are_byte_identical_and_manifests_match_the_files(warehouse_path, tmp_path):
    with Warehouse.open(warehouse_path) as wh:
        rows = load_rows(wh, "ds", 1, "listwise")
        for attempt in ("a", "b"):
            for fmt in FORMATS:
                export_version(wh, "ds", 1, "listwise", fmt, tmp_path / attempt)
        export_version(wh, "ds", 1, "listwise", "parquet", tmp_path / "a")  # again, into the same folder

    first, second = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert first == second
    manifest = read_manifest(tmp_path / "a")
    assert (manifest["dataset"], manifest["version"], manifest["formats"]) == ("ds", 1, list(FORMATS[::-1]))
    assert set(manifest["files"]) == set(first) - {MANIFEST_NAME}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256(first[name]).hexdigest() and entry["bytes"] == len(first[name])
    assert [(e["format"], e["rows"]) for e in manifest["exports"]] == [("hf", 12), ("jsonl", 12), ("parquet", 12)]
    assert manifest["build"]["counts"] == {"listwise": 12}
    assert manifest["build"]["rejections"] == {"listwise/validate:missing_ids": 1}
    lineage = manifest["lineage"]["listwise"]
    assert lineage["teachers"] == [{"backend": "openai", "model": "fake-teacher", "rows": 12}]
    assert lineage["prompts"] == {"listwise_reasonrank@0123456789ab": 12}
    assert lineage["teacher_calls"] == 12 and lineage["filter_flags"] == {"injection:instruction_like": 1}
    assert verify_export(tmp_path / "a") == []

    # Every format gives back the rows, in row_id order.
    assert pq.read_table(tmp_path / "a" / "listwise.parquet").to_pylist() == \
        [{**row, "filter_verdicts": verdict_list(row.get("filter_verdicts"))} for row in rows]
    lines = (tmp_path / "a" / "listwise.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert all(list(json.loads(line)) == sorted(json.loads(line)) for line in lines)
    assert datasets.load_from_disk(str(tmp_path / "a" / "listwise_hf"))["row_id"] == [r["row_id"] for r in rows]


def test_another_process_exports_the_same_bytes(warehouse_path, tmp_path):
    with Warehouse.open(warehouse_path, read_only=True) as wh:
        for fmt in ("parquet", "hf"):
            export_version(wh, "ds", 1, "listwise", fmt, tmp_path / "here")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for fmt in ("parquet", "hf"):
        result = subprocess.run([sys.executable, "-m", "flows.cli", "export", "ds@1", "--format", fmt, "--out",
                                 str(tmp_path / "there"), "-w", str(warehouse_path), "--no-audit"],
                                capture_output=True, text=True, env=env, timeout=180)
        assert result.returncode == 0, result.stderr
    assert "manifest.json" in result.stdout
    assert tree(tmp_path / "here") == tree(tmp_path / "there")


def test_a_changed_file_is_reported_and_folders_hold_one_version(warehouse_path, tmp_path):
    with Warehouse.open(warehouse_path) as wh:
        export_version(wh, "ds", 1, "listwise", "jsonl", tmp_path / "x")
        with pytest.raises(InputError, match=r"holds an export of ds@1 .* export ds@2 to another folder"):
            export_version(wh, "ds", 2, "listwise", "jsonl", tmp_path / "x")
        with pytest.raises(InputError, match="no export format 'nope' for kind 'listwise'"):
            export_version(wh, "ds", 1, "listwise", "nope", tmp_path / "y")
    path = tmp_path / "x" / "listwise.jsonl"
    path.write_text(path.read_text().replace("query 3", "query 4"))
    assert verify_export(tmp_path / "x") == ["listwise.jsonl: sha256 differs from the manifest"]
    path.unlink()
    assert verify_export(tmp_path / "x") == ["listwise.jsonl: missing"]


def test_published_exports_are_what_readers_fall_back_to(warehouse_path, tmp_path):
    out = tmp_path / "out"
    with Warehouse.open(warehouse_path) as wh:
        paths = [publish_exports(wh, "ds", v, ["listwise"], out / "ds") for v in (1, 2)]
        rows = {v: load_rows(wh, "ds", v, "listwise") for v in (1, 2)}
    assert paths == [[out / "ds" / f"v{v}" / name for name in ("listwise.parquet", "README.md")] for v in (1, 2)]
    assert sorted(p.name for p in (out / "ds").iterdir()) == ["v1", "v2", INDEX_NAME]  # nothing partial left
    index = json.loads((out / "ds" / INDEX_NAME).read_text())
    assert [(v["version"], v["parent_version"], v["manifest"]["counts"]) for v in index["versions"]] == \
        [(1, None, {"listwise": 12}), (2, 1, {"listwise": 5})]

    reader = ExportedVersions(out)
    assert [(v["dataset"], v["version"], v["status"]) for v in reader.list_versions()] == \
        [("ds", 1, "published"), ("ds", 2, "published")]
    assert reader.resolve_version("ds") == 2 and reader.kinds("ds", 1) == ["listwise"]
    for version in (1, 2):
        exported = reader.load_rows("ds", version, "listwise")
        assert [r["row_id"] for r in exported] == [r["row_id"] for r in rows[version]]
        assert exported[0]["final_list"] == rows[version][0]["final_list"]
        assert exported[0]["sampling"] == rows[version][0]["sampling"]
    with pytest.raises(InputError, match=r"ds@3 is not a published version in the exports"):
        reader.resolve_version("ds", 3)


def test_generic_parquet_writer_keeps_awkward_fields(tmp_path):
    rows = [{"row_id": "a", "empty": {}, "mixed": 1}, {"row_id": "b", "empty": {}, "mixed": "x"}]
    path = write_parquet(rows, tmp_path / "awkward.parquet")
    assert pq.read_table(path).to_pylist() == [{"row_id": "a", "empty": "{}", "mixed": "1"},
                                               {"row_id": "b", "empty": "{}", "mixed": '"x"'}]
    assert [p.name for p in tmp_path.iterdir()] == ["awkward.parquet"]  # no partial file left


def test_push_to_hub_offline_is_a_clear_error(warehouse_path, tmp_path):
    with Warehouse.open(warehouse_path, read_only=True) as wh:
        export_version(wh, "ds", 1, "listwise", "hf", tmp_path / "x")
    with pytest.raises(SynthrankError, match="HF_HUB_OFFLINE is set"):  # conftest runs offline
        push_to_hub(tmp_path / "x", "listwise", "hf", "someone/ds")


@pytest.mark.parametrize("token", [None, "hf_not_a_real_token"])
def test_cli_push_to_hub_without_token_or_network_exits_2(warehouse_path, tmp_path, token):
    hub_home = tmp_path / "hf-home"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(PYTHONPATH=str(REPO), HF_HOME=str(hub_home), HF_HUB_OFFLINE="0",
               HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    if token:
        env["HF_TOKEN"] = token
    result = subprocess.run([sys.executable, "-m", "flows.cli", "export", "ds@1", "--format", "parquet", "--out",
                             str(tmp_path / "x"), "--push-to-hub", "someone/ds", "-w", str(warehouse_path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    expected = "needs a Hugging Face token" if token is None else "--push-to-hub someone/ds failed"
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert token is None or token not in result.stderr + result.stdout
    assert verify_export(tmp_path / "x") == []  # the export on disk is complete
