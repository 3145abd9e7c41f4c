"""Work that follows what is asked: saved indexes, lists only for selected queries, chunked
listwise staging, exports streamed in row groups."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from generators.candidates import (CandidateConfig, _top_indices, bm25_candidates, bm25_index_name, ensure_candidates,
                                   ensure_indexes, passage_text, selected_queries)
from tests.specs import cisi_listwise_spec
from warehouse.candidates import load_candidates, stored_qids
from warehouse.db import Warehouse
from warehouse.formats.registry import write_parquet, write_parquet_batches
from warehouse.indexes import META_NAME, index_dir
from warehouse.snapshots import ingest, load_passages, load_queries
from warehouse.versions import version_info


def one_pass_bm25(passages: dict, queries: dict[str, str], k: int) -> dict[str, list[str]]:
    """The lists of a BM25 index built from the whole corpus in one bm25s call (as builds
    made them before indexes were saved), every passage sorted by score."""
    import bm25s

    docids = list(passages)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([passage_text(*passages[d]) for d in docids], stopwords="en",
                                   show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(list(queries.values()), stopwords="en", show_progress=False, return_ids=False)
    return {qid: [docids[int(i)] for i in np.argsort(-retriever.get_scores(words), kind="stable")[:k]]
            for qid, words in zip(queries, tokens)}  # best first, ties by passage order


def test_bm25_lists_come_only_for_the_asked_queries_from_an_index_built_once(tmp_path, shared_data):
    config = CandidateConfig(method="bm25", k=10)
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        snapshot, _ = ingest(wh, str(shared_data / "cisi"), "cisi", "library-science")
        sid = snapshot.snapshot_id
        first = selected_queries(wh, sid, 5, seed=0)
        assert ensure_candidates(wh, sid, config, first) == 5
        assert stored_qids(wh, sid, config.retriever_id()) == set(first)  # not the other 71 queries

        meta = index_dir(wh.path, sid, bm25_index_name("en")) / META_NAME
        built_at = meta.stat().st_mtime_ns
        more = selected_queries(wh, sid, 12, seed=1)
        new = [q for q in more if q not in first]
        assert ensure_candidates(wh, sid, config, more) == len(new)  # stored lists are reused
        assert meta.stat().st_mtime_ns == built_at  # the saved index was loaded, not rebuilt
        assert ensure_candidates(wh, sid, config, more) == 0

        asked = sorted(set(first) | set(more))
        stored = load_candidates(wh, sid, config.retriever_id(), asked)
        queries = {qid: text for qid, (text, _) in load_queries(wh, sid).items() if qid in stored}
        expected = one_pass_bm25(load_passages(wh, sid), queries, 10)
    assert {qid: [d for d, _ in ranked] for qid, ranked in stored.items()} == expected


def cisi_index(wh: Warehouse, shared_data) -> tuple[dict[str, str], dict[str, str]]:
    """The CISI snapshot's saved BM25 index folders and its queries (qid -> text)."""
    snapshot, _ = ingest(wh, str(shared_data / "cisi"), "cisi", "library-science")
    indexes = ensure_indexes(wh, snapshot.snapshot_id, CandidateConfig(method="bm25"))
    return indexes, {qid: text for qid, (text, _) in load_queries(wh, snapshot.snapshot_id).items()}


def test_shards_retrieving_at_once_share_one_loaded_index(tmp_path, shared_data, monkeypatch):
    import generators.candidates as candidates

    loads = []
    load_bm25 = candidates._load_bm25
    monkeypatch.setattr(candidates, "_load_bm25", lambda folder: loads.append(folder) or load_bm25(folder))
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        indexes, queries = cisi_index(wh, shared_data)
    folder = Path(indexes["bm25"])
    alone = bm25_candidates(folder, queries, 10)
    assert len(loads) == 1 and not candidates._loaded  # let go once its shard is done

    parts = [dict(list(queries.items())[i::3]) for i in range(3)]
    with candidates._shared_index(folder, candidates._load_bm25):  # a shard in flight
        with ThreadPoolExecutor(3) as pool:
            shards = list(pool.map(lambda part: bm25_candidates(folder, part, 10), parts))
        assert len(loads) == 2  # the three shards used the index the one in flight loaded
    assert not candidates._loaded
    assert {qid: ranked for shard in shards for qid, ranked in shard.items()} == alone


@pytest.mark.slow
def test_retrieved_lists_are_freed_once_the_flow_takes_them(tmp_path, shared_data, prefect_harness):
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.build import shards
    from flows.shards import retrieve_shard
    from generators.candidates import rank_candidates

    config = CandidateConfig(method="bm25", k=10)
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        indexes, queries = cisi_index(wh, shared_data)

    @task(cache_policy=NO_CACHE)
    def returned_as_it_is(shard: dict[str, str]) -> dict:
        return rank_candidates(indexes, shard, config)

    def holders(lists: dict) -> int:
        """References to ``lists`` other than the caller's name and getrefcount's argument."""
        return sys.getrefcount(lists) - 3

    @task(cache_policy=NO_CACHE)  # as build_candidates: shards submitted from a task
    def retrieve() -> tuple[dict, list[int], list[int]]:
        parts = shards(queries, 20)
        boxed = [retrieve_shard.submit(indexes, part, config) for part in parts]
        plain = [returned_as_it_is.submit(part) for part in parts]
        lists, held_boxed, held_plain = {}, [], []
        for future in boxed:
            ranked = future.result().take()
            held_boxed.append(holders(ranked))
            lists.update(ranked)
        for future in plain:
            ranked = future.result()
            held_plain.append(holders(ranked) - 1)  # less the state of the future in `plain`
        return lists, held_boxed, held_plain

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def build() -> tuple[dict, list[int], list[int]]:
        return retrieve()

    lists, held_boxed, held_plain = build()
    assert lists == bm25_candidates(indexes["bm25"], queries, 10)
    assert all(held_plain)  # Prefect keeps a task's result until the task that submitted it ends ...
    assert held_boxed == [0, 0, 0, 0]  # ... but a shard's lists, taken from their box, are the flow's alone


def test_top_indices_keep_a_stable_sort_order_among_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(np.float32)  # many ties, at the cut too
    for top in (1, 7, 50, 200, 300):
        assert _top_indices(scores, top).tolist() == np.argsort(-scores, kind="stable")[:top].tolist()


def rows_with_shifting_types() -> list[dict]:
    """Rows whose fields type differently from batch to batch: a null column that later
    holds text, a field that is text in one batch and a mapping in another, verdict maps
    with different keys, a field that appears only late."""
    rows = []
    for i in range(10):
        rows.append({
            "row_id": f"r{i:02d}", "reasoning": None if i < 4 else f"why {i}",
            "answer": "plain" if i < 4 else {"ranked": [i, i + 1]},
            "filter_verdicts": {f"f{i % 3}": {"keep": True, "reason": None, "score": float(i)}},
            "windows": [{"start": 0, "presented": [f"d{i}"]}],
            **({"late": i} if i >= 8 else {}),
        })
    return rows


def test_parquet_in_batches_holds_the_same_rows_as_one_table(tmp_path):
    rows = rows_with_shifting_types()
    whole = pq.read_table(write_parquet(rows, tmp_path / "whole.parquet")).to_pylist()
    path = write_parquet_batches(lambda: (rows[i:i + 4] for i in range(0, len(rows), 4)), tmp_path / "b.parquet")
    file = pq.ParquetFile(path)
    assert file.metadata.num_row_groups == 3
    batched = file.read().to_pylist()
    assert [r["row_id"] for r in batched] == [r["row_id"] for r in rows]
    assert batched[0]["answer"] == json.dumps("plain") and json.loads(batched[5]["answer"]) == {"ranked": [5, 6]}
    assert whole[5]["answer"] == batched[5]["answer"]  # text in one batch, mapping in another: JSON everywhere
    assert [r["reasoning"] for r in batched] == [r["reasoning"] for r in whole]
    assert [r["late"] for r in batched] == [None] * 8 + [8, 9]
    assert [r["windows"] for r in batched] == [r["windows"] for r in whole]
    assert [r["filter_verdicts"] for r in batched] == [r["filter_verdicts"] for r in whole]
    for got, row in zip(batched, rows):  # verdicts are a list of {filter, keep, reason, score}
        assert {v["filter"]: {k: v[k] for k in ("keep", "reason", "score")} for v in got["filter_verdicts"]} == \
            row["filter_verdicts"]
    again = write_parquet_batches(lambda: (rows[i:i + 4] for i in range(0, len(rows), 4)), tmp_path / "c.parquet")
    assert again.read_bytes() == path.read_bytes()
    one = write_parquet_batches(lambda: iter([rows]), tmp_path / "one.parquet")
    assert one.read_bytes() == (tmp_path / "whole.parquet").read_bytes()


@pytest.mark.slow
def test_listwise_rows_staged_in_chunks_equal_rows_staged_at_once(tmp_path, shared_data, prefect_harness, serve,
                                                                   monkeypatch):
    import flows.stages.listwise as listwise_stage
    from flows.build import run_build

    teacher = serve(mode="score")
    fingerprints, summaries = {}, {}
    for chunk in (2, 1000):  # five lists of two samples: three chunks, then one
        monkeypatch.setattr(listwise_stage, "LIST_CHUNK", chunk)
        spec = cisi_listwise_spec(tmp_path / f"chunk-{chunk}.yaml", shared_data / "cisi", f"cisi-chunk-{chunk}",
                                  [{"name": "consistency_agreement", "min_tau": -1.0}], teacher.base_url, queries=5)
        summary = summaries[chunk] = run_build(spec)
        with Warehouse.open(summary["warehouse"], read_only=True) as wh:
            fingerprints[chunk] = version_info(wh, summary["dataset"], summary["version"])["manifest"]["content"]
            assert len(stored_qids(wh, summary["snapshot_ids"][0], "bm25:k=4:stopwords=en")) == 5  # of 76
    small, large = summaries[2], summaries[1000]
    assert small["counts"] == large["counts"] and small["counts"]["listwise"] >= 10  # samples + consensus rows
    assert fingerprints[2] == fingerprints[1000]  # the same rows, data and lineage
    assert small["filters"] == large["filters"]  # per-step counts added up over the chunks
    assert small["teachers"][0]["calls_made"] == 10
    assert large["teachers"][0]["calls_made"] == 0  # the second build reused every answer


def write_rerun_spec(tmp_path, shared_data, teacher, publish: str) -> str:
    return cisi_listwise_spec(tmp_path / f"rerun-{publish}.yaml", shared_data / "cisi", "cisi-rerun",
                              [{"name": "consistency_agreement"}], teacher.base_url, queries=6, publish=publish)


@pytest.mark.slow
def test_an_unchanged_rerun_builds_nothing_and_reused_rows_are_exactly_those_a_rebuild_makes(
        tmp_path, shared_data, prefect_harness, serve, monkeypatch):
    import flows.build as build
    import warehouse.runs as runs

    def other_code(patched) -> None:  # as after an upgrade of synthrank
        for module in (build, runs):
            patched.setattr(module, "code_fingerprint", lambda: "other code")

    teacher = serve(mode="score")
    if_changed = write_rerun_spec(tmp_path, shared_data, teacher, "if_changed")
    always = write_rerun_spec(tmp_path, shared_data, teacher, "always")
    first = build.run_build(if_changed)
    unchanged = build.run_build(if_changed)  # the default: nothing to do
    with monkeypatch.context() as patched:
        other_code(patched)
        rebuilt_same = build.run_build(if_changed)  # its stages run again; no row changed: nothing published
        # that code has checked v1: nothing to do (with the parameter old deployments pass)
        after_rebuilt = build.run_build(if_changed, only_if_changed=True)
    staged = build.run_build(always)  # another spec: its stages run, every answer stored
    reused = build.run_build(always)  # same inputs, same code: the rows of `staged`, no stage
    other_code(monkeypatch)
    rebuilt = build.run_build(always)

    assert (unchanged["outcome"], unchanged["version"]) == ("unchanged", first["version"])
    for summary in (rebuilt_same, after_rebuilt):
        assert (summary["outcome"], summary["version"]) == ("unchanged", first["version"])
    assert "teachers" in rebuilt_same and "teachers" not in after_rebuilt  # its stages ran; then none did
    published = (first, staged, reused, rebuilt)
    assert [s["version"] for s in published] == [first["version"] + i for i in range(4)]
    assert reused["reused_rows_of"] == staged["version"]
    assert not any("reused_rows_of" in s for s in (first, staged, rebuilt))
    made = first["teachers"][0]["calls_made"]
    assert made == 12 and first["rejections"]  # 6 lists x 2 samples; the filter rejected some rows
    for summary in published[1:]:  # every answer stored: no call made, all counted as reused
        assert (summary["teachers"][0]["calls_made"], summary["teachers"][0]["calls_reused"]) == (0, made)
        assert summary["cost"]["calls_made"] == 0
        assert (summary["counts"], summary["rejections"]) == (first["counts"], first["rejections"])
    with Warehouse.open(first["warehouse"], read_only=True) as wh:
        content = [version_info(wh, s["dataset"], s["version"])["manifest"]["content"] for s in published]
        outcomes = [(run["outcome"], run["detail"]) for run in runs.list_runs(wh, "cisi-rerun")]
    assert all(c == content[0] for c in content)  # the same rows, data and lineage
    assert outcomes[1:4] == [("unchanged", ""), ("unchanged", "code changed; no row changed"), ("unchanged", "")]
    exported = [pq.read_table(next(p for p in s["outputs"] if p.endswith("listwise.parquet"))).to_pylist()
                for s in published]
    assert all(rows == exported[0] for rows in exported)
