"""The listwise stage: rank candidate lists with the teacher (sliding windows, shuffled
samples), validate strictly, attach the pointwise positives staged in the same version."""

from __future__ import annotations

from typing import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.spec import BuildSpec, load_spec
from flows.stages.common import StageResult, stage_backend, warehouse_cursor
from flows.stages.filtering import RowStager
from generators.candidates import CandidateList, candidate_lists
from generators.listwise import build_row, plan_samples, rank_samples
from generators.pointwise import attach_positives, positives_by_query
from generators.teachers import TeacherRunner, TeacherStats
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.candidates import candidate_passages
from warehouse.db import Warehouse
from warehouse.snapshots import find_snapshot
from warehouse.versions import load_rows


# Candidate lists the listwise stage plans, ranks and stages at a time: its memory follows
# this, not the number of queries (the samples of a list always stay in one chunk).
LIST_CHUNK = 2000


def selected_lists(spec: BuildSpec, warehouse: Warehouse, snapshot_ids: list[str], chunk: int | None = None
                   ) -> Iterator[tuple[list[CandidateList], dict[str, tuple[str, str]]]]:
    """Per source, in chunks of ``chunk`` lists (default: one chunk a source): the candidate
    lists of its selected queries (its own candidate settings) and the passages they hold."""
    for source, snapshot_id in zip(spec.sources, snapshot_ids):
        snapshot = find_snapshot(warehouse, snapshot_id)
        lists = candidate_lists(warehouse, snapshot, spec.candidates_for(source), source.queries, spec.seed)
        size = chunk or max(len(lists), 1)
        for start in range(0, len(lists), size):
            part = lists[start:start + size]
            yield part, candidate_passages(warehouse, snapshot_id, (d for c in part for d in c.docids))


@task(name="listwise", cache_policy=NO_CACHE)  # it stages rows: never skipped for a cached result
def listwise_stage(spec_path: str, snapshot_ids: list[str], version: int) -> StageResult:
    """Rank every selected candidate list; stage accepted rows and rejections with reasons."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    prompt = load_prompt(spec.listwise.prompt)
    backend = stage_backend(spec)
    runner, stats = TeacherRunner(backend, CallStore(warehouse)), TeacherStats()
    positives = positives_by_query(load_rows(warehouse, spec.dataset, version, "pointwise"))
    stager = RowStager(spec, warehouse, version, "listwise", snapshot_ids)
    for lists, passages in selected_lists(spec, warehouse, snapshot_ids, LIST_CHUNK):
        planned = plan_samples(lists, passages, prompt, spec.listwise, backend.model, spec.sampling, spec.seed)
        rankings, chunk_stats = rank_samples(planned, runner, "listwise")
        stats.add(chunk_stats)
        rows = [attach_positives(build_row(ranking, prompt, backend.name), positives) for ranking in rankings]
        stager.add([row for row in rows if row["reason"] is None],
                   [(row, "validate", row["reason"], None) for row in rows if row["reason"] is not None])
    return StageResult(
        kind="listwise",
        **stager.result(),
        teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}],
        prompts={prompt.name: prompt.version},
    )
