"""End-to-end builds under one Prefect harness: embedded teacher, rerun, OpenAI-compatible path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from generators.listwise import REJECT_REASONS
from tests.conftest import LLAMA_ALIAS, REPO
from warehouse.db import Warehouse
from warehouse.versions import list_versions, load_rows

pytestmark = pytest.mark.slow

SECRET = "sk-synthrank-test-secret-0123456789"


def write_spec(folder: Path, source: Path, teacher: dict, dataset: str = "cisi-lw",
               constrained: bool = True) -> Path:
    spec = {
        "dataset": dataset,
        "output": str(folder / "out"),
        "sources": [{"name": "cisi", "domain": "library-science", "path": str(source), "queries": 3}],
        "candidates": {"method": "bm25", "k": 5},
        "listwise": {"window": 4, "passage_tokens": 40, "constrained": constrained},
        "teacher": teacher,
        "sampling": {"temperature": 0.3, "top_p": 0.9, "max_tokens": 160, "seed": 7},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def check_published_build(summary: dict) -> list[dict]:
    """The version exists, counts add up, permutations are valid, lineage is complete."""
    with Warehouse.open(summary["warehouse"], read_only=True) as wh:
        versions = list_versions(wh, summary["dataset"])
        rows = load_rows(wh, summary["dataset"], summary["version"], "listwise")
        reasons = [reason for (reason,) in wh.con.execute(
            "SELECT reason FROM rejections WHERE dataset = ? AND version = ? AND stage = 'validate'",
            [summary["dataset"], summary["version"]]).fetchall()]
        rejected = len(reasons)
        stored_keys = {k for (k,) in wh.con.execute("SELECT call_key FROM teacher_calls").fetchall()}
    assert [(v["version"], v["status"]) for v in versions][-1] == (summary["version"], "published")
    assert len(rows) + rejected == summary["attempted"]["listwise"] == 3
    assert len(rows) == summary["counts"]["listwise"]
    assert set(reasons) <= set(REJECT_REASONS)
    for row in rows:
        assert sorted(row["permutation"]) == list(range(1, len(row["initial_list"]) + 1))
        assert sorted(row["final_list"]) == sorted(row["initial_list"])
        assert row["teacher_model"] and row["prompt_name"] == "listwise_reasonrank"
        assert len(row["prompt_version"]) == 12 and row["sampling"]["seed"] == 7
        assert set(row["call_keys"]) <= stored_keys
    exported = pq.read_table(summary["outputs"][0]).to_pylist() if rows else []
    assert len(exported) == len(rows)
    return rows


def test_embedded_build_publishes_and_an_unchanged_rerun_builds_nothing(prefect_harness, shared_data, tmp_path):
    from flows.build import build_flow

    spec = write_spec(tmp_path, shared_data / "cisi", {"backend": "embedded", "n_ctx": 4096})
    first = build_flow(str(spec))
    assert first["teachers"][0]["calls_made"] == 3
    first_rows = check_published_build(first)

    second = build_flow(str(spec))
    assert (second["outcome"], second["version"]) == ("unchanged", first["version"])
    assert "teachers" not in second  # no stage ran
    assert check_published_build(first) == first_rows


def test_openai_backend_against_llama_cpp_server(prefect_harness, shared_data, llama_server_with_key,
                                                 tmp_path, monkeypatch, capfd):
    from flows.build import build_flow

    monkeypatch.setenv("SYNTHRANK_TEST_KEY", SECRET)
    spec = write_spec(tmp_path, shared_data / "cisi", {
        "backend": "openai", "base_url": llama_server_with_key, "model": LLAMA_ALIAS,
        "api_key_env": "SYNTHRANK_TEST_KEY", "max_in_flight": 2}, dataset="cisi-openai")
    summary = build_flow(str(spec))
    teacher = summary["teachers"][0]
    assert teacher["backend"] == "openai" and teacher["calls_failed"] == 0, teacher["errors"]
    check_published_build(summary)
    # The key went to the server (it refuses requests without it) and nowhere else.
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and not [p for p in written if SECRET.encode() in p.read_bytes()]
    assert SECRET not in json.dumps(summary)
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err


@pytest.fixture(scope="module")
def llama_server_with_key(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server on loopback that demands the test key."""
    from tests.conftest import free_port, wait_for_http
    from generators.teachers.embedded import embedded_model_path

    port = free_port()
    log = tmp_path_factory.mktemp("llama-key") / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()),
             "--model_alias", LLAMA_ALIAS, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "4096", "--api_key", SECRET],
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/docs", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_bad_spec_exits_nonzero_naming_the_field(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"dataset": "x", "sources": [{"name": "a", "domain": "d", "path": "."}],
                                    "teacher": {"backend": "embedded", "temprature": 1}}))
    result = run_cli("build", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown field 'teacher.temprature'" in result.stderr


def test_cli_missing_source_exits_nonzero(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"dataset": "x", "sources": [{"name": "a", "domain": "d",
                                                                 "path": "no/such/folder"}]}))
    result = run_cli("build", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and "sources[0].path: no/such/folder does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_ingest_bad_input_exits_nonzero_and_writes_nothing(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "q"}\n')
    result = run_cli("ingest", str(folder), "--name", "bad", "--domain", "d", "--warehouse",
                     str(tmp_path / "wh.duckdb"), cwd=tmp_path)
    assert result.returncode == 2 and "corpus.jsonl:2: duplicate passage id 'd1'" in result.stderr
    assert not (tmp_path / "wh.duckdb").exists()  # no empty warehouse left behind
