"""Publishing and exporting as one recoverable step, and failed teacher calls that are never
taken for "unchanged".

A real build process is SIGKILLed at each step of publish and export (the test hook
``SYNTHRANK_TEST_KILL_AT``, warehouse/testhooks.py); the next build completes that version's
export instead of publishing another, and the warehouse and the exports then list the same
versions. Builds against the fake teacher with seeded 5xx faults show incomplete versions,
their repair by the next scheduled run, and the failed-share limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from tests.teachers_data import write_scored_beir, write_spec
from warehouse.db import Warehouse
from warehouse.exported import ExportedVersions
from warehouse.exports import verify_export
from warehouse.runs import list_runs
from warehouse.testhooks import KILL_AT_ENV, KILL_POINTS
from warehouse.versions import list_versions, version_status

pytestmark = pytest.mark.slow

DATASET = "teachers"  # tests.teachers_data.write_spec's


@pytest.fixture(scope="module")
def teacher():
    with FakeTeacher(mode="identity", model="fake-teacher") as running:
        yield running


def versions_in(out: Path) -> tuple[list[tuple[int, str]], list[int]]:
    """(version, status) in the warehouse, and the versions the exports list."""
    with Warehouse.open(out / "synthrank.duckdb", read_only=True) as wh:
        stored = [(v["version"], v["status"]) for v in list_versions(wh, DATASET)]
    exported = [v["version"] for v in ExportedVersions(out).list_versions(DATASET)] if out.is_dir() else []
    return stored, exported


@pytest.mark.parametrize("step", KILL_POINTS)
def test_a_build_killed_at_any_publish_step_is_completed_by_the_next(prefect_harness, teacher, tmp_path, step):
    from prefect.settings import PREFECT_API_URL

    from flows.build import build_flow

    source = write_scored_beir(tmp_path / "source", queries=3)
    spec = write_spec(tmp_path / "build", source, {"base_url": teacher.base_url})
    out = tmp_path / "build" / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value(), KILL_AT_ENV: step}
    killed = subprocess.run([sys.executable, "-m", "flows.cli", "build", str(spec)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    stored, exported = versions_in(out)
    assert stored == [(1, "published")] and exported == []  # the crash left them disagreeing

    summary = build_flow(str(spec))
    assert (summary["outcome"], summary["version"]) == ("resumed", 1)
    assert summary["teachers"][0]["calls_made"] == 3  # the killed build's record of its calls
    stored, exported = versions_in(out)
    assert stored == [(1, "published")] and exported == [1]
    assert verify_export(out / DATASET / "v1") == []
    assert summary["outputs"] == [str(out / DATASET / "v1" / name) for name in ("listwise.parquet", "README.md")]
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]

    assert build_flow(str(spec))["outcome"] == "unchanged"  # nothing changed since v1
    spec.write_text(spec.read_text() + "publish: always\n")
    again = build_flow(str(spec))  # an ordinary rebuild afterwards publishes as usual
    assert (again["outcome"], again["version"]) == ("published", 2)
    assert versions_in(out) == ([(1, "published"), (2, "published")], [1, 2])


def test_failed_calls_mark_the_version_incomplete_and_the_next_scheduled_run_retries_them(prefect_harness, tmp_path):
    from flows.build import build_flow

    source = write_scored_beir(tmp_path / "source", queries=8)
    with FakeTeacher(mode="identity", model="fake-teacher", seed=1) as teacher:
        spec = write_spec(tmp_path / "build", source, {"base_url": teacher.base_url, "max_retries": 0})
        spec.write_text(spec.read_text() + "max_failed_share: 0.9\n")
        out = tmp_path / "build" / "out"

        teacher.set_faults(p_5xx=0.3)
        first = build_flow(str(spec), return_state=True)
        summary = first.result()
        failed = summary["teachers"][0]["calls_failed"]
        assert first.is_completed() and first.name == "Incomplete", first
        assert 0 < failed < 8 and f"{failed} teacher calls failed" in first.message
        with Warehouse.open(out / "synthrank.duckdb", read_only=True) as wh:
            [v1] = list_versions(wh, DATASET)
        assert version_status(v1) == "published, incomplete"
        assert v1["manifest"]["counts"]["listwise"] == 8 - failed

        teacher.set_faults(p_5xx=1.0)  # still down for the failed calls: nothing changes, nothing published
        teacher.reset_stats()
        second = build_flow(str(spec), return_state=True)
        assert teacher.stats()["received"] == failed  # exactly the failed calls, retried
        assert second.name == "Incomplete" and "nothing published" in second.message
        assert versions_in(out) == ([(1, "published")], [1])

        teacher.set_faults(p_5xx=0.0)  # back: the retried calls answer, v2 is published complete
        teacher.reset_stats()
        third = build_flow(str(spec), return_state=True)
        assert teacher.stats()["received"] == failed
        assert third.name == "Completed" and third.result()["version"] == 2
        assert third.result()["counts"]["listwise"] == 8

        fourth = build_flow(str(spec), return_state=True)
        assert fourth.name == "Unchanged" and fourth.result()["outcome"] == "unchanged"
    with Warehouse.open(out / "synthrank.duckdb", read_only=True) as wh:
        outcomes = [run["outcome"] for run in list_runs(wh, DATASET)]
        statuses = [version_status(v) for v in list_versions(wh, DATASET)]
    assert outcomes == ["published", "unchanged", "published", "unchanged"]
    assert statuses == ["published, incomplete", "published"]
    assert versions_in(out)[1] == [1, 2]


def test_more_failed_calls_than_the_spec_allows_fail_the_build(prefect_harness, tmp_path):
    from flows.build import build_flow

    source = write_scored_beir(tmp_path / "source", queries=8)
    with FakeTeacher(mode="identity", model="fake-teacher", seed=1, p_5xx=0.3) as teacher:
        spec = write_spec(tmp_path / "build", source, {"base_url": teacher.base_url, "max_retries": 0})
        spec.write_text(spec.read_text() + "max_failed_share: 0.1\n")
        state = build_flow(str(spec), return_state=True)
    assert state.is_failed() and "more than max_failed_share 0.1" in state.message
    out = tmp_path / "build" / "out"
    assert versions_in(out)[0] == [(1, "failed")]
    assert not (out / DATASET).exists()
