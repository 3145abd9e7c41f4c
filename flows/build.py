"""The build flow: sources -> snapshots -> candidates -> teacher -> version -> export.

Tasks are thin: each calls plain functions from generators/ and warehouse/ and passes
paths and ids. The flow process holds the warehouse file for its whole run (DuckDB allows
one writing process), and tasks work on cursors of that one connection.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect import flow, task

from flows.spec import BuildSpec, load_spec
from generators.candidates import candidate_lists, ensure_candidates
from generators.listwise import build_row, plan_samples
from generators.teachers import TeacherRunner, make_backend
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.db import Warehouse
from warehouse.exports import export_version
from warehouse.snapshots import find_snapshot, ingest, latest_snapshot, load_passages
from warehouse.versions import (add_rejections, add_rows, begin_version, fail_version,
                                publish_version)

_HELD: dict[Path, Warehouse] = {}


@contextmanager
def hold_warehouse(path: Path, wait_seconds: float = 0.0) -> Iterator[Warehouse]:
    """Open the warehouse for writing for the duration of a flow run."""
    warehouse = Warehouse.open(path, wait_seconds=wait_seconds)
    _HELD[path] = warehouse
    try:
        yield warehouse
    finally:
        del _HELD[path]
        warehouse.close()


def warehouse_cursor(path: Path) -> Warehouse:
    """A cursor on the held warehouse, for use in a task (possibly on another thread)."""
    held = _HELD[path]
    return Warehouse(held.con.cursor(), held.path, read_only=False)


@task(name="ingest-sources")
def ingest_sources(spec_path: str) -> list[str]:
    """Snapshot every source of the spec (identical content reuses its snapshot)."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    snapshot_ids = []
    for source in spec.sources:
        if source.path is None and source.hf is None:
            snapshot_ids.append(latest_snapshot(warehouse, source.name).snapshot_id)
            continue
        location = spec.resolve(source.path) if source.path else source.hf
        snapshot, _ = ingest(warehouse, location, source.name, source.domain, hub=source.hf is not None)
        snapshot_ids.append(snapshot.snapshot_id)
    return snapshot_ids


@task(name="candidates")
def build_candidates(spec_path: str, snapshot_ids: list[str]) -> int:
    """Candidate lists for every snapshot (stored once, reused by later builds)."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    return sum(ensure_candidates(warehouse, sid, spec.candidates) for sid in snapshot_ids)


@task(name="generate-listwise")
def generate_listwise(spec_path: str, snapshot_ids: list[str], version: int) -> dict:
    """Rank every selected candidate list with the teacher; stage accepted and rejected rows."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    prompt = load_prompt(spec.listwise.prompt)
    backend = make_backend(spec.teacher)
    planned = []
    for source, snapshot_id in zip(spec.sources, snapshot_ids):
        snapshot = find_snapshot(warehouse, snapshot_id)
        lists = candidate_lists(warehouse, snapshot, spec.candidates, source.queries, spec.seed)
        planned += plan_samples(lists, load_passages(warehouse, snapshot_id), prompt, spec.listwise,
                                backend.model, spec.sampling)
    answers, stats = TeacherRunner(backend, CallStore(warehouse)).run([p.call for p in planned],
                                                                      "listwise")
    rows = [build_row(sample, answers[sample.call.key], prompt, backend.name) for sample in planned]
    accepted = [row for row in rows if row["reason"] is None]
    rejected = [(row, "validate", row["reason"], None) for row in rows if row["reason"] is not None]
    add_rows(warehouse, spec.dataset, version, "listwise", accepted)
    add_rejections(warehouse, spec.dataset, version, "listwise", rejected)
    return {
        "attempted": len(rows),
        "accepted": len(accepted),
        "rejected": dict(Counter(row["reason"] for row, *_ in rejected)),
        "teacher": {"backend": backend.name, "model": backend.model, **stats.as_dict()},
        "prompts": {prompt.name: prompt.version},
    }


@task(name="export")
def export_listwise(spec_path: str, version: int) -> str:
    spec = load_spec(spec_path)
    out_dir = spec.output_dir / spec.dataset / f"v{version}"
    paths = export_version(warehouse_cursor(spec.warehouse_path), spec.dataset, version, "listwise",
                           "parquet", out_dir)
    return str(paths[0])


@flow(name="synthrank-build")
def build_flow(spec_path: str, wait_seconds: float = 0.0) -> dict:
    """Run a build spec end to end and publish a new version of its dataset."""
    started = time.perf_counter()
    spec = load_spec(spec_path)
    with hold_warehouse(spec.warehouse_path, wait_seconds) as warehouse:
        snapshot_ids = ingest_sources(spec_path)
        build_candidates(spec_path, snapshot_ids)
        version = begin_version(warehouse, spec.dataset, _recorded_spec(spec), snapshot_ids)
        try:
            result = generate_listwise(spec_path, snapshot_ids, version)
            manifest = _manifest(spec, snapshot_ids, result, time.perf_counter() - started)
            publish_version(warehouse, spec.dataset, version, manifest)
        except BaseException as exc:
            fail_version(warehouse, spec.dataset, version, f"{type(exc).__name__}: {exc}")
            raise
        output = export_listwise(spec_path, version)
    return {**manifest, "dataset": spec.dataset, "version": version, "output": output,
            "warehouse": str(spec.warehouse_path), "wall_seconds": round(time.perf_counter() - started, 2)}


def _recorded_spec(spec: BuildSpec) -> dict:
    """The spec as stored with a version (no secrets: keys are only named, never stored)."""
    return spec.model_dump(mode="json")


def _manifest(spec: BuildSpec, snapshot_ids: list[str], result: dict, seconds: float) -> dict:
    return {
        "snapshot_ids": snapshot_ids,
        "counts": {"listwise": result["accepted"]},
        "attempted": {"listwise": result["attempted"]},
        "rejections": {f"validate:{reason}": n for reason, n in result["rejected"].items()},
        "teachers": [result["teacher"]],
        "prompts": result["prompts"],
        "sampling": spec.sampling.model_dump(),
        "timings": {"build_seconds": round(seconds, 2)},
    }
