"""Pointwise positives: strict parsing, grammar, reference answers shown to the pointwise
teacher only, and positives attached to listwise rows."""

from __future__ import annotations

import pytest

from generators.candidates import CandidateConfig, ensure_candidates, lists_of, selected_queries
from generators.constraints import positives_grammar
from generators.listwise import ListwiseConfig, build_row, plan_samples, rank_samples
from generators.pointwise import (REJECT_REASONS, PointwiseConfig, attach_positives, build_judgment_row,
                                  parse_positives, plan_judgments, positives_by_query)
from generators.teachers import Sampling, TeacherRunner
from generators.teachers.openai_compat import OpenAIBackend
from prompts import load_prompt
from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from warehouse.calls import CallStore
from warehouse.db import Warehouse
from warehouse.snapshots import ingest, load_passages


@pytest.mark.parametrize("answer,size,expected", [
    ("<answer>[2], [5]</answer>", 5, ((2, 5), None)),
    ("<think>x</think> <answer> none </answer>", 3, ((), None)),
    ("<answer>[3], [1]</answer>", 3, ((3, 1), None)),
    ("[2], [5]", 5, (None, "wrong_format")),
    ("<answer>[2] > [5]</answer>", 5, (None, "wrong_format")),
    ("<answer>2, 5</answer>", 5, (None, "wrong_format")),
    ("<answer></answer>", 5, (None, "wrong_format")),
    ("<answer>[2], none</answer>", 5, (None, "wrong_format")),
    ("<answer>[2], [6]</answer>", 5, (None, "out_of_range")),
    ("<answer>[0]</answer>", 5, (None, "out_of_range")),
    ("<answer>[2], [2]</answer>", 5, (None, "duplicate_ids")),
])
def test_parse_positives_is_strict(answer, size, expected):
    parsed = parse_positives(answer, size)
    assert (parsed.positions, parsed.reason) == expected
    assert parsed.reason is None or parsed.reason in REJECT_REASONS


def test_truncated_judgment_is_rejected():
    assert parse_positives("<answer>[1]</answer>", 2, finish_reason="length").reason == "truncated"


def test_positives_grammar_compiles_for_every_window():
    from llama_cpp import LlamaGrammar

    for size in (1, 2, 7, 20):
        text = positives_grammar(size, 100)
        assert f'"[{size}]"' in text and f'"[{size + 1}]"' not in text
        LlamaGrammar.from_string(text, verbose=False)


def test_reference_answers_reach_pointwise_prompts_and_never_listwise_ones(tmp_path):
    """The demo set has reference answers: the pointwise teacher sees them, the listwise one never."""
    prompt_p, prompt_l = load_prompt("pointwise_reasonrank"), load_prompt("listwise_reasonrank")
    with Warehouse.open(tmp_path / "wh.duckdb") as wh, \
            FakeTeacher(mode="fixed", fixed_content="<think>two fit</think> <answer>[1], [3]</answer>",
                        latency_ms=0) as judge, FakeTeacher(mode="identity", latency_ms=0) as ranker:
        snapshot, _ = ingest(wh, str(REPO / "examples" / "demo" / "law"), "demo-law", "law")
        config = CandidateConfig(k=6)
        ensure_candidates(wh, snapshot.snapshot_id, config)
        lists = lists_of(wh, snapshot, config, selected_queries(wh, snapshot.snapshot_id, 3, seed=0))
        passages = load_passages(wh, snapshot.snapshot_id)
        answers = [a for lst in lists for a in lst.answers]
        assert len(answers) == 3

        judge_backend = OpenAIBackend(judge.base_url, "judge")
        judgments = plan_judgments(lists, passages, prompt_p, PointwiseConfig(window=3), 6, "judge", Sampling())
        assert len(judgments) == 6  # two batches of three per query
        for judgment in judgments:
            user = judgment.call.messages[-1][1]
            assert all(a in user for a in judgment.candidates.answers)
        done, _ = TeacherRunner(judge_backend, CallStore(wh), show_progress=False).run([j.call for j in judgments])
        pointwise = [build_judgment_row(j, done[j.call.key], prompt_p, "openai") for j in judgments]
        assert all(row["reason"] is None for row in pointwise)
        for row in pointwise:
            assert row["relevant_docids"] == [row["candidates"][0], row["candidates"][2]]
            assert row["reference_answers"] == [next(a for lst in lists if lst.qid == row["qid"]
                                                     for a in lst.answers)]
        positives = positives_by_query(pointwise)

        ranker_backend = OpenAIBackend(ranker.base_url, "ranker")
        config_l = ListwiseConfig(window=4, stride=2, depth=6, samples=2)
        planned = plan_samples(lists, passages, prompt_l, config_l, "ranker", Sampling())
        rankings, _ = rank_samples(planned, TeacherRunner(ranker_backend, CallStore(wh), show_progress=False))
        rows = [attach_positives(build_row(r, prompt_l, "openai"), positives) for r in rankings]
        sent = [key for row in rows for key in row["call_keys"]]
        requests = wh.con.execute("SELECT request FROM teacher_calls WHERE call_key IN (SELECT unnest(?))",
                                  [sent]).fetchall()
    assert len(requests) == len(set(sent)) > len(rows)
    for (request,) in requests:
        assert "Reference answer" not in request and not any(a in request for a in answers)
    for row in rows:
        judged = [p for p in pointwise if p["qid"] == row["qid"]]
        assert row["relevant_docids"] == [d for d in row["candidates"]
                                          if any(d in p["relevant_docids"] for p in judged)]
        assert row["positives_judged"] and row["relevant_docids"]
        lineage = row["positives_lineage"]
        assert lineage["prompt_version"] == prompt_p.version and row["prompt_version"] == prompt_l.version
        assert sorted(lineage["row_ids"]) == sorted(p["row_id"] for p in judged)
    # Without the judgment of the second batch, a row's candidates are not all judged.
    partial = attach_positives(rows[0], positives_by_query([p for p in pointwise if p["batch_index"] == 0]))
    assert not partial["positives_judged"] and len(partial["relevant_docids"]) == 2
