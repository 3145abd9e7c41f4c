"""The listwise stage: rank candidate lists with the teacher, validate strictly."""

from __future__ import annotations

from collections import Counter

from prefect import task

from flows.spec import load_spec
from flows.stages.common import StageResult, warehouse_cursor
from generators.candidates import candidate_lists
from generators.listwise import build_row, plan_samples
from generators.teachers import TeacherRunner, make_backend
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.snapshots import find_snapshot, load_passages
from warehouse.versions import add_rejections, add_rows


@task(name="listwise")
def listwise_stage(spec_path: str, snapshot_ids: list[str], version: int) -> StageResult:
    """Rank every selected candidate list; stage accepted rows and rejections with reasons."""
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
    return StageResult(
        kind="listwise", attempted=len(rows), accepted=len(accepted),
        rejections=dict(Counter(f"validate:{row['reason']}" for row, *_ in rejected)),
        teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}],
        prompts={prompt.name: prompt.version},
    )
