"""The pointwise stage: the teacher picks the positives of each candidate list (seeing the
reference answer where the source has one); runs before the listwise stage, which reads
the staged rows back as the ``relevant_docids`` of its rows."""

from __future__ import annotations


from prefect import task

from flows.spec import load_spec
from flows.stages.common import StageResult, stage_backend, warehouse_cursor
from flows.stages.filtering import stage_rows
from flows.stages.listwise import selected_lists
from generators.pointwise import build_judgment_row, plan_judgments
from generators.teachers import TeacherRunner
from prompts import load_prompt
from warehouse.calls import CallStore


@task(name="pointwise")
def pointwise_stage(spec_path: str, snapshot_ids: list[str], version: int) -> StageResult:
    """Judge every selected candidate list in batches; stage accepted rows and rejections."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    prompt = load_prompt(spec.pointwise.prompt)
    backend = stage_backend(spec)
    depth = spec.pointwise.depth or spec.listwise.ranked_depth
    planned = [judgment for lists, passages in selected_lists(spec, warehouse, snapshot_ids)
               for judgment in plan_judgments(lists, passages, prompt, spec.pointwise, depth, backend.model,
                                              spec.sampling)]
    answers, stats = TeacherRunner(backend, CallStore(warehouse)).run([p.call for p in planned], "pointwise")
    rows = [build_judgment_row(p, answers[p.call.key], prompt, backend.name) for p in planned]
    accepted = [row for row in rows if row["reason"] is None]
    rejected = [(row, "validate", row["reason"], None) for row in rows if row["reason"] is not None]
    return StageResult(
        kind="pointwise",
        **stage_rows(spec, warehouse, version, "pointwise", snapshot_ids, accepted, rejected),
        teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}],
        prompts={prompt.name: prompt.version},
    )
