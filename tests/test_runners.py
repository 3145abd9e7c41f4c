"""The same build on the thread runner and on a local multi-process Dask cluster."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from warehouse.db import Warehouse
from warehouse.versions import load_rows

pytestmark = pytest.mark.slow


def write_spec(folder, teacher_url: str, runner: dict) -> str:
    folder.mkdir()
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "dataset": "sharded", "output": str(folder / "out"),
        "sources": [{"name": "demo-medicine", "domain": "medicine", "queries": 4,
                     "path": str(REPO / "examples/demo/medicine")},
                    {"name": "demo-law", "domain": "law", "queries": 4, "path": str(REPO / "examples/demo/law")}],
        "candidates": {"method": "hybrid", "k": 6}, "listwise": {"window": 6, "samples": 2},
        "teacher": {"backend": "openai", "base_url": teacher_url, "model": "fake"},
        "runner": runner,
    }))
    return str(spec)


def published_rows(summary: dict) -> list[dict]:
    with Warehouse.open(summary["warehouse"], read_only=True) as wh:
        return load_rows(wh, summary["dataset"], summary["version"], "listwise")


def test_threads_and_dask_publish_identical_rows(prefect_harness, tmp_path):
    from flows.build import run_build

    started = datetime.now(timezone.utc)
    with FakeTeacher(mode="random", seed=3) as teacher:
        threads = run_build(write_spec(tmp_path / "threads", teacher.base_url, {"kind": "threads"}))
        dask = run_build(write_spec(tmp_path / "dask", teacher.base_url,
                                    {"kind": "dask", "n_workers": 2, "shard_size": 3}))
        answered = teacher.stats()["ok"]
    assert threads["teachers"][0]["calls_made"] == dask["teachers"][0]["calls_made"] == 16
    assert answered == 32  # each build asked every call once: the dask build reused nothing
    threads_rows, dask_rows = published_rows(threads), published_rows(dask)
    assert len([row for row in threads_rows if not row.get("consensus")]) == 16 and threads_rows == dask_rows
    # Teacher calls went in shards of 3 (only the dask build has them); embeddings and
    # retrieval ran as one task per source in each build.
    assert task_runs("teacher-shard", started) == 6
    assert task_runs("embed-shard", started) == task_runs("retrieve", started) == 4


def task_runs(name: str, since: datetime) -> int:
    """Task runs whose name contains ``name`` that started after ``since`` (in this harness)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(like_=name), start_time=TaskRunFilterStartTime(after_=since)))
    return len(runs)


def test_the_build_flow_and_its_tasks_pickle():
    """A served run starts from the flow pickled by value (cloudpickle), and prefect-dask sends
    the flow run's context with each task: nothing they reach may hold a lock or a connection."""
    import cloudpickle

    from flows.build import STAGES, build_flow, build_candidates
    from flows.shards import answer_shard, embed_shard, retrieve_shard

    for flow_or_task in (build_flow, build_candidates, *STAGES.values(), answer_shard, embed_shard, retrieve_shard):
        assert cloudpickle.loads(cloudpickle.dumps(flow_or_task)).name == flow_or_task.name
