"""The mixed_cot stage: questions in a target language to the teacher, traces through the gates."""

from __future__ import annotations


from prefect import task

from flows.spec import load_spec
from flows.stages.common import StageResult, stage_backend, warehouse_cursor
from flows.stages.filtering import stage_rows
from generators.mixed_cot import build_row, plan_traces, rejection_score
from generators.teachers import TeacherRunner
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.snapshots import find_snapshot, load_passages, load_qrels, load_queries


@task(name="mixed_cot")
def mixed_cot_stage(spec_path: str, snapshot_ids: list[str], version: int) -> StageResult:
    """Ask every selected question; stage accepted traces and rejections with their gate."""
    spec = load_spec(spec_path)
    config = spec.mixed_cot
    warehouse = warehouse_cursor(spec.warehouse_path)
    prompt = load_prompt(config.prompt_name)
    backend = stage_backend(spec)
    planned = []
    counts, _ = spec.query_counts(warehouse, snapshot_ids)
    for snapshot_id, count in zip(snapshot_ids, counts):
        passages = load_passages(warehouse, snapshot_id) if config.with_passage else {}
        planned += plan_traces(find_snapshot(warehouse, snapshot_id), load_queries(warehouse, snapshot_id),
                               load_qrels(warehouse, snapshot_id), passages, prompt, config,
                               backend.model, spec.sampling, count, spec.seed)
    answers, stats = TeacherRunner(backend, CallStore(warehouse)).run([p.call for p in planned],
                                                                      "mixed_cot")
    rows = [build_row(p, answers[p.call.key], prompt, backend.name, config) for p in planned]
    accepted = [row for row in rows if row["reason"] is None]
    rejected = [(row, "gate", row["reason"], rejection_score(row)) for row in rows if row["reason"]]
    return StageResult(
        kind="mixed_cot",
        **stage_rows(spec, warehouse, version, "mixed_cot", snapshot_ids, accepted, rejected),
        teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}],
        prompts={prompt.name: prompt.version},
    )
