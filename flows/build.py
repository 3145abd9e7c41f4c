"""The build flow: sources -> snapshots -> candidates -> stages (one per kind) -> publish -> export.

Tasks are thin: each calls plain functions from generators/, filters/ and warehouse/ and
passes paths and ids. The flow process holds the warehouse file for its whole run (DuckDB
allows one writing process); tasks work on cursors of that one connection.
"""

from __future__ import annotations

import time
from datetime import datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.runners import task_runner
from flows.shards import encode_in_shards, retrieve_shard
from flows.spec import BuildSpec, load_spec
from flows.stages.common import StageResult, hold_warehouse, warehouse_cursor
from flows.stages.listwise import listwise_stage
from flows.stages.mixed_cot import mixed_cot_stage
from flows.stages.negatives import negatives_stage
from flows.stages.pointwise import pointwise_stage
from generators.candidates import ensure_indexes, queries_without_lists, selected_queries
from prompts import load_prompt
from warehouse.candidates import store_candidates
from warehouse.exports import publish_exports
from warehouse.runs import inputs_fingerprint, last_published_inputs, record_run
from warehouse.snapshots import ingest, latest_snapshot
from warehouse.versions import begin_version, fail_version, publish_version, spec_hash

# The stages a build can run, in the order it runs them.
STAGES = {"pointwise": pointwise_stage, "listwise": listwise_stage, "negatives": negatives_stage,
          "mixed_cot": mixed_cot_stage}


# Build tasks take cache_policy=NO_CACHE: they write the warehouse, which is the cache (a
# cached result would skip those writes), and hashing their inputs would be wasted work.
@task(name="ingest-sources", cache_policy=NO_CACHE)
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


@task(name="candidates", cache_policy=NO_CACHE)
def build_candidates(spec_path: str, snapshot_ids: list[str]) -> int:
    """Candidate lists of the queries each source selects, with its source's settings;
    returns how many lists were computed.

    Only selected queries without a stored list are retrieved for. Each snapshot's indexes
    are built once (embeddings on the task runner) and saved beside the warehouse; retrieval
    runs on the task runner, every source at once, reading those folders; the lists come
    back here to be stored.
    """
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    pending = []
    for source, snapshot_id in zip(spec.sources, snapshot_ids):
        config = spec.candidates_for(source)
        selected = selected_queries(warehouse, snapshot_id, source.queries, spec.seed)
        queries = queries_without_lists(warehouse, snapshot_id, config, selected)
        if queries:
            indexes = ensure_indexes(warehouse, snapshot_id, config, encode_in_shards)
            pending.append((snapshot_id, config, retrieve_shard.submit(indexes, queries, config)))
    for snapshot_id, config, future in pending:
        store_candidates(warehouse, snapshot_id, config.retriever_id(), future.result())
    return sum(len(future.result()) for *_, future in pending)


@task(name="export", cache_policy=NO_CACHE)
def export_parquet(spec_path: str, version: int) -> list[str]:
    """Each kind of the new version as ``OUT/DATASET/vN/<kind>.parquet`` with its manifest.json,
    moved into place whole, then ``OUT/DATASET/versions.json`` (what readers use while a
    later build holds the warehouse)."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    kinds = [kind for kind in STAGES if kind in spec.kinds]
    return [str(path) for path in publish_exports(warehouse, spec.dataset, version, kinds,
                                                  spec.output_dir / spec.dataset)]


@flow(name="synthrank-build")
def build_flow(spec_path: str, wait_seconds: float = 0.0, only_if_changed: bool = False) -> dict:
    """Run a build spec end to end and publish a new version of its dataset.

    With ``only_if_changed`` (scheduled runs) and the spec's ``publish: if_changed``, a run
    whose inputs (snapshots, spec, prompt versions) match the latest published version
    records ``unchanged`` and publishes nothing.
    """
    started, started_at = time.perf_counter(), datetime.now()
    spec = load_spec(spec_path)
    with hold_warehouse(spec.warehouse_path, wait_seconds) as warehouse:
        snapshot_ids = ingest_sources(spec_path)
        recorded_spec = spec.model_dump(mode="json")
        used = prompt_versions({kind: recorded_spec.get(kind) for kind in spec.kinds})
        inputs = inputs_fingerprint(snapshot_ids, spec_hash(recorded_spec), used)
        if (only_if_changed and spec.publish == "if_changed"
                and inputs == last_published_inputs(warehouse, spec.dataset)):
            record_run(warehouse, spec.dataset, started_at, "unchanged", None, inputs)
            return {"dataset": spec.dataset, "outcome": "unchanged", "inputs": inputs,
                    "warehouse": str(spec.warehouse_path)}
        candidates_started = time.perf_counter()
        build_candidates(spec_path, snapshot_ids)
        candidates_seconds = round(time.perf_counter() - candidates_started, 2)
        version = begin_version(warehouse, spec.dataset, recorded_spec, snapshot_ids)
        try:
            results, stage_seconds = [], {}
            for kind in (kind for kind in STAGES if kind in spec.kinds):
                stage_started = time.perf_counter()
                results.append(STAGES[kind](spec_path, snapshot_ids, version))
                stage_seconds[kind] = round(time.perf_counter() - stage_started, 2)
            manifest = build_manifest(spec, snapshot_ids, results, time.perf_counter() - started)
            manifest["timings"].update(stage_seconds=stage_seconds, candidates_seconds=candidates_seconds)
            publish_version(warehouse, spec.dataset, version, {**manifest, "inputs": inputs})
        except BaseException as exc:
            fail_version(warehouse, spec.dataset, version, f"{type(exc).__name__}: {exc}")
            record_run(warehouse, spec.dataset, started_at, "failed", version, inputs, repr(exc)[:500])
            raise
        record_run(warehouse, spec.dataset, started_at, "published", version, inputs)
        outputs = export_parquet(spec_path, version)
    return {**manifest, "dataset": spec.dataset, "outcome": "published", "version": version,
            "inputs": inputs, "outputs": outputs, "warehouse": str(spec.warehouse_path),
            "wall_seconds": round(time.perf_counter() - started, 2)}


def run_build(spec_path: str, **parameters) -> dict:
    """``build_flow`` on the task runner the spec's ``runner`` section asks for."""
    runner = task_runner(load_spec(spec_path).runner)
    return build_flow.with_options(task_runner=runner)(spec_path, **parameters)


def prompt_versions(spec: dict) -> dict[str, str]:
    """Versions of the prompts a spec uses: every config field named ``prompt`` or ``*_prompt``."""
    names: set[str] = set()

    def collect(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if (key == "prompt" or key.endswith("_prompt")) and isinstance(value, str):
                    names.add(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(spec)
    return {name: load_prompt(name).version for name in sorted(names)}


def build_manifest(spec: BuildSpec, snapshot_ids: list[str], results: list[StageResult],
                   seconds: float) -> dict:
    """What a published version records about how it was made."""
    return {
        "snapshot_ids": snapshot_ids,
        "counts": {r["kind"]: r["accepted"] for r in results},
        "attempted": {r["kind"]: r["attempted"] for r in results},
        "rejections": {f"{r['kind']}/{reason}": n for r in results for reason, n in r["rejections"].items()},
        "teachers": [{"kind": r["kind"], **t, "cost_usd": teacher_usd(spec, t)}
                     for r in results for t in r["teachers"]],
        "prompts": {name: v for r in results for name, v in r["prompts"].items()},
        "filters": {r["kind"]: r["filters"] for r in results if r["filters"]},
        "sampling": spec.sampling.model_dump(),
        "cost": build_cost(spec, [t for r in results for t in r["teachers"]]),
        "timings": {"build_seconds": round(seconds, 2)},
    }


def teacher_usd(spec: BuildSpec, teacher: dict) -> float | None:
    """What one teacher's new calls cost in USD, or None when the spec gives no prices."""
    if spec.pricing is None:
        return None
    return round((teacher.get("prompt_tokens", 0) * spec.pricing.prompt_usd_per_mtok
                  + teacher.get("completion_tokens", 0) * spec.pricing.completion_usd_per_mtok) / 1e6, 6)


def build_cost(spec: BuildSpec, teachers: list[dict]) -> dict:
    """What this build's new teacher calls cost: tokens, teacher seconds, and USD when the
    spec gives prices (reused answers cost nothing)."""
    prompt = sum(t.get("prompt_tokens", 0) for t in teachers)
    completion = sum(t.get("completion_tokens", 0) for t in teachers)
    usd = None
    if spec.pricing is not None:
        usd = round((prompt * spec.pricing.prompt_usd_per_mtok
                     + completion * spec.pricing.completion_usd_per_mtok) / 1e6, 6)
    return {"calls_made": sum(t.get("calls_made", 0) for t in teachers), "prompt_tokens": prompt,
            "completion_tokens": completion, "teacher_seconds": round(sum(t.get("seconds", 0) for t in teachers), 2),
            "usd": usd}
