"""The listwise stage: rank candidate lists with the teacher (sliding windows, shuffled
samples, top-up of lists short of valid samples), validate strictly, attach the pointwise
positives staged in the same version, filter, and add one consensus row per list."""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.spec import BuildSpec, load_spec
from flows.stages.common import StageResult, stage_backend, warehouse_cursor
from flows.stages.filtering import RowStager
from generators.candidates import CandidateList, lists_of, selected_queries
from filters.consistency import consensus_rows
from generators.listwise import ListwiseConfig, build_row, plan_samples, rank_with_top_up, short_lists
from generators.pointwise import attach_positives, positives_by_query
from generators.teachers import TeacherRunner, TeacherStats
from generators.teachers.runner import fewer_collections
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
    counts, _ = spec.query_counts(warehouse, snapshot_ids)
    for source, snapshot_id, count in zip(spec.sources, snapshot_ids, counts):
        snapshot = find_snapshot(warehouse, snapshot_id)
        qids = selected_queries(warehouse, snapshot_id, count, spec.seed)
        size = chunk or max(len(qids), 1)
        for start in range(0, len(qids), size):  # each chunk reads only its own queries and lists
            part = lists_of(warehouse, snapshot, spec.candidates_for(source), qids[start:start + size])
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
    stager = RowStager(spec, warehouse, version, "listwise", snapshot_ids, consensus_maker(spec.listwise))
    for lists, passages in selected_lists(spec, warehouse, snapshot_ids, LIST_CHUNK):
        planned = plan_samples(lists, passages, prompt, spec.listwise, backend.model, spec.sampling, spec.seed)
        with fewer_collections():  # the chunk's samples, answers and rows all live on (see there)
            rankings, chunk_stats = rank_with_top_up(planned, runner, spec.listwise, spec.seed, "listwise")
            rows = [attach_positives(build_row(ranking, prompt, backend.name), positives) for ranking in rankings]
        stats.add(chunk_stats)
        stager.add(*apply_short_list_policy(rows, short_lists(rankings, spec.listwise.samples), spec.listwise))
    return StageResult(
        kind="listwise",
        **stager.result(),
        teachers=[{"backend": backend.name, "model": backend.model, **stats.as_dict()}],
        prompts={prompt.name: prompt.version},
    )


def apply_short_list_policy(rows: list[dict], short: dict[str, int], config: ListwiseConfig
                            ) -> tuple[list[dict], list[tuple[dict, str, str, float | None]]]:
    """(accepted rows, rejections): invalid samples are rejected with their reason; valid
    samples of a list still short after top-up are rejected ("too_few_samples", score = the
    samples missing) or kept with ``samples_short``, as ``short_lists`` says. Accepted rows
    say how many valid samples their list has (``valid_samples``), so a filter can tell when
    an earlier one removed some."""
    valid = Counter(row["list_id"] for row in rows if row["reason"] is None)
    accepted, rejected = [], []
    for row in rows:
        missing = short.get(row["list_id"])
        if row["reason"] is not None:
            rejected.append((row, "validate", row["reason"], None))
        elif missing and config.short_lists == "reject":
            rejected.append(({**row, "reason": "too_few_samples"}, "validate", "too_few_samples", float(missing)))
        else:
            accepted.append({**row, "valid_samples": valid[row["list_id"]],
                             **({"samples_short": missing} if missing else {})})
    return accepted, rejected


def consensus_maker(config: ListwiseConfig):
    """What adds the consensus rows to the kept rows, or None when the build has none."""
    if config.samples < 2 or config.consensus == "off":
        return None
    return lambda kept: consensus_rows(kept, config.consensus_method)
