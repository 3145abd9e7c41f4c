"""The embedded teacher runs outside the build process: a crash or a hang of the model is a
failed call, the server is restarted (a bounded number of times), and nothing a build started
outlives it, however it ends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from generators.supervised import children_of, describe_exit, stop_all
from generators.teachers import Call, Sampling
from generators.teachers.embedded import EmbeddedBackend, embedded_model_path
from generators.teachers.llama_build import compiled_features, portability_problems
from tests.conftest import REPO
from warehouse.db import Warehouse

CRASHING_SERVER = "tests.crashing_model_server"


@pytest.fixture(autouse=True)
def fresh_model_servers():
    """Backends with the same settings share a server in a process: each test starts its own."""
    stop_all()
    yield
    stop_all()


def calls(n: int) -> list[Call]:
    return [Call.of("embedded", [{"role": "user", "content": f"Count to {i}."}],
                    Sampling(temperature=0.0, max_tokens=4)) for i in range(n)]


def answer_all(backend: EmbeddedBackend, batch: list[Call]) -> list:
    async def collect():
        return [completion async for _, completion in backend.run(batch)]

    return asyncio.run(collect())


def test_the_model_runs_in_a_guarded_child_not_in_this_process():
    backend = EmbeddedBackend(n_ctx=512)
    [completion] = answer_all(backend, calls(1))
    assert completion.ok and completion.completion_tokens > 0
    [server] = children_of(os.getpid())
    model = str(embedded_model_path())
    assert model in Path(f"/proc/{server}/maps").read_text(), "the guarded child holds the model"
    assert model not in Path("/proc/self/maps").read_text(), "the model must not load into this process"


def test_a_segfault_fails_the_call_in_flight_and_the_server_is_restarted(monkeypatch):
    monkeypatch.setenv("CRASH_AT_REQUEST", "2")  # every server process dies on its 2nd call
    backend = EmbeddedBackend(n_ctx=512, server_module=CRASHING_SERVER, max_restarts=3)
    completions = answer_all(backend, calls(5))
    assert [c.status for c in completions] == ["ok", "failed", "ok", "failed", "ok"]
    assert "embedded teacher crashed: signal 11 (SIGSEGV)" in completions[1].error
    assert "restarting (1 of 3)" in completions[1].error and "restarting (2 of 3)" in completions[3].error
    assert backend.restarts == 2


def test_restarts_are_bounded_and_later_calls_fail_without_a_server(monkeypatch):
    monkeypatch.setenv("CRASH_AT_REQUEST", "2")
    backend = EmbeddedBackend(n_ctx=512, server_module=CRASHING_SERVER, max_restarts=1)
    completions = answer_all(backend, calls(5))
    assert [c.status for c in completions] == ["ok", "failed", "ok", "failed", "failed"]
    assert "not restarted (max_restarts 1)" in completions[3].error
    assert completions[4].error.startswith("embedded teacher not restarted: it failed 2 times")


def test_a_hung_server_is_killed_and_the_next_call_gets_a_new_one(monkeypatch):
    monkeypatch.setenv("HANG_AT_REQUEST", "2")  # every server process stops answering at its 2nd call
    backend = EmbeddedBackend(n_ctx=512, server_module=CRASHING_SERVER, call_timeout_s=30)
    completions = answer_all(backend, calls(3))
    assert [c.status for c in completions] == ["ok", "failed", "ok"], [c.error for c in completions]
    assert "hung: no answer within 30 s; killed; restarting (1 of 3)" in completions[1].error


def test_exit_codes_are_named():
    assert describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert describe_exit(-9) == "signal 9 (SIGKILL, e.g. out of memory)"
    assert describe_exit(3) == "exit code 3"


def test_the_installed_llama_cpp_is_a_portable_build():
    """What `make install` compiled: AVX2, and none of the code paths only some CPUs run."""
    if list((REPO / ".venv").glob(".llama-*-native")):
        pytest.skip("this checkout chose a native llama.cpp build (make install LLAMA_BUILD=native)")
    features = compiled_features()
    assert features.get("AVX2") is True
    assert portability_problems(features) == []


def test_portability_problems_name_amx_and_missing_avx2():
    assert portability_problems({"AVX2": True, "AMX_INT8": True}) == ["AMX_INT8 code paths are compiled in"]
    assert portability_problems({"AVX2": False}) == ["AVX2 is not compiled in (slow)"]


def build_spec(folder: Path, source: Path, teacher: dict, queries: int) -> Path:
    spec = {"dataset": "crashy", "output": str(folder / "out"),
            "sources": [{"name": "cisi", "domain": "library-science", "path": str(source), "queries": queries}],
            "candidates": {"method": "bm25", "k": 4},
            "listwise": {"window": 4, "passage_tokens": 30, "constrained": True},
            "teacher": teacher, "sampling": {"temperature": 0.3, "max_tokens": 160, "seed": 1}}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_a_build_whose_model_crashes_publishes_the_rest_with_teacher_failed_rows(
        prefect_harness, shared_data, tmp_path, monkeypatch):
    from flows.build import run_build

    monkeypatch.setenv("CRASH_AT_REQUEST", "3")
    spec = build_spec(tmp_path, shared_data / "cisi",
                      {"backend": "embedded", "n_ctx": 1024, "embedded_server": CRASHING_SERVER}, queries=4)
    summary = run_build(str(spec))
    assert summary["outcome"] == "published"
    [teacher] = summary["teachers"]
    assert teacher["calls_made"] == 4 and teacher["calls_failed"] == 1
    assert any("signal 11 (SIGSEGV)" in error for error in teacher["errors"])
    with Warehouse.open(summary["warehouse"], read_only=True) as wh:
        reasons = [r for (r,) in wh.con.execute("SELECT reason FROM rejections WHERE dataset = 'crashy'").fetchall()]
    assert reasons.count("teacher_failed") == 1


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_build_until_teacher_runs(tmp_path: Path, source: Path) -> tuple[subprocess.Popen, set[int]]:
    """A real `synthrank build` in a subprocess (no Prefect API configured, so it starts its
    own server), run until its model server is up; returns it and what it started."""
    spec = build_spec(tmp_path, source, {"backend": "embedded", "n_ctx": 1024}, queries=40)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    build = subprocess.Popen([sys.executable, "-m", "flows.cli", "build", str(spec)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(children_of(build.pid)) < 2:
        assert build.poll() is None, "the build ended before its teacher started"
        time.sleep(0.5)
    started = descendants(build.pid)
    assert len(children_of(build.pid)) >= 2, "expected the Prefect server and the model server"
    return build, started


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_nothing_a_build_started_outlives_it(shared_data, tmp_path, how):
    build, started = start_build_until_teacher_runs(tmp_path, shared_data / "cisi")
    os.kill(build.pid, how)
    build.wait(timeout=60)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in started):
        time.sleep(0.2)
    assert not [pid for pid in started if alive(pid)], f"left running after {how.name}"


def test_doctor_reports_this_machine_and_fails_on_a_broken_warehouse(tmp_path):
    not_a_database = tmp_path / "notes.duckdb"
    not_a_database.write_text("this is not a DuckDB file\n")
    result = subprocess.run([sys.executable, "-m", "flows.cli", "doctor", "-w", str(not_a_database)],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "ok" in lines["embedded teacher"] and "tokens/s" in lines["embedded teacher"]
    assert "ok" in lines["llama.cpp build"] and "portable" in lines["llama.cpp build"]
    assert "ok" in lines["embedder (offline)"]
    assert "fail" in lines["warehouse"]
    has_avx2 = "avx2" in Path("/proc/cpuinfo").read_text()
    assert ("avx2" in lines["cpu"]) == has_avx2
