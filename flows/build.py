"""The build flow: sources -> snapshots -> candidates -> stages (one per kind) -> publish -> export.

Tasks are thin: each calls plain functions from generators/, filters/ and warehouse/ and
passes paths and ids. The flow process holds the warehouse file for its whole run (DuckDB
allows one writing process); tasks work on cursors of that one connection.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from flows.prefect_server import prefect_api
from flows.runners import task_runner
from flows.shards import encode_in_shards, retrieve_shard
from flows.spec import BuildSpec, load_spec
from flows.stages.common import StageResult, hold_warehouse, warehouse_cursor
from flows.stages.listwise import listwise_stage
from flows.stages.mixed_cot import mixed_cot_stage
from flows.stages.negatives import negatives_stage
from flows.stages.pointwise import pointwise_stage
from flows.stages.queries import stage_synthesized, synthesize_queries
from generators.candidates import ensure_indexes, queries_without_lists, run_lists, selected_queries
from generators.review import apply_human_judgments
from prompts import load_prompt
from warehouse.candidates import store_candidates
from warehouse.db import Warehouse
from warehouse.errors import SynthrankError
from warehouse.exports import complete_exports, export_files, publish_exports
from warehouse.review import judgments_fingerprint
from warehouse.runs import inputs_fingerprint, rebuilt_unchanged, record_run
from warehouse.snapshots import ingest, latest_snapshot, snapshot_record
from warehouse.testhooks import kill_point
from warehouse.versions import (begin_version, code_fingerprint, copy_rows, discard_version, fail_version, failed_calls,
                                latest_published, publish_version, same_rows, spec_hash)

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
    logger = get_run_logger()
    snapshot_ids = []
    for source in spec.sources:
        if source.path is None and source.hf is None:
            snapshot_ids.append(latest_snapshot(warehouse, source.name).snapshot_id)
            logger.info("source %s: latest snapshot %s", source.name, snapshot_ids[-1])
            continue
        snapshot, _ = ingest(warehouse, source.ref(spec.resolve), source.name, source.domain,
                             require_queries=not source.synthesize)
        snapshot_ids.append(snapshot.snapshot_id)
        logger.info("source %s: snapshot %s (%d passages, %d queries, %d qrels)", source.name,
                    snapshot.snapshot_id, snapshot.n_passages, snapshot.n_queries, snapshot.n_qrels)
    return snapshot_ids


# Queries per retrieval task: bounds the lists in memory at once (a shard's lists are stored
# as it finishes) and spreads retrieval over the task runner. A multiple of the dense
# retriever's query block, so sharding never changes a query's embedding batch.
RETRIEVE_SHARD = 4096


@task(name="candidates", cache_policy=NO_CACHE)
def build_candidates(spec_path: str, snapshot_ids: list[str]) -> int:
    """Candidate lists of the queries each source selects, with its source's settings;
    returns how many lists were computed.

    Only selected queries without a stored list are retrieved for. Each snapshot's indexes
    are built once (embeddings on the task runner) and saved beside the warehouse; retrieval
    runs on the task runner in shards of ``RETRIEVE_SHARD`` queries, every source at once,
    reading those folders; each shard's lists come back here and are stored as it finishes.
    """
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    counts, _ = spec.query_counts(warehouse, snapshot_ids)
    pending, computed = [], 0
    for source, snapshot_id, count in zip(spec.sources, snapshot_ids, counts):
        config = spec.candidates_for(source)
        selected = selected_queries(warehouse, snapshot_id, count, spec.seed)
        queries = queries_without_lists(warehouse, snapshot_id, config, selected)
        if queries and config.method == "run":  # a run file's lists are read, not computed
            store_candidates(warehouse, snapshot_id, config.retriever_id(),
                             run_lists(warehouse, snapshot_id, config, queries))
            computed += len(queries)
        elif queries:
            indexes = ensure_indexes(warehouse, snapshot_id, config, encode_in_shards)
            pending += [(snapshot_id, config, retrieve_shard.submit(indexes, shard, config))
                        for shard in shards(queries, RETRIEVE_SHARD)]
    while pending:  # popped, so a stored shard's lists are freed
        snapshot_id, config, future = pending.pop(0)
        lists = future.result().take()
        store_candidates(warehouse, snapshot_id, config.retriever_id(), lists)
        computed += len(lists)
    get_run_logger().info("candidates: %d lists computed", computed)
    return computed


def shards(queries: dict[str, str], size: int) -> list[dict[str, str]]:
    """``queries`` split, in order, into dicts of at most ``size``."""
    items = list(queries.items())
    return [dict(items[start:start + size]) for start in range(0, len(items), size)]


@task(name="export", cache_policy=NO_CACHE)
def export_parquet(spec_path: str, version: int) -> list[str]:
    """Each kind of the new version as ``OUT/DATASET/vN/<kind>.parquet`` with its manifest.json,
    moved into place whole, then ``OUT/DATASET/versions.json`` (what readers use while a
    later build holds the warehouse)."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    kinds = [kind for kind in ("queries", *STAGES) if kind in spec.kinds]
    paths = [str(path) for path in publish_exports(warehouse, spec.dataset, version, kinds, spec.dataset_dir)]
    get_run_logger().info("exported %s v%d: %s", spec.dataset, version, ", ".join(paths))
    return paths


@flow(name="synthrank-build")
def build_flow(spec_path: str, wait_seconds: float = 0.0, only_if_changed: bool | None = None) -> dict:
    """Run a build spec end to end and publish a new version of its dataset.

    A build first completes what a killed build left: the export of a published version.
    When that version was made from the same inputs (snapshots, spec, prompt versions), it
    is this run's result and nothing new is published. With the spec's ``publish: if_changed``
    (the default), a build whose inputs match a complete latest version made by this very
    code (``up_to_date``) records ``unchanged`` and builds nothing; one whose latest version
    is incomplete (teacher calls failed) or was made by other code is built again, retrying
    those calls, and a new version is published only if its rows changed. With ``publish:
    always`` every build publishes; when the latest version is up to date (and no filter
    compares against published versions), its rows are staged again instead of running the
    stages. A build in which every teacher call, or more than ``max_failed_share`` of them,
    failed raises instead of publishing. The run's final state names the outcome (see
    ``outcome_state``). ``only_if_changed`` is accepted, and ignored, for the scheduled runs
    of deployments an older ``synthrank deploy`` registered with it.
    """
    started, started_at = time.perf_counter(), datetime.now()
    spec = load_spec(spec_path)
    logger = get_run_logger()
    if only_if_changed is not None:
        logger.warning("only_if_changed is ignored: the spec's publish setting decides (this deployment was "
                       "registered by an older synthrank; run synthrank deploy again)")
    logger.info("build %s: kinds %s, teacher %s", spec.dataset, ", ".join(spec.kinds), spec.teacher.backend)
    with hold_warehouse(spec.warehouse_path, wait_seconds) as warehouse:
        snapshot_ids = ingest_sources(spec_path)
        recorded_spec = spec.model_dump(mode="json")
        used = prompt_versions({kind: recorded_spec.get(kind) for kind in spec.kinds})
        if spec.review.override:  # new human judgments are a changed input
            used["human_judgments"] = judgments_fingerprint(warehouse, spec.dataset)
        inputs = inputs_fingerprint(snapshot_ids, spec_hash(recorded_spec), used)
        base = {"dataset": spec.dataset, "inputs": inputs, "warehouse": str(spec.warehouse_path)}
        completed = complete_exports(warehouse, spec.dataset, spec.dataset_dir)
        latest = latest_published(warehouse, spec.dataset)
        same_inputs = latest is not None and latest["manifest"].get("inputs") == inputs
        if same_inputs and latest["version"] in completed:
            record_run(warehouse, spec.dataset, started_at, "published", latest["version"], inputs,
                       "export completed after an interrupted build")
            outputs = [str(path) for path in export_files(spec.dataset_dir / f"v{latest['version']}")]
            return outcome_state({**latest["manifest"], **base, "outcome": "resumed", "version": latest["version"],
                                  "outputs": outputs, "wall_seconds": round(time.perf_counter() - started, 2)})
        if_changed = spec.publish == "if_changed"
        current = same_inputs and up_to_date(warehouse, latest, inputs)
        if if_changed and current:
            record_run(warehouse, spec.dataset, started_at, "unchanged", None, inputs)
            return outcome_state({**base, "outcome": "unchanged", "version": latest["version"]})
        reuse = current and not compares_with_published(spec)
        if reuse:  # nothing a stage reads has changed: the latest version's rows are the answer
            snapshot_ids = latest["manifest"]["snapshot_ids"]
        else:
            synthesized = synthesize_queries(spec_path, snapshot_ids) if "queries" in spec.kinds else None
            snapshot_ids = synthesized["snapshot_ids"] if synthesized else snapshot_ids
            candidates_started = time.perf_counter()
            build_candidates(spec_path, snapshot_ids)
            candidates_seconds = round(time.perf_counter() - candidates_started, 2)
        version = begin_version(warehouse, spec.dataset, recorded_spec, snapshot_ids)
        try:
            if reuse:
                manifest = reuse_rows(spec, latest, version, time.perf_counter() - started)
            else:
                manifest = build_rows(spec_path, snapshot_ids, version, synthesized, started)
                manifest["timings"]["candidates_seconds"] = candidates_seconds
            check_failed_share(spec, manifest)
            if spec.review.override and not reuse:  # reused rows carry their judgments already
                manifest["human_review"] = human_review(spec, version)
            if if_changed and same_inputs and same_rows(warehouse, spec.dataset, version, latest):
                discard_version(warehouse, spec.dataset, version)
                record_run(warehouse, spec.dataset, started_at, "unchanged", latest["version"], inputs,
                           rebuilt_why(latest))
                return outcome_state({**manifest, **base, "outcome": "unchanged", "version": latest["version"]})
            publish_version(warehouse, spec.dataset, version, {**manifest, "inputs": inputs})
        except BaseException as exc:
            logger.error("build %s v%d failed: %s: %s", spec.dataset, version, type(exc).__name__, exc, exc_info=exc)
            fail_version(warehouse, spec.dataset, version, f"{type(exc).__name__}: {exc}")
            record_run(warehouse, spec.dataset, started_at, "failed", version, inputs, repr(exc)[:500])
            raise
        kill_point("published")
        record_run(warehouse, spec.dataset, started_at, "published", version, inputs)
        kill_point("recorded")
        logger.info("published %s v%d", spec.dataset, version)
        outputs = export_parquet(spec_path, version)
    return outcome_state({**manifest, **base, "outcome": "published", "version": version, "outputs": outputs,
                          "wall_seconds": round(time.perf_counter() - started, 2)})


def build_rows(spec_path: str, snapshot_ids: list[str], version: int, synthesized: dict | None,
               started: float) -> dict:
    """Run the spec's stages into the building ``version``; returns its manifest."""
    spec = load_spec(spec_path)
    warehouse = warehouse_cursor(spec.warehouse_path)
    logger = get_run_logger()
    results, stage_seconds = [], {}
    if synthesized:
        results.append(stage_synthesized(spec, warehouse, version, synthesized))
    for kind in (kind for kind in STAGES if kind in spec.kinds):
        stage_started = time.perf_counter()
        logger.info("stage %s: started", kind)
        results.append(STAGES[kind](spec_path, snapshot_ids, version))
        stage_seconds[kind] = round(time.perf_counter() - stage_started, 2)
        logger.info("stage %s: %s", kind, stage_outcome(results[-1], stage_seconds[kind]))
    manifest = build_manifest(spec, snapshot_ids, results, time.perf_counter() - started)
    manifest["timings"]["stage_seconds"] = stage_seconds
    manifest["sources"] = [snapshot_record(warehouse, sid) for sid in snapshot_ids]
    manifest["mixture"] = spec.query_counts(warehouse, snapshot_ids)[1]
    return manifest


def up_to_date(warehouse: Warehouse, latest: dict, inputs: str) -> bool:
    """Whether a published version made from this build's ``inputs`` is all a rebuild would
    give: it is complete (no failed call to retry) and was made by this very code
    (``code_fingerprint``), or this code rebuilt it and changed no row."""
    if failed_calls(latest["manifest"]):
        return False
    return (latest["manifest"].get("code") == code_fingerprint()
            or rebuilt_unchanged(warehouse, latest["dataset"], latest["version"], inputs))


def rebuilt_why(latest: dict) -> str:
    """Why a build with unchanged inputs ran its stages again, for a run that changed no row."""
    failed = failed_calls(latest["manifest"])
    return f"retried {failed} failed teacher calls; no row changed" if failed else "code changed; no row changed"


def compares_with_published(spec: BuildSpec) -> bool:
    """Whether a filter compares rows with published versions (the latest one included, so a
    rebuild's rows differ from it)."""
    return any(item.get("against_published") for chain in spec.filters.values() for item in chain)


def reuse_rows(spec: BuildSpec, latest: dict, version: int, seconds: float) -> dict:
    """Stage ``latest``'s rows unchanged in ``version``; returns its manifest: ``latest``'s,
    with every teacher call counted as reused and nothing spent."""
    warehouse = warehouse_cursor(spec.warehouse_path)
    copy_rows(warehouse, spec.dataset, latest["version"], version)
    get_run_logger().info("inputs and code unchanged since %s@%d: its rows are reused, no stage runs",
                          spec.dataset, latest["version"])
    teachers = [{**teacher, "calls_made": 0, "calls_reused": teacher["calls_made"] + teacher["calls_reused"],
                 "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "errors": [],
                 "cost_usd": None if spec.pricing is None else 0.0}
                for teacher in latest["manifest"]["teachers"]]
    kept = {key: value for key, value in latest["manifest"].items()
            if key not in ("inputs", "content", "tokens")}
    return {**kept, "teachers": teachers, "cost": build_cost(spec, teachers), "reused_rows_of": latest["version"],
            "timings": {"build_seconds": round(seconds, 2), "stage_seconds": {}, "candidates_seconds": 0.0}}


def check_failed_share(spec: BuildSpec, manifest: dict) -> None:
    """Raise when every teacher call of the build failed, or more than ``max_failed_share``."""
    failed = failed_calls(manifest)
    total = sum(t["calls_made"] + t["calls_reused"] for t in manifest["teachers"])
    if failed and (failed == total or failed > spec.max_failed_share * total):
        errors = [" ".join(error.split()) for t in manifest["teachers"] for error in t.get("errors", [])]
        limit = "every one" if failed == total else f"more than max_failed_share {spec.max_failed_share:g}"
        raise SynthrankError(
            f"{failed} of {total} teacher calls failed ({limit}), so nothing was published; first error: "
            f"{errors[0] if errors else 'n/a'}. Run the build again once the teacher answers: it retries "
            "exactly the failed calls")


def outcome_state(summary: dict) -> State:
    """The run's final state: Completed, or a completed state named Incomplete (teacher calls
    failed) or Unchanged, with a message saying what happened (also logged, and published with
    the summary as artifacts); the summary is its result."""
    where = f"{summary['dataset']}@{summary['version']}"
    failed = failed_calls(summary)
    if summary["outcome"] == "unchanged":
        name, message = "Unchanged", f"inputs unchanged since {where}; nothing published"
        if failed:
            name, message = "Incomplete", (f"retried the failed teacher calls of {where}: {failed} failed again "
                                           "and no row changed; nothing published")
    else:
        done = "published" if summary["outcome"] == "published" else "completed the interrupted export of"
        name, message = "Completed", f"{done} {where}"
        if failed:
            name, message = "Incomplete", (f"{done} {where}, incomplete: {failed} teacher calls failed; "
                                           "the next run retries them")
    get_run_logger().info(message)
    publish_summary(summary)
    return Completed(name=name, message=message, data=summary)


def human_review(spec: BuildSpec, version: int) -> dict:
    """People's judgments (``synthrank review pull``) override the teacher's labels in the
    staged version; what changed goes in the manifest (see generators/review.py)."""
    return apply_human_judgments(warehouse_cursor(spec.warehouse_path), spec.dataset, version, spec.kinds)


def stage_outcome(result: StageResult, seconds: float) -> str:
    """One log line: rows accepted / attempted, rejections by reason, teacher calls, time."""
    calls = ", ".join(f"{t.get('model')}: {t.get('calls_made', 0)} calls made, {t.get('calls_reused', 0)} reused, "
                      f"{t.get('calls_failed', 0)} failed" for t in result["teachers"]) or "no teacher calls"
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(result["rejections"].items())) or "none"
    return (f"{result['accepted']} of {result['attempted']} rows accepted; rejected: {rejected}; {calls}; "
            f"{seconds:.1f} s")


def summary_rows(summary: dict) -> list[dict]:
    """The build summary as table rows (what, value)."""
    rows = [{"what": "dataset", "value": summary["dataset"]}, {"what": "outcome", "value": summary["outcome"]}]
    if "counts" not in summary:  # unchanged: nothing was built
        return rows
    rows.append({"what": "version", "value": f"v{summary['version']}"})
    rows += [{"what": f"{kind} rows accepted / attempted", "value": f"{n} / {summary['attempted'].get(kind)}"}
             for kind, n in summary["counts"].items()]
    rows += [{"what": f"rejected {reason}", "value": n} for reason, n in sorted(summary["rejections"].items())]
    cost = summary["cost"]
    rows += [{"what": "teacher calls made", "value": cost["calls_made"]},
             {"what": "tokens (prompt / completion)", "value": f"{cost['prompt_tokens']} / {cost['completion_tokens']}"},
             {"what": "teacher seconds", "value": cost["teacher_seconds"]},
             {"what": "cost (USD)", "value": "n/a (no pricing in the spec)" if cost["usd"] is None else cost["usd"]},
             {"what": "wall seconds", "value": summary.get("wall_seconds", "n/a")}]
    rows += [{"what": "export", "value": path} for path in summary.get("outputs", [])]
    return rows


def summary_markdown(summary: dict) -> str:
    lines = [f"# Build of {summary['dataset']}: {summary['outcome']}", "", "| what | value |", "|---|---|"]
    lines += [f"| {row['what']} | {row['value']} |" for row in summary_rows(summary)]
    return "\n".join(lines) + "\n"


def publish_summary(summary: dict) -> None:
    """The build summary as Prefect artifacts: a table and a Markdown document, keyed by dataset."""
    key = re.sub(r"[^a-z0-9-]+", "-", f"build-{summary['dataset'].lower()}").strip("-")
    what = f"v{summary['version']}" if summary["outcome"] == "published" else summary["outcome"]
    create_table_artifact(table=summary_rows(summary), key=key,
                          description=f"synthrank build of {summary['dataset']}: {what}")
    create_markdown_artifact(markdown=summary_markdown(summary), key=f"{key}-summary",
                             description=f"synthrank build of {summary['dataset']}: {what}")


def run_build(spec_path: str, **parameters) -> dict:
    """``build_flow`` on the task runner the spec's ``runner`` section asks for, against the
    configured Prefect API or a temporary server that does not outlive this process."""
    runner = task_runner(load_spec(spec_path).runner)
    with prefect_api():
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
        "code": code_fingerprint(),
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
