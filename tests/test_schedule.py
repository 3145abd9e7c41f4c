"""Scheduled builds against a real `prefect server start` on loopback (SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, free_port, wait_for_http
from tests.fake_teacher import FakeTeacher
from warehouse.db import Warehouse
from warehouse.runs import list_runs
from warehouse.versions import list_versions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server on loopback with its own SQLite database; yields its env."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
           "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    with (home / "server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port), "--no-ui"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", server, timeout_s=240)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=60)


def prefect_client_call(env: dict, code: str, timeout: float = 600) -> dict:
    """Run a snippet that prints one JSON line, in a process pointed at the test server."""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_deployment(env: dict, name: str) -> dict:
    code = f"""
import asyncio, json
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as client:
        d = await client.read_deployment_by_name({name!r})
        print(json.dumps({{"crons": [s.schedule.cron for s in d.schedules], "pool": d.work_pool_name}}))
asyncio.run(main())
"""
    return prefect_client_call(env, code)


def run_deployment(env: dict, name: str) -> str:
    code = f"""
import json
from prefect.deployments import run_deployment
run = run_deployment({name!r}, timeout=900)
print(json.dumps({{"state": run.state.type.value}}))
"""
    return prefect_client_call(env, code, timeout=960)["state"]


def wait_for_deployment(env: dict, name: str, server: subprocess.Popen, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "synthrank serve exited early"
        try:
            return read_deployment(env, name)
        except AssertionError:
            time.sleep(2)
    raise TimeoutError(f"deployment {name} never appeared")


def test_served_schedule_publishes_once_then_records_unchanged(prefect_server, tmp_path):
    with FakeTeacher(mode="identity") as teacher:
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump({
            "dataset": "scheduled", "output": str(tmp_path / "out"),
            "sources": [{"name": "demo-law", "domain": "law", "path": str(REPO / "examples/demo/law"),
                         "queries": 3}],
            "candidates": {"k": 5}, "listwise": {"window": 5},
            "teacher": {"backend": "openai", "base_url": teacher.base_url, "model": "fake"},
        }))
        with (tmp_path / "serve.log").open("wb") as log:
            served = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", str(spec), "--cron",
                                       "0 3 * * *"], stdout=log, stderr=subprocess.STDOUT, env=prefect_server)
        try:
            deployment = wait_for_deployment(prefect_server, "synthrank-build/build-scheduled", served)
            assert deployment["crons"] == ["0 3 * * *"]
            assert run_deployment(prefect_server, "synthrank-build/build-scheduled") == "COMPLETED"
            assert run_deployment(prefect_server, "synthrank-build/build-scheduled") == "COMPLETED"
        finally:
            served.terminate()
            served.wait(timeout=60)
    with Warehouse.open(tmp_path / "out" / "synthrank.duckdb", read_only=True) as wh:
        versions = list_versions(wh, "scheduled")
        outcomes = [run["outcome"] for run in list_runs(wh, "scheduled")]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "published")]
    assert outcomes == ["published", "unchanged"]


def test_deploy_registers_on_a_work_pool(prefect_server, tmp_path):
    pool = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "builders", "--type",
                           "process"], env=prefect_server, capture_output=True, text=True, timeout=120)
    assert pool.returncode == 0, pool.stderr
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"dataset": "pooled", "output": str(tmp_path / "out"),
                                    "sources": [{"name": "demo-law", "domain": "law",
                                                 "path": str(REPO / "examples/demo/law")}]}))
    result = subprocess.run([sys.executable, "-m", "flows.cli", "deploy", str(spec), "--work-pool", "builders",
                             "--cron", "0 4 * * *"], env=prefect_server, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    deployment = read_deployment(prefect_server, "synthrank-build/build-pooled")
    assert deployment == {"crons": ["0 4 * * *"], "pool": "builders"}
