"""The listwise stage: rank candidate lists with the teacher (sliding windows, shuffled
samples), validate strictly, attach the pointwise positives staged in the same version."""

from __future__ import annotations

from typing import Iterator

from prefect import task

from flows.spec import BuildSpec, load_spec
from flows.stages.common import StageResult, stage_backend, warehouse_cursor
from flows.stages.filtering import stage_rows
from generators.candidates import CandidateList, candidate_lists
from generators.listwise import build_row, plan_samples, rank_samples
from generators.pointwise import attach_positives, positives_by_query
from generators.teachers import TeacherRunner
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.db import Warehouse
from warehouse.snapshots import find_snapshot, load_passages
from warehouse.versions import load_rows


def selected_lists(spec: BuildSpec, warehouse: Warehouse, snapshot_ids: list[str]
                   ) -> Iterator[tuple[list[CandidateList], dict[str, tuple[str, str]]]]:
    """Per source: the candidate lists of its selected queries (its own candidate settings)
    and its passages."""
    counts, _ = spec.query_counts(warehouse, snapshot_ids)
    for source, snapshot_id, count in zip(spec.sources, snapshot_ids, counts):
        snapshot = find_snapshot(warehouse, snapshot_id)
        lists = candidate_lists(warehouse, snapshot, spec.candidates_for(source), count, spec.seed)
        yield lists, load_passages(warehouse, snapshot_id)


@task(name="listwise")
def listwise_stage(spec_path: str, snapshot_ids: list[str], version: int) -> StageResult:
    """Rank every selected candidate list; stage accepted rows and rejections with reasons."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    prompt = load_prompt(spec.listwise.prompt)
    backend = stage_backend(spec)
    planned = [sample for lists, passages in selected_lists(spec, warehouse, snapshot_ids)
               for sample in plan_samples(lists, passages, prompt, spec.listwise, backend.model,
                                          spec.sampling, spec.seed)]
    rankings, stats = rank_samples(planned, TeacherRunner(backend, CallStore(warehouse)), "listwise")
    positives = positives_by_query(load_rows(warehouse, spec.dataset, version, "pointwise"))
    rows = [attach_positives(build_row(ranking, prompt, backend.name), positives) for ranking in rankings]
    accepted = [row for row in rows if row["reason"] is None]
    rejected = [(row, "validate", row["reason"], None) for row in rows if row["reason"] is not None]
    return StageResult(
        kind="listwise",
        **stage_rows(spec, warehouse, version, "listwise", snapshot_ids, accepted, rejected),
        teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}],
        prompts={prompt.name: prompt.version},
    )
