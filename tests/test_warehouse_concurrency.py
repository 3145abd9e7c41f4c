"""One writer at a time, readers while a build runs, and builds killed mid-publish.

Every writer here is a real second process (``python -m tests.warehouse_support``) holding a
real DuckDB file; kills are SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.warehouse_support import listwise_row, publish
from warehouse.db import Warehouse
from warehouse.errors import WarehouseLocked
from warehouse.exported import ExportedVersions, open_published
from warehouse.exports import publish_exports
from warehouse.versions import list_versions, load_rows, resolve_version, verify_version

ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def start_writer(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.warehouse_support", "--warehouse", str(path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(process: subprocess.Popen, word: str) -> str:
    """Read the writer's output up to the line starting with ``word``."""
    while True:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"writer ended before {word}: {process.wait()} {process.stderr.read()}")
        if line.startswith(word):
            return line.strip()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=180)


def test_one_writer_at_a_time_the_other_waits_or_fails_naming_it(tmp_path):
    path, release = tmp_path / "wh.duckdb", tmp_path / "release"
    first = start_writer(path, "--rows", "30", "--salt", "first", "--hold-until", str(release))
    waiter = None
    try:
        wait_for(first, "STAGED")
        holder = f"PID {first.pid} ("
        # A writer that will not wait fails at once, naming the process and its command line.
        with pytest.raises(WarehouseLocked) as refused:
            Warehouse.open(path, wait_seconds=1)
        assert holder in str(refused.value) and "tests.warehouse_support" in str(refused.value)
        assert "Waited 1 s" in str(refused.value) and refused.value.holder.startswith(f"PID {first.pid}")
        # So does a build, before it starts Prefect.
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump({"dataset": "other", "warehouse": str(path), "sources": [
            {"name": "m", "domain": "medicine", "path": str(REPO / "examples/demo/medicine")}]}))
        build = cli("build", str(spec), "--wait", "1")
        assert build.returncode == 2 and holder in build.stderr and "raise --wait" in build.stderr
        assert "Traceback" not in build.stderr
        # A reader with no exports to fall back to says why it cannot read.
        versions = cli("versions", "-w", str(path))
        assert versions.returncode == 2 and "no exports were found beside it" in versions.stderr
        assert holder in versions.stderr
        # A writer that waits long enough gets its turn once the first one publishes.
        waiter = start_writer(path, "--rows", "20", "--salt", "second", "--wait", "120")
        release.touch()
        assert wait_for(first, "PUBLISHED") == "PUBLISHED 1"
        assert wait_for(waiter, "PUBLISHED") == "PUBLISHED 2"
        assert first.wait(30) == 0 and waiter.wait(30) == 0
    finally:
        for process in (first, waiter):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    with Warehouse.open(path) as wh:  # not corrupted: both versions whole and verifiable
        assert [(v["version"], v["status"], v["manifest"]["counts"]) for v in list_versions(wh, "ds")] == \
            [(1, "published", {"listwise": 30}), (2, "published", {"listwise": 20})]
        for version in (1, 2):
            verify_version(wh, "ds", version)
        assert load_rows(wh, "ds", 2, "listwise")[0]["reasoning"] == "because second"
        wh.con.execute("CHECKPOINT")


def test_readers_use_the_exports_while_a_build_holds_the_warehouse(tmp_path):
    out, release = tmp_path / "out", tmp_path / "release"
    path = out / "wh.duckdb"
    row = listwise_row(3)
    with Warehouse.open(path) as wh:
        publish(wh, "ds", [listwise_row(i) for i in range(6)])
        publish_exports(wh, "ds", 1, ["listwise"], out / "ds")
    writer = start_writer(path, "--rows", "9", "--hold-until", str(release))
    try:
        wait_for(writer, "STAGED")
        with open_published(path) as (store, note):
            assert isinstance(store, ExportedVersions)
            assert f"being written by PID {writer.pid}" in note and str(out) in note
            assert [v["version"] for v in store.list_versions("ds")] == [1]
            assert store.load_rows("ds", 1, "listwise")[3]["row_id"] == sorted(
                listwise_row(i)["row_id"] for i in range(6))[3]
        versions = cli("versions", "-w", str(path))
        assert versions.returncode == 0, versions.stderr
        assert f"being written by PID {writer.pid}" in versions.stdout and "published" in versions.stdout
        shown = cli("show", "ds@1", "--row", row["row_id"], "-w", str(path))
        assert shown.returncode == 0, shown.stderr
        assert "teacher_model: fake-teacher" in shown.stdout and "cannot open now" in shown.stdout
        release.touch()
        assert wait_for(writer, "PUBLISHED") == "PUBLISHED 2"
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    with open_published(path) as (store, note):  # the build ended: the warehouse itself again
        assert note is None and store.resolve_version("ds") == 2


def published_state(path: Path) -> dict[int, int]:
    """Check every version's invariants; published version -> row count."""
    with Warehouse.open(path, read_only=True) as wh:
        published = {}
        for version in list_versions(wh, "ds"):
            rows = wh.fetch_one("SELECT count(*) FROM dataset_rows WHERE dataset = 'ds' AND version = ?",
                                [version["version"]])[0]
            if version["status"] == "published":
                verify_version(wh, "ds", version["version"])
                assert rows == version["manifest"]["counts"]["listwise"]
                published[version["version"]] = rows
            elif version["status"] == "failed":
                assert rows == 0
        assert resolve_version(wh, "ds") == max(published)
    return published


def test_a_build_killed_mid_publish_leaves_the_previous_version_whole(tmp_path):
    path = tmp_path / "wh.duckdb"
    with Warehouse.open(path) as wh:
        publish(wh, "ds", [listwise_row(i) for i in range(50)])
        original = load_rows(wh, "ds", 1, "listwise")
    # Kill points: while staging rows, before publishing, and inside or just after the publish
    # transaction (it fingerprints 4000 rows: on a 2-core machine that takes tens of ms).
    points = [("OPEN", 0.3), ("STAGED", 0.0), ("PUBLISHING", 0.0), ("PUBLISHING", 0.03), ("PUBLISHING", 0.1)]
    for attempt, (word, delay) in enumerate(points):
        writer = start_writer(path, "--rows", "4000", "--salt", f"kill-{attempt}")
        try:
            wait_for(writer, word)
            time.sleep(delay)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
        assert published_state(path)[1] == 50
    with Warehouse.open(path, read_only=True) as wh:
        assert load_rows(wh, "ds", 1, "listwise") == original
    # The killed builds published nothing partial; the next build publishes whole and cleans up.
    finished = start_writer(path, "--rows", "10", "--salt", "after")
    assert wait_for(finished, "PUBLISHED").startswith("PUBLISHED")
    assert finished.wait(30) == 0
    final = published_state(path)
    assert final[max(final)] == 10 and all(count in (50, 4000, 10) for count in final.values())
    with Warehouse.open(path, read_only=True) as wh:
        assert not [v for v in list_versions(wh, "ds") if v["status"] == "building"]
