"""Ingestion into snapshots: real collections, idempotence, and bad input rejected whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.snapshots import ingest, list_snapshots, load_qrels

# The counts the data README lists: passages, queries, judged pairs.
README_COUNTS = {"cisi": (1460, 76, 3114), "cacm": (3204, 52, 796), "korquad": (341, 2172, 2172)}


@pytest.fixture
def warehouse(tmp_path):
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        yield wh


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_real_collections_ingest_with_readme_counts(shared_data, warehouse, name):
    snapshot, created = ingest(warehouse, shared_data / name, name, name)
    assert created
    assert (snapshot.n_passages, snapshot.n_queries, snapshot.n_qrels) == README_COUNTS[name]
    stored = warehouse.con.execute(
        "SELECT (SELECT count(*) FROM passages WHERE snapshot_id = $s),"
        " (SELECT count(*) FROM queries WHERE snapshot_id = $s),"
        " (SELECT count(*) FROM qrels WHERE snapshot_id = $s)", {"s": snapshot.snapshot_id}).fetchone()
    assert stored == README_COUNTS[name]


def test_korquad_keeps_reference_answers(shared_data, warehouse):
    snapshot, _ = ingest(warehouse, shared_data / "korquad", "korquad", "wiki-ko")
    answers = warehouse.con.execute(
        "SELECT answers FROM queries WHERE snapshot_id = ? AND qid = '6557712-0-0'",
        [snapshot.snapshot_id]).fetchone()[0]
    assert answers == ["98골"]


def test_answers_are_stored_as_given(tmp_path, warehouse):
    answers = {"q1": None, "q2": ["say \"hi\"", "a, b", "é 98골"], "q3": ["x"], "q4": None}
    queries = [{"_id": qid, "text": f"question {qid}", **({"answers": a} if a is not None else {})}
               for qid, a in answers.items()]
    snapshot, _ = ingest(warehouse, write_beir(tmp_path / "qa", GOOD_CORPUS, queries), "qa", "test")
    stored = dict(warehouse.con.execute("SELECT qid, answers FROM queries WHERE snapshot_id = ?",
                                        [snapshot.snapshot_id]).fetchall())
    assert stored == answers


def test_ingesting_a_beir_folder_does_not_import_pandas(tmp_path):
    """pyarrow imports pandas (~0.5 s) the first time it converts Python lists."""
    folder = write_beir(tmp_path / "b", GOOD_CORPUS, GOOD_QUERIES, ["q1\td1\t1"])
    code = ("import sys; from warehouse.db import Warehouse; from warehouse.snapshots import ingest\n"
            f"with Warehouse.open({str(tmp_path / 'wh.duckdb')!r}) as wh: ingest(wh, {str(folder)!r}, 'b', 'test')\n"
            "print('pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "False"


def test_identical_content_returns_same_snapshot_and_writes_nothing(shared_data, warehouse):
    first, created_first = ingest(warehouse, shared_data / "cacm", "cacm", "cs")
    rows_before = warehouse.con.execute("SELECT count(*) FROM passages").fetchone()[0]
    second, created_second = ingest(warehouse, shared_data / "cacm", "cacm", "cs")
    assert created_first and not created_second
    assert second.snapshot_id == first.snapshot_id
    assert warehouse.con.execute("SELECT count(*) FROM passages").fetchone()[0] == rows_before
    assert len(list_snapshots(warehouse)) == 1


def write_beir(folder: Path, corpus: list, queries: list, qrels: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in (("corpus", corpus), ("queries", queries)):
        lines = [r if isinstance(r, (str, bytes)) else json.dumps(r) for r in records]
        data = b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines)
        (folder / f"{name}.jsonl").write_bytes(data + b"\n")
    if qrels is not None:
        (folder / "qrels").mkdir(exist_ok=True)
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return folder


GOOD_CORPUS = [{"_id": "d1", "title": "A", "text": "alpha"}, {"_id": "d2", "title": "B", "text": "beta"}]
GOOD_QUERIES = [{"_id": "q1", "text": "what is alpha"}]

BAD_INPUTS = {
    "malformed_json": (
        [json.dumps(GOOD_CORPUS[0]), '{"_id": "d2", "text": '], GOOD_QUERIES, None,
        r"corpus\.jsonl:2: malformed JSON"),
    "missing_id": (
        [GOOD_CORPUS[0], {"title": "B", "text": "beta"}], GOOD_QUERIES, None,
        r"corpus\.jsonl:2: missing field '_id'"),
    "duplicate_id": (
        [GOOD_CORPUS[0], {"_id": "d1", "text": "again"}], GOOD_QUERIES, None,
        r"corpus\.jsonl:2: duplicate passage id 'd1'"),
    "qrels_unknown_passage": (
        GOOD_CORPUS, GOOD_QUERIES, ["q1\td9\t1"], r"test\.tsv:2: qrels name unknown passage id 'd9'"),
    "qrels_unknown_query": (
        GOOD_CORPUS, GOOD_QUERIES, ["q7\td1\t1"], r"test\.tsv:2: qrels name unknown query id 'q7'"),
    "non_utf8": (
        [GOOD_CORPUS[0], b'{"_id": "d2", "text": "caf\xe9"}'], GOOD_QUERIES, None,
        r"corpus\.jsonl:2: not valid UTF-8 \(byte 0xe9"),
    "empty_passage": (
        [GOOD_CORPUS[0], {"_id": "d2", "title": "", "text": "  "}], GOOD_QUERIES, None,
        r"corpus\.jsonl:2: passage 'd2' has empty title and text"),
    "empty_query": (
        GOOD_CORPUS, [{"_id": "q1", "text": ""}], None, r"queries\.jsonl:1: query 'q1' has empty text"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_place_and_writes_no_snapshot(tmp_path, warehouse, case):
    corpus, queries, qrels, message = BAD_INPUTS[case]
    folder = write_beir(tmp_path / case, corpus, queries, qrels)
    with pytest.raises(InputError, match=message):
        ingest(warehouse, folder, case, "test")
    for table in ("snapshots", "passages", "queries", "qrels"):
        assert warehouse.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_empty_folder_is_an_error(tmp_path, warehouse):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a BEIR folder"):
        ingest(warehouse, tmp_path / "empty", "empty", "test")


def test_query_list_file_and_parquet_give_same_snapshot(tmp_path, warehouse):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [
        {"qid": "q1", "query": "alpha?", "answers": ["a"], "passages": [
            {"docid": "d1", "title": "A", "text": "alpha", "relevance": 1},
            {"docid": "d2", "title": "B", "text": "beta", "relevance": 0}]},
        {"qid": "q2", "query": "beta?", "answers": ["b"], "passages": [
            {"docid": "d2", "title": "B", "text": "beta", "relevance": 2}]},
    ]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records))
    parquet = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    from_jsonl, _ = ingest(warehouse, jsonl, "pairs", "test")
    from_parquet, created = ingest(warehouse, parquet, "pairs", "test")
    assert (from_jsonl.n_passages, from_jsonl.n_queries, from_jsonl.n_qrels) == (2, 2, 2)
    assert from_parquet.snapshot_id == from_jsonl.snapshot_id and not created
    assert load_qrels(warehouse, from_jsonl.snapshot_id) == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_hugging_face_save_to_disk_folder(tmp_path, warehouse):
    import datasets

    parts = datasets.DatasetDict({
        "corpus": datasets.Dataset.from_list([{"_id": "d1", "title": "A", "text": "alpha"},
                                              {"_id": "d2", "title": "B", "text": "beta"}]),
        "queries": datasets.Dataset.from_list([{"_id": "q1", "text": "alpha?"}]),
        "qrels": datasets.Dataset.from_list([{"query-id": "q1", "corpus-id": "d1", "score": 1}]),
    })
    parts.save_to_disk(str(tmp_path / "hf"))
    snapshot, created = ingest(warehouse, tmp_path / "hf", "hf", "test")
    assert created and (snapshot.source_kind, snapshot.n_passages, snapshot.n_qrels) == ("hf", 2, 1)


def test_hub_id_without_network_is_a_clear_error(warehouse):
    with pytest.raises(InputError, match="cannot load from the Hugging Face hub"):
        ingest(warehouse, "no-such-org/no-such-dataset", "x", "test", hub=True)
