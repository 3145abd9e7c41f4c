"""The negatives stage: mine hard negatives per query, have the teacher judge false negatives."""

from __future__ import annotations

from prefect import task

from flows.spec import load_spec
from flows.stages.common import StageResult, stage_backend, warehouse_cursor
from flows.stages.filtering import stage_rows
from generators.negatives import apply_verdicts, mine_snapshot, plan_judgments
from generators.teachers import TeacherRunner
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.snapshots import find_snapshot


@task(name="negatives")
def negatives_stage(spec_path: str, snapshot_ids: list[str], version: int) -> StageResult:
    """Mine every selected query with positives; judge, stage rows (and queries left with no
    candidate as rejections)."""
    spec = load_spec(spec_path)
    config = spec.negatives
    warehouse = warehouse_cursor(spec.warehouse_path)
    rows = []
    counts, _ = spec.query_counts(warehouse, snapshot_ids)
    for snapshot_id, count in zip(snapshot_ids, counts):
        rows += mine_snapshot(warehouse, find_snapshot(warehouse, snapshot_id), config, count, spec.seed)
    mined = [row for row in rows if row["negatives"]]
    rejected = [(row, "mine", "no_candidates", None) for row in rows if not row["negatives"]]
    prompt = load_prompt(config.judge_prompt)
    backend = stage_backend(spec)
    planned = plan_judgments(mined, prompt, config, backend.model, spec.sampling)
    answers, stats = TeacherRunner(backend, CallStore(warehouse)).run([p.call for p in planned],
                                                                      "fn-judge")
    judged = apply_verdicts(mined, planned, answers, prompt, backend.name, backend.model, config,
                            spec.sampling)
    return StageResult(
        kind="negatives",
        **stage_rows(spec, warehouse, version, "negatives", snapshot_ids, judged, rejected),
        teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}] if planned else [],
        prompts={prompt.name: prompt.version} if config.judge != "none" else {},
    )
