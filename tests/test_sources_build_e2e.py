"""One build over sources as users find them: a BEIR folder with a bad record (skipped) and
run-file candidates, a SQuAD-layout dataset saved to disk, an MS MARCO-layout Parquet file,
and a corpus with no queries whose queries the teacher writes (round trip, dedup), drawn
by a domain mixture. The teacher is tests/fake_teacher.py on loopback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.versions import list_versions, load_rows

DEMO = REPO / "examples" / "demo"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def qrels_of(folder: Path) -> dict[str, dict[str, int]]:
    judged: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, docid, grade = line.split("\t")
        judged.setdefault(qid, {})[docid] = int(grade)
    return judged


def beir_with_a_bad_record(tmp_path: Path) -> Path:
    folder = tmp_path / "medicine"
    shutil.copytree(DEMO / "medicine", folder)
    with (folder / "corpus.jsonl").open("a") as corpus:
        corpus.write(json.dumps({"_id": "med-empty", "title": "", "text": ""}) + "\n")
    return folder


def squad_dataset(tmp_path: Path) -> Path:
    import datasets

    corpus = {r["_id"]: r for r in read_jsonl(DEMO / "law" / "corpus.jsonl")}
    rows = []
    for query in read_jsonl(DEMO / "law" / "queries.jsonl"):
        best = max(qrels_of(DEMO / "law")[query["_id"]].items(), key=lambda item: item[1])[0]
        rows.append({"id": query["_id"], "title": corpus[best]["title"], "context": corpus[best]["text"],
                     "question": query["text"], "answers": {"text": query.get("answers", []),
                                                            "answer_start": [0] * len(query.get("answers", []))}})
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "law-squad"))
    return tmp_path / "law-squad"


def msmarco_parquet(tmp_path: Path) -> Path:
    import datasets

    corpus = {r["_id"]: r["text"] for r in read_jsonl(DEMO / "programming" / "corpus.jsonl")}
    judged, others = qrels_of(DEMO / "programming"), sorted(corpus)
    rows = []
    for number, query in enumerate(read_jsonl(DEMO / "programming" / "queries.jsonl")):
        shown = sorted(judged[query["_id"]]) + others[number * 2: number * 2 + 3]
        shown = list(dict.fromkeys(shown))
        rows.append({"query_id": 100 + number, "query": query["text"], "answers": query.get("answers", []),
                     "passages": {"passage_text": [corpus[d] for d in shown],
                                  "is_selected": [int(judged[query["_id"]].get(d, 0) > 0) for d in shown],
                                  "url": [f"https://example.org/{d}" for d in shown]}})
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "web-msmarco.parquet"))
    return tmp_path / "web-msmarco.parquet"


def corpus_without_queries(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": r["_id"], "content": f"{r['title']}. {r['text']}"} for r in read_jsonl(DEMO / "law" / "corpus.jsonl")]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "statutes.parquet")
    return tmp_path / "statutes.parquet"


def run_file(tmp_path: Path) -> Path:
    """A retriever's run over the medicine demo: each query's judged passages first, then others."""
    docids = sorted(r["_id"] for r in read_jsonl(DEMO / "medicine" / "corpus.jsonl"))
    lines = []
    for qid, judged in sorted(qrels_of(DEMO / "medicine").items()):
        order = sorted(judged, key=lambda d: -judged[d]) + [d for d in docids if d not in judged][:6]
        lines += [f"{qid} Q0 {docid} {rank} {20 - rank}.5 my-bm25" for rank, docid in enumerate(order, start=1)]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "medicine.trec").write_text("\n".join(lines) + "\n")
    return tmp_path / "runs" / "medicine.trec"


def write_spec(tmp_path: Path, teacher_url: str, **changes) -> Path:
    spec = {
        "dataset": "diverse", "output": str(tmp_path / "out"), "seed": 3,
        "sources": [
            {"name": "medicine", "domain": "medicine", "path": str(beir_with_a_bad_record(tmp_path)),
             "on_bad_record": "skip", "candidates": {"method": "run", "path": "runs/medicine.trec"}},
            {"name": "law-qa", "domain": "law", "path": str(squad_dataset(tmp_path)), "layout": "squad"},
            {"name": "dev-search", "domain": "web", "path": str(msmarco_parquet(tmp_path)), "layout": "msmarco"},
            {"name": "statutes", "domain": "statutes", "path": str(corpus_without_queries(tmp_path)),
             "columns": {"docid": "id", "text": "content"}, "synthesize": True},
        ],
        "mixture": {"queries": 14, "weights": {"medicine": 0.3, "law": 0.2, "web": 0.2, "statutes": 0.3}},
        "kinds": ["queries", "listwise"],
        "queries": {"passages": 8, "per_passage": 3, "round_trip": {"method": "bm25", "k": 1}},
        "candidates": {"method": "bm25", "k": 5},
        "listwise": {"window": 5, "passage_tokens": 30},
        "teacher": {"backend": "openai", "base_url": teacher_url, "model": "fake"},
    }
    run_file(tmp_path)
    spec.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.slow
def test_build_mixes_layouts_run_files_synthesized_queries_and_a_mixture(prefect_harness, tmp_path):
    from flows.build import build_flow

    with FakeTeacher(mode="identity") as teacher:
        summary = build_flow(str(write_spec(tmp_path, teacher.base_url)))
    with Warehouse.open(summary["warehouse"], read_only=True) as wh:
        manifest = list_versions(wh, "diverse")[-1]["manifest"]
        listwise = load_rows(wh, "diverse", summary["version"], "listwise")
        written = load_rows(wh, "diverse", summary["version"], "queries")
        rejected = wh.con.execute("SELECT stage, reason, data FROM rejections WHERE kind = 'queries'").fetchall()
        stored_run = wh.con.execute(
            "SELECT qid, list(docid ORDER BY rank) FROM candidates WHERE retriever LIKE 'run:%' GROUP BY qid").fetchall()
        synthetic_qrels = dict(wh.con.execute(
            "SELECT qid, docid FROM qrels WHERE split = 'synthetic' AND snapshot_id = ?",
            [manifest["sources"][3]["snapshot_id"]]).fetchall())

    sources = {s["name"]: s for s in manifest["sources"]}
    # the bad record was skipped and the manifest says where
    assert sources["medicine"]["skipped"]["empty_text"]["count"] == 1
    assert sources["medicine"]["skipped"]["empty_text"]["locations"][0].endswith("corpus.jsonl:31")
    assert (sources["law-qa"]["source_kind"], sources["dev-search"]["source_kind"]) == ("squad", "msmarco")
    assert sources["statutes.synthetic"]["source_kind"] == "synthetic"

    # synthesized queries: kept ones round-tripped to their passage, duplicates and misses rejected
    assert written and all(row["round_trip_rank"] == 1 for row in written)
    assert {stage for stage, _, _ in rejected} >= {"round_trip", "minhash_dedup"}
    assert all(json.loads(data)["round_trip_rank"] is None for stage, _, data in rejected if stage == "round_trip")
    for row in written:
        assert synthetic_qrels[row["qid"]] == row["source_docid"]
        assert row["prompt_name"] == "queries_inpars" and len(row["prompt_version"]) == 12 and row["call_keys"]

    # the mixture: asked vs got per domain, and the listwise rows follow it
    by = manifest["mixture"]["by"]
    assert {key: value["asked"] for key, value in by.items()} == {"medicine": 4, "law": 3, "web": 3, "statutes": 4}
    got = {domain: sum(row["domain"] == domain for row in listwise) for domain in by}
    assert got == {key: value["got"] for key, value in by.items()}
    assert got["statutes"] == min(4, len(written))
    statutes_rows = [row for row in listwise if row["domain"] == "statutes"]
    assert all(row["qid"] in synthetic_qrels for row in statutes_rows)

    # run-file candidates: the medicine lists are the run's order, cut to k
    run_order = dict(stored_run)
    for row in (row for row in listwise if row["domain"] == "medicine"):
        assert row["candidates"] == run_order[row["qid"]][:5]


def test_spec_errors_name_the_field(tmp_path):
    from flows.spec import load_spec

    with pytest.raises(InputError, match=r"mixture\.weights\.math: no source has this domain or name"):
        load_spec(write_spec(tmp_path / "a", "http://127.0.0.1:9/v1",
                             mixture={"queries": 10, "weights": {"math": 1.0}}))
    with pytest.raises(InputError, match=r"kinds: the `queries` kind runs for sources with `synthesize: true`"):
        load_spec(write_spec(tmp_path / "b", "http://127.0.0.1:9/v1", kinds=["listwise"]))


@pytest.mark.slow
def test_bad_run_file_stops_the_build_naming_the_line(prefect_harness, tmp_path):
    from flows.build import build_flow

    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1", kinds=["listwise"])
    data = yaml.safe_load(spec.read_text())
    data["sources"] = data["sources"][:1]
    data.pop("mixture")
    spec.write_text(yaml.safe_dump(data))
    with (tmp_path / "runs" / "medicine.trec").open("a") as run:
        run.write("med-q1 Q0 med-99 9 0.1 my-bm25\n")
    lines = len((tmp_path / "runs" / "medicine.trec").read_text().splitlines())
    with pytest.raises(InputError, match=rf"medicine\.trec:{lines}: unknown passage id 'med-99'"):
        build_flow(str(spec))
    with Warehouse.open(tmp_path / "out" / "synthrank.duckdb", read_only=True) as wh:
        assert wh.con.execute("SELECT count(*) FROM candidates").fetchall()[0][0] == 0
        assert wh.con.execute("SELECT count(*) FROM dataset_versions").fetchall()[0][0] == 0
