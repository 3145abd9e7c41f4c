"""Sources as users find them: bad records skipped with their lines, Hugging Face datasets in
each layout (saved to disk and as Parquet, through the same load_dataset call as the hub),
column maps with dotted paths, TREC topics and qrels, run files, mixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generators.mixture import MixtureSource, allocate, largest_remainder
from generators.run_candidates import read_run, run_candidates
from tests.test_ingest import GOOD_CORPUS, GOOD_QUERIES, write_beir
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.snapshots import (derive_snapshot, ingest, list_snapshots, load_qrels, load_queries,
                                 skip_summary, skipped_records)
from warehouse.sources import SourceRef


@pytest.fixture
def warehouse(tmp_path):
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        yield wh


def table_counts(warehouse: Warehouse) -> tuple[int, ...]:
    return tuple(warehouse.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                 for t in ("snapshots", "passages", "queries", "qrels", "snapshot_skips"))


# --- bad records ----------------------------------------------------------------------

def bad_folder(tmp_path: Path) -> Path:
    corpus = [GOOD_CORPUS[0], {"_id": "d2", "title": "", "text": " "}, {"title": "no id", "text": "x"},
              '{"_id": "d4", "text": ', GOOD_CORPUS[1], {"_id": "d1", "text": "other text"}]
    return write_beir(tmp_path / "bad", corpus, GOOD_QUERIES, ["q1\td1\t1", "q1\td2\t1", "q9\td1\t1", "q1\td4\t1"])


def test_default_fail_names_the_line_and_says_how_to_skip(tmp_path, warehouse):
    with pytest.raises(InputError, match=r"corpus\.jsonl:2: passage 'd2' has empty title and text; .*on_bad_record: skip"
                                         r".*--skip-bad-records"):
        ingest(warehouse, bad_folder(tmp_path), "bad", "test")
    assert table_counts(warehouse) == (0, 0, 0, 0, 0)


def test_skip_leaves_bad_records_out_and_keeps_them_with_lines(tmp_path, warehouse):
    folder = bad_folder(tmp_path)
    snapshot, created = ingest(warehouse, folder, "bad", "test", on_bad_record="skip")
    assert created and (snapshot.n_passages, snapshot.n_queries, snapshot.n_qrels, snapshot.n_skipped) == (2, 1, 2, 6)
    skipped = skipped_records(warehouse, snapshot.snapshot_id)
    where = {(s.reason, s.location.rsplit("/", 1)[-1]) for s in skipped}
    assert where == {("empty_text", "corpus.jsonl:2"), ("missing_id", "corpus.jsonl:3"),
                     ("malformed_json", "corpus.jsonl:4"), ("duplicate_id", "corpus.jsonl:6"),
                     ("unknown_query", "test.tsv:4"), ("unknown_passage", "test.tsv:5")}
    assert skip_summary(skipped)["empty_text"]["count"] == 1
    assert load_qrels(warehouse, snapshot.snapshot_id) == {"q1": {"d1": 1, "d2": 1}}
    # the listing shows the count; the same input gives the same snapshot
    assert list_snapshots(warehouse)[0].n_skipped == 6
    again, created_again = ingest(warehouse, folder, "bad", "test", on_bad_record="skip")
    assert again.snapshot_id == snapshot.snapshot_id and not created_again


def test_skip_on_a_real_collection_with_an_empty_passage(shared_data, tmp_path, warehouse):
    """CACM has title-only passages; blank one out entirely, as the issue's user met it."""
    lines = (shared_data / "cacm" / "corpus.jsonl").read_text().splitlines()
    record = json.loads(lines[470])
    lines[470] = json.dumps({"_id": record["_id"], "title": "", "text": ""})
    folder = tmp_path / "cacm"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "queries.jsonl").write_bytes((shared_data / "cacm" / "queries.jsonl").read_bytes())
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_bytes((shared_data / "cacm" / "qrels" / "test.tsv").read_bytes())
    with pytest.raises(InputError, match=r"corpus\.jsonl:471: passage"):
        ingest(warehouse, folder, "cacm", "cs")
    snapshot, _ = ingest(warehouse, folder, "cacm", "cs", on_bad_record="skip")
    judged = sum(1 for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]
                 if line.split("\t")[1] == record["_id"])
    assert snapshot.n_passages == 3203
    assert snapshot.n_qrels == 796 - judged
    reasons = skip_summary(skipped_records(warehouse, snapshot.snapshot_id))
    assert reasons["empty_text"]["count"] == 1 and reasons.get("unknown_passage", {"count": 0})["count"] == judged


# --- Hugging Face datasets in each layout ---------------------------------------------------

SQUAD = [
    {"id": "s1", "title": "Alpha", "context": "Alpha is the first letter.", "question": "What is first?",
     "answers": {"text": ["Alpha"], "answer_start": [0]}},
    {"id": "s2", "title": "Alpha", "context": "Alpha is the first letter.", "question": "Which letter starts?",
     "answers": {"text": ["Alpha"], "answer_start": [0]}},
    {"id": "s3", "title": "Beta", "context": "Beta comes second.", "question": "What comes second?",
     "answers": {"text": ["Beta"], "answer_start": [0]}},
]
MSMARCO = [
    {"query_id": 11, "query": "capital of france", "answers": ["Paris"],
     "passages": {"is_selected": [0, 1], "passage_text": ["Lyon is large.", "Paris is the capital of France."],
                  "url": ["a", "b"]}},
    {"query_id": 12, "query": "largest french city", "answers": ["Paris"],
     "passages": {"is_selected": [1, 0], "passage_text": ["Paris is the capital of France.", "Lyon is large."],
                  "url": ["b", "a"]}},
]
TRIPLETS = [{"anchor": "what is alpha", "positive": "alpha text", "negative": "beta text"},
            {"anchor": "what is beta", "positive": "beta text", "negative": "alpha text"}]
QA = [{"question": "how to sort a list", "answer": "use sorted()"},
      {"question": "how to reverse a list", "answer": "use reversed()"}]
# (rows, layout, passages, queries, qrels as {qid-or-text: {passage text: grade}})
LAYOUT_CASES = {
    "squad": (SQUAD, 2, 3, {"s1": {"Alpha is the first letter.": 1}, "s3": {"Beta comes second.": 1}}),
    "msmarco": (MSMARCO, 2, 2, {"11": {"Lyon is large.": 0, "Paris is the capital of France.": 1}}),
    "triplets": (TRIPLETS, 2, 2, {"what is alpha": {"alpha text": 1, "beta text": 0}}),
    "qa": (QA, 2, 2, {"how to sort a list": {"use sorted()": 1}}),
}


def save(rows: list[dict], tmp_path: Path, form: str) -> Path:
    import datasets

    data = datasets.Dataset.from_list(rows)
    if form == "disk":
        data.save_to_disk(str(tmp_path / "saved"))
        return tmp_path / "saved"
    data.to_parquet(str(tmp_path / "rows.parquet"))
    return tmp_path / "rows.parquet"


def judged_texts(warehouse: Warehouse, snapshot_id: str) -> dict[str, dict[str, int]]:
    """qid and query text -> {passage text: grade}."""
    rows = warehouse.con.execute(
        "SELECT r.qid, q.text, p.text, r.grade FROM qrels r JOIN queries q USING (snapshot_id, qid)"
        " JOIN passages p USING (snapshot_id, docid) WHERE r.snapshot_id = ?", [snapshot_id]).fetchall()
    judged: dict[str, dict[str, int]] = {}
    for qid, query, text, grade in rows:
        judged.setdefault(qid, {})[text] = grade
        judged.setdefault(query, {})[text] = grade
    return judged


@pytest.mark.parametrize("form", ["disk", "parquet"])
@pytest.mark.parametrize("layout", sorted(LAYOUT_CASES))
def test_layouts_from_disk_and_parquet(tmp_path, warehouse, layout, form):
    rows, n_passages, n_queries, expected = LAYOUT_CASES[layout]
    path = save(rows, tmp_path, form)
    snapshot, _ = ingest(warehouse, SourceRef(str(path), layout=layout), layout, "test")
    assert (snapshot.source_kind, snapshot.n_passages, snapshot.n_queries) == (layout, n_passages, n_queries)
    judged = judged_texts(warehouse, snapshot.snapshot_id)
    for key, grades in expected.items():
        assert judged[key] == grades
    if layout == "squad":
        assert load_queries(warehouse, snapshot.snapshot_id)["s1"][1] == ["Alpha"]


def test_triplets_with_numbered_negatives(tmp_path, warehouse):
    rows = [{"anchor": "what is alpha", "positive": "alpha text", "negative_1": "beta", "negative_2": "gamma"}]
    snapshot, _ = ingest(warehouse, SourceRef(str(save(rows, tmp_path, "parquet")), layout="triplets"), "t", "test")
    assert judged_texts(warehouse, snapshot.snapshot_id)["what is alpha"] == {"alpha text": 1, "beta": 0, "gamma": 0}


def test_column_map_with_dotted_paths_and_limit(tmp_path, warehouse):
    rows = [{"meta": {"qid": f"x{i}", "lang": "en"}, "q": {"body": f"question {i}"},
             "doc": {"id": f"p{i}", "body": f"passage {i}"}} for i in range(5)]
    columns = {"qid": "meta.qid", "query": "q.body", "docid": "doc.id", "text": "doc.body"}
    ref = SourceRef(str(save(rows, tmp_path, "disk")), columns=columns, limit=3)
    snapshot, _ = ingest(warehouse, ref, "mapped", "test")
    assert (snapshot.n_passages, snapshot.n_queries, snapshot.n_qrels) == (3, 3, 3)
    assert load_qrels(warehouse, snapshot.snapshot_id)["x2"] == {"p2": 1}


def test_corpus_only_table_for_synthesized_queries(tmp_path, warehouse):
    rows = [{"id": "a", "content": "alpha"}, {"id": "b", "content": "beta"}]
    ref = SourceRef(str(save(rows, tmp_path, "parquet")), columns={"docid": "id", "text": "content"})
    with pytest.raises(InputError, match=r"rows\.parquet: no queries \(the table is empty\)"):
        ingest(warehouse, ref, "corpus", "test")
    snapshot, _ = ingest(warehouse, ref, "corpus", "test", require_queries=False)
    assert (snapshot.n_passages, snapshot.n_queries) == (2, 0)


@pytest.mark.parametrize("ref_options, message", [
    ({"columns": {"query": "question", "text": "body"}}, r"columns\.text names column 'body' \(text\)"),
    ({"layout": "squad"}, r"layout 'squad' expects column 'id' \(qid\), which the dataset does not have"),
    ({"columns": {"question": "question"}}, r"columns\.question: unknown role"),
    ({"layout": "msmarco", "columns": {"passages": "answer"}}, None),
])
def test_mapping_errors_name_the_field_and_write_nothing(tmp_path, warehouse, ref_options, message):
    ref = SourceRef(str(save(QA, tmp_path, "parquet")), **ref_options)
    with pytest.raises(InputError, match=message or r"layout 'msmarco' expects column 'query_id'"):
        ingest(warehouse, ref, "bad", "test")
    assert table_counts(warehouse) == (0, 0, 0, 0, 0)


def test_row_missing_a_nested_field_is_a_bad_record(tmp_path, warehouse):
    rows = [{"q": "a?", "doc": {"body": "alpha"}}, {"q": "b?", "doc": {"other": "x"}}]
    ref = SourceRef(str(save(rows, tmp_path, "disk")), columns={"query": "q", "text": "doc.body"})
    with pytest.raises(InputError, match=r"row 2: doc\.body \(text\) has no value"):
        ingest(warehouse, ref, "n", "test")
    snapshot, _ = ingest(warehouse, SourceRef(ref.location, columns=ref.columns, on_bad_record="skip"), "n", "test")
    assert snapshot.n_queries == 1 and snapshot.n_skipped == 1


def test_hub_id_goes_through_load_dataset(warehouse):
    with pytest.raises(InputError, match="cannot load from the Hugging Face hub"):
        ingest(warehouse, SourceRef("no-such-org/no-such-dataset", hub=True, layout="squad", split="train"), "x", "t")


# --- TREC topics, qrels and run files -------------------------------------------------------

SGML = """<top>
<num> Number: 301
<title> International Organized Crime

<desc> Description:
Identify organizations that participate in international criminal activity.
</top>

<top>
<num> Number: 302
<title> Poliomyelitis and Post-Polio
</top>
"""


def trec_source(tmp_path: Path, topics: str, name: str) -> SourceRef:
    corpus = [{"_id": "D1", "title": "", "text": "crime groups across borders"},
              {"_id": "D2", "title": "", "text": "polio vaccine history"}]
    folder = tmp_path / "trec"
    folder.mkdir(exist_ok=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    (tmp_path / name).write_text(topics)
    (tmp_path / "qrels.txt").write_text("301 0 D1 1\n302 0 D2 2\n301 0 D2 0\n")
    return SourceRef(str(folder), topics=str(tmp_path / name), qrels=str(tmp_path / "qrels.txt"))


@pytest.mark.parametrize("topics, name", [(SGML, "topics.301-302.txt"),
                                          ("301\tInternational Organized Crime\n302\tPoliomyelitis and Post-Polio\n",
                                           "topics.tsv")])
def test_trec_topics_sgml_and_tsv_with_trec_qrels(tmp_path, warehouse, topics, name):
    snapshot, _ = ingest(warehouse, trec_source(tmp_path, topics, name), "robust", "news")
    assert load_queries(warehouse, snapshot.snapshot_id) == {
        "301": ("International Organized Crime", None), "302": ("Poliomyelitis and Post-Polio", None)}
    assert load_qrels(warehouse, snapshot.snapshot_id) == {"301": {"D1": 1, "D2": 0}, "302": {"D2": 2}}


def test_sgml_description_field_and_a_topic_without_one(tmp_path, warehouse):
    ref = trec_source(tmp_path, SGML, "topics.txt")
    ref = SourceRef(ref.location, topics=ref.topics, topics_field="description", qrels=ref.qrels)
    with pytest.raises(InputError, match=r"topics\.txt:9: query '302' has empty text"):
        ingest(warehouse, ref, "robust", "news")
    snapshot, _ = ingest(warehouse, SourceRef(**{**ref.__dict__, "on_bad_record": "skip"}), "robust", "news")
    assert load_queries(warehouse, snapshot.snapshot_id)["301"][0].startswith("Identify organizations")
    assert {s.reason for s in skipped_records(warehouse, snapshot.snapshot_id)} == {"empty_text", "unknown_query"}


def test_run_file_orders_by_score_and_cuts_to_k(tmp_path):
    run = tmp_path / "bm25.trec"
    run.write_text("q1 Q0 d2 1 9.5 bm25\nq1 Q0 d1 2 7.0 bm25\nq1 Q0 d3 3 7.0 bm25\nq2 Q0 d1 1 1.0 bm25\n")
    lists = read_run(run, {"q1", "q2"}, {"d1", "d2", "d3"}, k=2)
    assert lists == {"q1": [("d2", 9.5), ("d1", 7.0)], "q2": [("d1", 1.0)]}


@pytest.mark.parametrize("line, message", [
    ("q1 Q0 d1 1 2.0", r"bm25\.trec:2: expected 6 columns"),
    ("q1 Q0 d1 x 2.0 tag", r"bm25\.trec:2: rank 'x' must be an integer"),
    ("q7 Q0 d1 1 2.0 tag", r"bm25\.trec:2: unknown query id 'q7'"),
    ("q1 Q0 d9 1 2.0 tag", r"bm25\.trec:2: unknown passage id 'd9'"),
])
def test_bad_run_file_names_the_line(tmp_path, warehouse, line, message):
    snapshot, _ = ingest(warehouse, write_beir(tmp_path / "b", GOOD_CORPUS, GOOD_QUERIES), "b", "test")
    run = tmp_path / "bm25.trec"
    run.write_text(f"q1 Q0 d2 1 3.0 tag\n{line}\n")
    with pytest.raises(InputError, match=message):
        run_candidates(warehouse, snapshot.snapshot_id, str(run), 20)


# --- mixtures and derived snapshots ---------------------------------------------------------

def test_largest_remainder_sums_to_total():
    assert largest_remainder(10, [0.4, 0.3, 0.3]) == [4, 3, 3]
    assert largest_remainder(7, [1, 1, 1]) == [3, 2, 2]
    assert sum(largest_remainder(101, [0.2, 0.5, 0.3])) == 101


def test_mixture_splits_by_domain_and_reports_shortfall():
    sources = [MixtureSource("a", "web", 100), MixtureSource("b", "web", 50), MixtureSource("c", "code", 5),
               MixtureSource("d", "math", 40)]
    counts, report = allocate(30, {"web": 0.4, "code": 0.3, "math": 0.3}, sources)
    assert counts == [8, 4, 5, 9]
    assert report["web"] == {"weight": 0.4, "asked": 12, "got": 12, "sources": ["a", "b"]}
    assert report["code"]["asked"] == 9 and report["code"]["got"] == 5


def test_derived_snapshot_adds_synthetic_positives(tmp_path, warehouse):
    base, _ = ingest(warehouse, write_beir(tmp_path / "b", GOOD_CORPUS, GOOD_QUERIES, ["q1\td1\t1"]), "b", "test")
    derived, created = derive_snapshot(warehouse, base, "b.synthetic", {"syn-1": "tell me about beta"}, {"syn-1": "d2"})
    assert created and (derived.n_passages, derived.n_queries, derived.n_qrels) == (2, 2, 2)
    splits = warehouse.con.execute("SELECT split, qid, docid FROM qrels WHERE snapshot_id = ? ORDER BY qid",
                                   [derived.snapshot_id]).fetchall()
    assert splits == [("test", "q1", "d1"), ("synthetic", "syn-1", "d2")]
    again, created_again = derive_snapshot(warehouse, base, "b.synthetic", {"syn-1": "tell me about beta"},
                                           {"syn-1": "d2"})
    assert again.snapshot_id == derived.snapshot_id and not created_again


def test_duckdb_read_corpus_and_record_reader_give_one_snapshot(tmp_path, warehouse):
    """A clean corpus.jsonl is read by DuckDB itself, a corpus.parquet record by record:
    identical content, identical snapshot (ids, integers among them, and blank-only text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = [{"_id": "d1", "title": "A", "text": "alpha \"quoted\" é"}, {"_id": "d2", "text": "beta"},
              {"_id": "d3", "title": "only a title", "text": ""}]
    jsonl = write_beir(tmp_path / "jsonl", corpus, GOOD_QUERIES, ["q1\td1\t1", "q1\td3\t0"])
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    pq.write_table(pa.Table.from_pylist([{**r, "title": r.get("title")} for r in corpus]), parquet / "corpus.parquet")
    (parquet / "queries.jsonl").write_bytes((jsonl / "queries.jsonl").read_bytes())
    (parquet / "qrels").mkdir()
    (parquet / "qrels" / "test.tsv").write_bytes((jsonl / "qrels" / "test.tsv").read_bytes())
    first, _ = ingest(warehouse, jsonl, "same", "test")
    second, created = ingest(warehouse, parquet, "same", "test")
    assert second.snapshot_id == first.snapshot_id and not created
    stored = warehouse.con.execute("SELECT docid, title, text FROM passages ORDER BY docid").fetchall()
    assert stored == [("d1", "A", "alpha \"quoted\" é"), ("d2", "", "beta"), ("d3", "only a title", "")]


@pytest.mark.parametrize("record, reason", [
    ({"_id": 7, "title": "", "text": "\u3000\n"}, "empty_text"),
    ({"_id": "d7", "text": 5}, "bad_field"),
    ({"_id": "", "text": "x"}, "bad_id"),
    ({"_id": "d8", "title": " " * 200, "text": "\t" * 200}, "empty_text"),
])
def test_records_duckdb_would_accept_are_checked_like_python(tmp_path, warehouse, record, reason):
    folder = write_beir(tmp_path / "c", [GOOD_CORPUS[0], record], GOOD_QUERIES)
    snapshot, _ = ingest(warehouse, folder, "c", "test", on_bad_record="skip")
    assert [s.reason for s in skipped_records(warehouse, snapshot.snapshot_id)] == [reason]


def test_streaming_reads_the_same_rows(tmp_path, warehouse):
    rows = [{"question": f"question {i}", "answer": f"answer {i}"} for i in range(10)]
    path = str(save(rows, tmp_path, "parquet"))
    streamed, _ = ingest(warehouse, SourceRef(path, layout="qa", streaming=True, limit=4), "s", "test")
    loaded, created = ingest(warehouse, SourceRef(path, layout="qa", limit=4), "s", "test")
    assert streamed.n_queries == 4 and loaded.snapshot_id == streamed.snapshot_id and not created
