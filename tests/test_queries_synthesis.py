"""Synthesized queries: parsing the teacher's answer, the round trip on real BM25, and the
`ingest --skip-bad-records` command line."""

from __future__ import annotations

import os
import subprocess
import sys

from generators.candidates import CandidateConfig
from generators.queries import parse_queries, query_rows, round_trip, sample_passages, synthetic_qid
from generators.teachers import Call, Completion, Sampling
from prompts import load_prompt
from tests.conftest import REPO
from tests.test_ingest import GOOD_CORPUS, GOOD_QUERIES, write_beir

PASSAGES = {"p1": ("Insulin", "Insulin is a hormone made by beta cells of the pancreas."),
            "p2": ("Aspirin", "Aspirin inhibits platelets and lowers the risk of heart attack."),
            "p3": ("Kidney", "The nephron filters blood and forms urine in the kidney.")}


def test_parse_queries_strict_shape():
    ok = Completion(status="ok", content="<query> which  hormone lowers sugar </query>\n<query>b</query><query> </query>")
    assert parse_queries(ok, limit=5) == (["which hormone lowers sugar", "b"], None)
    assert parse_queries(ok, limit=1) == (["which hormone lowers sugar"], None)
    assert parse_queries(Completion(status="ok", content="1. which hormone"), 3) == ([], "wrong_format")
    assert parse_queries(Completion(status="ok", content="<query>half", finish_reason="length"), 3) == ([], "truncated")
    assert parse_queries(Completion(status="failed", error="503"), 3) == ([], "teacher_failed")


def bm25_over(passages: dict, folder):
    """Real BM25 over ``passages``: ingested into a warehouse, indexed, ranked by the build's code."""
    from generators.candidates import ensure_indexes, rank_candidates
    from warehouse.db import Warehouse
    from warehouse.snapshots import ingest

    corpus = [{"_id": docid, "title": title, "text": text} for docid, (title, text) in passages.items()]
    source = write_beir(folder / "beir", corpus, [{"_id": "q", "text": "unused"}])
    warehouse = Warehouse.open(folder / "wh.duckdb")
    snapshot, _ = ingest(warehouse, str(source), "rt", "medicine")
    config = CandidateConfig(method="bm25", k=1)
    indexes = ensure_indexes(warehouse, snapshot.snapshot_id, config)
    return lambda queries: rank_candidates(indexes, queries, config)


def test_round_trip_keeps_queries_that_find_their_passage(tmp_path):
    prompt = load_prompt("queries_inpars")
    calls = {docid: Call.of("m", prompt.render(passage=text, k="2"), Sampling()) for docid, (_, text) in PASSAGES.items()}
    from generators.queries import PlannedPassage

    planned = [PlannedPassage("snap", "medicine", docid, PASSAGES[docid][1], calls[docid]) for docid in ("p1", "p2")]
    answers = {calls["p1"].key: Completion(status="ok", content="<query>pancreas beta cells hormone</query>"
                                                                 "<query>nephron urine filtering</query>"),
               calls["p2"].key: Completion(status="ok", content="no tags")}
    rows = query_rows(planned, answers, prompt, "openai", limit=2)
    round_trip(rows, bm25_over(PASSAGES, tmp_path), k=1)
    by_query = {row["query"]: row for row in rows}
    assert by_query["pancreas beta cells hormone"]["reason"] is None
    assert by_query["pancreas beta cells hormone"]["round_trip_rank"] == 1
    assert by_query["nephron urine filtering"]["reason"] == "round_trip"  # it finds p3, not p1
    assert by_query[""]["reason"] == "wrong_format" and by_query[""]["source_docid"] == "p2"
    assert by_query["pancreas beta cells hormone"]["qid"] == synthetic_qid("p1", "pancreas beta cells hormone")
    assert by_query["pancreas beta cells hormone"]["prompt_version"] == prompt.version


def test_passage_sample_is_seeded():
    docids = [f"d{i}" for i in range(50)]
    assert sample_passages(docids, 5, seed=1) == sample_passages(list(reversed(docids)), 5, seed=1)
    assert sample_passages(docids, 5, seed=1) != sample_passages(docids, 5, seed=2)
    assert sample_passages(docids, 99, seed=1) == sorted(docids)


def synthrank(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_ingest_fails_with_the_hint_then_skips_with_the_option(tmp_path):
    folder = write_beir(tmp_path / "c", [GOOD_CORPUS[0], {"_id": "d2", "text": ""}, GOOD_CORPUS[1]], GOOD_QUERIES)
    args = ["ingest", str(folder), "--name", "c", "--domain", "test", "-w", str(tmp_path / "wh.duckdb")]
    failed = synthrank(*args)
    assert failed.returncode == 2
    assert "corpus.jsonl:2: passage 'd2' has empty title and text" in failed.stderr
    assert "--skip-bad-records" in failed.stderr
    done = synthrank(*args, "--skip-bad-records")
    assert done.returncode == 0, done.stderr
    assert "2 passages" in done.stdout and "skipped 1 empty_text" in done.stdout and "corpus.jsonl:2" in done.stdout


def test_both_query_prompts_ask_for_the_parsed_shape():
    for name in ("queries_inpars", "queries_reasoning"):
        prompt = load_prompt(name)
        assert prompt.placeholders() == {"passage", "k"}
        user = prompt.render(passage="Insulin lowers blood sugar.", k="3")[-1]["content"]
        assert "Write 3 different" in user and "<query>" in user and "Insulin lowers blood sugar." in user
