"""Whole builds against the fake teacher: faults injected on the wire change no row, and a
build killed with SIGKILL resumes to the rows of an uninterrupted one without asking again
for any stored answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from tests.teachers_data import write_scored_beir, write_spec
from warehouse.db import Warehouse
from warehouse.versions import list_versions, load_rows

pytestmark = pytest.mark.slow

SECRET = "sk-teachers-flow-0123456789abcdef"


def published_rows(warehouse_path: Path, dataset: str) -> tuple[list[dict], dict]:
    """The latest published version's listwise rows (by row id) and its manifest."""
    with Warehouse.open(warehouse_path, read_only=True) as warehouse:
        version = [v for v in list_versions(warehouse, dataset) if v["status"] == "published"][-1]
        rows = load_rows(warehouse, dataset, version["version"], "listwise")
    return sorted(rows, key=lambda row: row["row_id"]), version["manifest"]


def test_faults_on_the_wire_change_no_row(prefect_harness, tmp_path, monkeypatch, capfd):
    from flows.build import build_flow

    source = write_scored_beir(tmp_path / "source", queries=16)
    monkeypatch.setenv("TEACHERS_FLOW_KEY", SECRET)
    # seed 4: a hang, 5xx and a garbage body come within the first 14 fault draws
    with FakeTeacher(latency_ms=20, capacity=4, api_key=SECRET, seed=4, hang_s=5) as teacher:
        settings = {"base_url": teacher.base_url, "api_key_env": "TEACHERS_FLOW_KEY", "max_in_flight": 4,
                    "timeout_s": 1, "max_retries": 12, "retry_backoff_s": 0.05}
        clean = build_flow(str(write_spec(tmp_path / "clean", source, settings)))
        teacher.set_faults(p_5xx=0.2, p_hang=0.05, p_garbage=0.05, burst_429_every=10, burst_429_len=2)
        teacher.reset_stats()
        faulty = build_flow(str(write_spec(tmp_path / "faulty", source, settings)))
        faults = teacher.stats()
    assert min(faults[k] for k in ("fault_5xx", "fault_hang", "fault_garbage", "fault_429")) > 0, faults
    [teacher_run] = faulty["teachers"]
    assert (teacher_run["calls_made"], teacher_run["calls_failed"]) == (16, 0), teacher_run["errors"]
    assert teacher_run["prompt_tokens"] > 0 and teacher_run["completion_tokens"] > 0
    clean_rows, _ = published_rows(Path(clean["warehouse"]), "teachers")
    faulty_rows, manifest = published_rows(Path(faulty["warehouse"]), "teachers")
    assert len(clean_rows) == faulty["counts"]["listwise"] == 16
    assert faulty_rows == clean_rows
    assert manifest["teachers"][0]["completion_tokens"] == teacher_run["completion_tokens"]
    # The key reached the server (it refuses requests without it) and nothing we wrote.
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "source" not in p.parts]
    assert written and not [p for p in written if SECRET.encode() in p.read_bytes()]
    captured = capfd.readouterr()
    assert SECRET not in json.dumps(faulty) + captured.out + captured.err


# --------------------------------------------------------------------- kill and resume

TOTAL_CALLS = 30


class StubProcess:
    """The fake teacher as a subprocess (so it outlives nothing of ours and shares no GIL)."""

    def __init__(self, latency_ms: int, capacity: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_teacher", "--port", "0", "--latency-ms", str(latency_ms),
             "--capacity", str(capacity)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        ready = self.process.stdout.readline().split()
        assert ready[:1] == ["READY"], ready
        self.root = f"http://127.0.0.1:{ready[1]}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.root}/stats", timeout=5) as response:
            return json.load(response)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.root}/stats/reset", method="POST"), timeout=5).close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_build(spec: Path, api_url: str) -> subprocess.Popen:
    """``python -m flows.cli build SPEC`` in its own process group, on the harness's Prefect server."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": api_url}
    return subprocess.Popen([sys.executable, "-m", "flows.cli", "build", str(spec)], cwd=spec.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_after_answers(build: subprocess.Popen, stub: StubProcess, answers: int) -> None:
    """SIGKILL the build (its whole group) once the teacher has sent ``answers`` answers."""
    deadline = time.monotonic() + 120
    while stub.stats()["ok"] < answers:
        assert build.poll() is None, build.communicate()
        assert time.monotonic() < deadline, "the build made no progress"
        time.sleep(0.01)
    os.killpg(build.pid, signal.SIGKILL)
    build.wait(timeout=30)


def stored_answers(warehouse_path: Path) -> int:
    with Warehouse.open(warehouse_path, read_only=True) as warehouse:
        return warehouse.fetch_one("SELECT count(*) FROM teacher_calls WHERE status = 'ok'")[0]


def test_a_build_killed_mid_run_resumes_to_the_same_rows(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    source = write_scored_beir(tmp_path / "source", queries=TOTAL_CALLS)
    stub = StubProcess(latency_ms=100, capacity=2)
    try:
        settings = {"base_url": stub.root + "/v1", "max_in_flight": 2}
        reference = write_spec(tmp_path / "reference", source, settings)
        resumed = write_spec(tmp_path / "resumed", source, settings)
        done = start_build(reference, api_url)
        assert done.wait(timeout=300) == 0, done.communicate()
        expected, _ = published_rows(reference.parent / "out" / "synthrank.duckdb", "teachers")
        assert len(expected) == TOTAL_CALLS
        warehouse = resumed.parent / "out" / "synthrank.duckdb"

        stored = 0
        for kill_at in (5, 9):  # answers the teacher sends before each kill
            stub.reset()
            kill_after_answers(start_build(resumed, api_url), stub, kill_at)
            now_stored = stored_answers(warehouse)
            assert stored < now_stored < TOTAL_CALLS  # progress kept, the build not finished
            assert stub.stats()["received"] <= TOTAL_CALLS - stored  # nothing stored asked again
            stored = now_stored

        stub.reset()
        final = start_build(resumed, api_url)
        assert final.wait(timeout=300) == 0, final.communicate()
        assert stub.stats()["received"] == TOTAL_CALLS - stored  # exactly the calls with no stored answer
    finally:
        stub.stop()
    rows, manifest = published_rows(warehouse, "teachers")
    [teacher] = manifest["teachers"]
    assert (teacher["calls_made"], teacher["calls_reused"]) == (TOTAL_CALLS - stored, stored)
    assert rows == expected  # none lost, none duplicated, the same content
    with Warehouse.open(warehouse, read_only=True) as wh:
        assert wh.fetch_one("SELECT count(*), count(DISTINCT call_key) FROM teacher_calls") == (TOTAL_CALLS,) * 2
        statuses = dict(wh.con.execute("SELECT status, count(*) FROM dataset_versions GROUP BY status").fetchall())
    assert statuses.get("published") == 1  # the killed builds left no published version
