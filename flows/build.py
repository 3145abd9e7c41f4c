"""The build flow: sources -> snapshots -> candidates -> stages (one per kind) -> publish -> export.

Tasks are thin: each calls plain functions from generators/, filters/ and warehouse/ and
passes paths and ids. The flow process holds the warehouse file for its whole run (DuckDB
allows one writing process); tasks work on cursors of that one connection.
"""

from __future__ import annotations

import time

from prefect import flow, task

from flows.spec import BuildSpec, load_spec
from flows.stages.common import StageResult, hold_warehouse, warehouse_cursor
from flows.stages.listwise import listwise_stage
from generators.candidates import ensure_candidates
from warehouse.exports import export_version
from warehouse.snapshots import ingest, latest_snapshot
from warehouse.versions import begin_version, fail_version, publish_version

# The stages a build can run, in the order it runs them.
STAGES = {"listwise": listwise_stage}


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


@task(name="export")
def export_parquet(spec_path: str, version: int) -> list[str]:
    """Each kind of the new version as ``OUT/DATASET/vN/<kind>.parquet``."""
    spec = load_spec(spec_path)
    out_dir = spec.output_dir / spec.dataset / f"v{version}"
    warehouse = warehouse_cursor(spec.warehouse_path)
    return [str(path) for kind in spec.kinds
            for path in export_version(warehouse, spec.dataset, version, kind, "parquet", out_dir)]


@flow(name="synthrank-build")
def build_flow(spec_path: str, wait_seconds: float = 0.0) -> dict:
    """Run a build spec end to end and publish a new version of its dataset."""
    started = time.perf_counter()
    spec = load_spec(spec_path)
    with hold_warehouse(spec.warehouse_path, wait_seconds) as warehouse:
        snapshot_ids = ingest_sources(spec_path)
        build_candidates(spec_path, snapshot_ids)
        version = begin_version(warehouse, spec.dataset, spec.model_dump(mode="json"), snapshot_ids)
        try:
            results = [STAGES[kind](spec_path, snapshot_ids, version) for kind in STAGES if kind in spec.kinds]
            manifest = build_manifest(spec, snapshot_ids, results, time.perf_counter() - started)
            publish_version(warehouse, spec.dataset, version, manifest)
        except BaseException as exc:
            fail_version(warehouse, spec.dataset, version, f"{type(exc).__name__}: {exc}")
            raise
        outputs = export_parquet(spec_path, version)
    return {**manifest, "dataset": spec.dataset, "version": version, "outputs": outputs,
            "warehouse": str(spec.warehouse_path), "wall_seconds": round(time.perf_counter() - started, 2)}


def build_manifest(spec: BuildSpec, snapshot_ids: list[str], results: list[StageResult],
                   seconds: float) -> dict:
    """What a published version records about how it was made."""
    return {
        "snapshot_ids": snapshot_ids,
        "counts": {r["kind"]: r["accepted"] for r in results},
        "attempted": {r["kind"]: r["attempted"] for r in results},
        "rejections": {f"{r['kind']}/{reason}": n for r in results for reason, n in r["rejections"].items()},
        "teachers": [{"kind": r["kind"], **t} for r in results for t in r["teachers"]],
        "prompts": {name: v for r in results for name, v in r["prompts"].items()},
        "sampling": spec.sampling.model_dump(),
        "timings": {"build_seconds": round(seconds, 2)},
    }
