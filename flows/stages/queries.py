"""The queries stage: synthesized queries for sources with ``synthesize: true``.

It runs before candidates (``synthesize_queries``): the teacher writes queries for sampled
passages, the round trip and near-duplicate removal (then the spec's ``filters.queries``)
keep some, and each such source's snapshot is replaced, for the rest of the build, by a
derived snapshot holding its passages, its own queries and the kept ones (positives of
qrels split ``synthetic``). Once the version is open, ``stage_synthesized`` stages the query
rows and rejections like any kind's.
"""

from __future__ import annotations

from collections import Counter
from typing import TypedDict

from prefect import task

from filters.base import build_chain, run_chain
from flows.spec import BuildSpec, load_spec
from flows.stages.common import StageResult, stage_backend, warehouse_cursor
from flows.stages.filtering import filter_chain
from generators.candidates import ensure_indexes, rank_candidates
from generators.queries import plan_queries, query_rows, round_trip
from generators.teachers import TeacherRunner
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.db import Warehouse
from warehouse.snapshots import derive_snapshot, find_snapshot, load_passages
from warehouse.versions import add_rejections, add_rows


class Synthesized(TypedDict):
    """What synthesis hands the rest of the build."""

    snapshot_ids: list[str]  # the build's snapshots, synthesized ones replacing their sources'
    accepted: list[dict]
    rejected: list[tuple[dict, str, str, float | None]]
    filters: list[dict]
    teachers: list[dict]
    prompts: dict[str, str]


@task(name="synthesize-queries")
def synthesize_queries(spec_path: str, snapshot_ids: list[str]) -> Synthesized:
    """Write, round-trip and deduplicate queries for every source with ``synthesize: true``."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    config, prompt, backend = spec.queries, load_prompt(spec.queries.prompt), stage_backend(spec)
    chosen = [(index, find_snapshot(warehouse, sid)) for index, (source, sid)
              in enumerate(zip(spec.sources, snapshot_ids)) if source.synthesize]
    planned = {index: plan_queries(snapshot.snapshot_id, snapshot.domain, load_passages(warehouse, snapshot.snapshot_id),
                                   prompt, config, backend.model, spec.sampling, spec.seed)
               for index, snapshot in chosen}
    answers, stats = TeacherRunner(backend, CallStore(warehouse)).run(
        [p.call for items in planned.values() for p in items], "queries")
    new_ids, accepted, rejected, steps = list(snapshot_ids), [], [], []
    for index, snapshot in chosen:
        rows = query_rows(planned[index], answers, prompt, backend.name, config.per_passage)
        indexes = ensure_indexes(warehouse, snapshot.snapshot_id, config.round_trip)
        round_trip(rows, lambda queries: rank_candidates(indexes, queries, config.round_trip), config.round_trip.k)
        result = run_chain(_chain(spec, warehouse, snapshot_ids), [row for row in rows if row["reason"] is None])
        rejected += [(row, "round_trip" if row["reason"] == "round_trip" else "validate", row["reason"], None)
                     for row in rows if row["reason"] is not None]
        rejected += [(r.row, r.filter, r.reason, r.score) for r in result.rejected]
        steps += result.steps
        kept = result.kept
        derived, _ = derive_snapshot(warehouse, snapshot, f"{snapshot.name}.synthetic",
                                     {row["qid"]: row["query"] for row in kept},
                                     {row["qid"]: row["source_docid"] for row in kept})
        for row in kept:
            row["source_snapshot_id"], row["snapshot_id"] = snapshot.snapshot_id, derived.snapshot_id
        accepted += kept
        new_ids[index] = derived.snapshot_id
    return Synthesized(snapshot_ids=new_ids, accepted=accepted, rejected=rejected, filters=steps,
                       teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}],
                       prompts={prompt.name: prompt.version})


def _chain(spec: BuildSpec, warehouse: Warehouse, snapshot_ids: list[str]):
    """Near-duplicate removal, then the spec's ``filters.queries``."""
    dedup = build_chain([{"name": "minhash_dedup", "key": "query", "threshold": spec.queries.dedup_threshold}])
    return dedup + filter_chain(spec, warehouse, "queries", snapshot_ids)


def stage_synthesized(spec: BuildSpec, warehouse: Warehouse, version: int, synthesized: Synthesized) -> StageResult:
    """Stage the query rows (kept ones) and rejections in the version being built."""
    add_rows(warehouse, spec.dataset, version, "queries", synthesized["accepted"])
    add_rejections(warehouse, spec.dataset, version, "queries", synthesized["rejected"])
    return StageResult(
        kind="queries", attempted=len(synthesized["accepted"]) + len(synthesized["rejected"]),
        accepted=len(synthesized["accepted"]),
        rejections=dict(Counter(f"{stage}:{reason.split(':', 1)[0]}" for _, stage, reason, _ in synthesized["rejected"])),
        filters=synthesized["filters"], teachers=synthesized["teachers"], prompts=synthesized["prompts"])
