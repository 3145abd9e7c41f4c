"""Shared fixtures: the real test collections, one Prefect harness, a real llama.cpp server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or $SYNTHRANK_DATA."""
    return Path(os.environ.get("SYNTHRANK_DATA", REPO.parent / "shared" / "data"))


def read_corpus(shared_data: Path, name: str) -> list[dict]:
    """The passages of one collection in ../shared/data, as its corpus.jsonl records."""
    with (shared_data / name / "corpus.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "cisi").is_dir():
        pytest.skip(f"{path} not found: these tests need the real collections in ../shared/data")
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness for the whole session (it takes ~20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


LLAMA_ALIAS = "smollm2-135m"


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> str:
    """``python -m llama_cpp.server`` with the embedded model on loopback; yields its base URL."""
    from generators.teachers.embedded import embedded_model_path

    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()),
             "--model_alias", LLAMA_ALIAS, "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "8192", "--verbose", "False"],
            stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(f"{base_url}/models", process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def serve():
    """Start loopback FakeTeachers (tests/fake_teacher.py) with the given options; all are
    stopped after the test."""
    from tests.fake_teacher import FakeTeacher

    running = []

    def start(**options) -> "FakeTeacher":
        teacher = FakeTeacher(**options)
        teacher.start()
        running.append(teacher)
        return teacher

    yield start
    for teacher in running:
        teacher.stop()
