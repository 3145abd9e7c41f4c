"""Listwise parsing and prompt building: strict, never repaired."""

from __future__ import annotations

import hashlib
import json

import pytest

from generators.candidates import CandidateList, select_queries
from generators.listwise import (ListwiseConfig, SampleRanking, build_row, clean_passage, parse_ranking,
                                 plan_samples)
from generators.teachers import Call, Completion, Sampling, split_reasoning
from prompts import load_prompt


@pytest.mark.parametrize("answer,size,expected", [
    ("<answer>[2] > [1] > [3]</answer>", 3, ((2, 1, 3), None)),
    ("blah <answer> [1] > [2] </answer> tail", 2, ((1, 2), None)),
    ("[2] > [1]", 2, (None, "wrong_format")),
    ("<answer>[2], [1]</answer>", 2, (None, "wrong_format")),
    ("<answer>2 > 1</answer>", 2, (None, "wrong_format")),
    ("<answer>[2] > [1] > [4]</answer>", 3, (None, "out_of_range")),
    ("<answer>[0] > [1]</answer>", 2, (None, "out_of_range")),
    ("<answer>[2] > [2] > [1]</answer>", 3, (None, "duplicate_ids")),
    ("<answer>[2] > [1]</answer>", 3, (None, "missing_ids")),
])
def test_parse_ranking_is_strict(answer, size, expected):
    parsed = parse_ranking(answer, size)
    assert (parsed.permutation, parsed.reason) == expected


def test_truncated_answer_is_rejected_as_truncated():
    assert parse_ranking("<answer>[2] > [1]</answer>", 2, finish_reason="length").reason == "truncated"


@pytest.mark.parametrize("content,field,expected", [
    ("<think>because</think> <answer>[1]</answer>", None, ("because", "<answer>[1]</answer>")),
    ("<answer>[1]</answer>", "from the parser", ("from the parser", "<answer>[1]</answer>")),
    ("<think>cut off mid-thought", None, ("cut off mid-thought", "")),
    ("plain answer", None, ("", "plain answer")),
])
def test_split_reasoning(content, field, expected):
    assert split_reasoning(content, field) == expected


def test_clean_passage_rewrites_citations_and_cuts_tokens():
    cleaned = clean_passage("Title", "see [1] and [23] " + "word " * 100, max_tokens=10)
    assert "[1]" not in cleaned and "(1)" in cleaned and "(23)" in cleaned
    assert len(cleaned.split()) == 10


def test_call_key_changes_with_each_part():
    sampling = Sampling(temperature=0.5)
    messages = [{"role": "user", "content": "rank"}]
    base = Call.of("m", messages, sampling, 0)
    assert base.key == Call.of("m", messages, sampling, 0).key
    variants = [Call.of("m2", messages, sampling, 0), Call.of("m", messages, Sampling(temperature=0.6), 0),
                Call.of("m", [{"role": "user", "content": "rank!"}], sampling, 0),
                Call.of("m", messages, sampling, 1)]
    assert len({base.key, *(v.key for v in variants)}) == 5


@pytest.mark.parametrize("grammar", [None, 'root ::= "[" [0-9]+ "]"'])
def test_call_key_hashes_the_sorted_json_of_its_payload(grammar):
    """The key written field by field is json.dumps of the payload, byte for byte: keys stored
    by earlier versions are found again. Every character json escapes, and some it does not."""
    awkward = "".join(map(chr, range(0x20))) + '"\\/ \x7f é ß 中文 \u2028\u2029 \U0001F600 </think> [1] > [2]'
    sampling = Sampling(temperature=1e-05, top_p=0.95, max_tokens=7, seed=3)
    call = Call.of("m-é\"", [{"role": "system", "content": awkward}, {"role": "user", "content": "rank " * 50}],
                   sampling, 2, grammar)
    payload = {"model": call.model, "sampling": sampling.model_dump(), "messages": call.messages, "sample_index": 2}
    if grammar is not None:
        payload["grammar"] = grammar
    expected = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    assert call.key_text() == expected
    assert call.key == hashlib.sha256(expected.encode()).hexdigest()


def test_planned_rows_map_positions_back_to_passage_ids():
    prompt = load_prompt("listwise_reasonrank")
    passages = {d: (f"title {d}", f"text of {d}") for d in ("a", "b", "c", "d")}
    lists = [CandidateList("snap", "dom", "q1", "query one", ("c", "a", "d", "b"))]
    planned = plan_samples(lists, passages, prompt, ListwiseConfig(window=3), "m", Sampling())
    assert len(planned) == 1 and planned[0].presented == ("c", "a", "d")
    user = planned[0].first_call.messages[-1][1]
    assert "[1] title c. text of c" in user and "[3] title d" in user and "title b" not in user
    ranking = SampleRanking.start(planned[0])
    ranking.record(planned[0].first_call, Completion(status="ok", content="<answer>[3] > [1] > [2]</answer>",
                                                     finish_reason="stop"))
    row = build_row(ranking, prompt, "embedded")
    assert row["reason"] is None
    assert row["final_list"] == ["d", "c", "a"]
    assert row["prompt_version"] == prompt.version and row["call_keys"] == [planned[0].first_call.key]


def test_select_queries_prefers_judged_and_is_seeded():
    qids = [f"q{i}" for i in range(10)]
    judged = {"q1", "q3", "q5", "q7"}
    picked = select_queries(qids, judged, 2, seed=1)
    assert len(picked) == 2 and set(picked) <= judged
    assert picked == select_queries(qids, judged, 2, seed=1)
    assert select_queries(qids, set(), None, seed=0) == sorted(qids)


def test_prompt_version_is_content_hash(tmp_path):
    (tmp_path / "p.yaml").write_text("system: s\nuser: 'ask {query}'\n")
    first = load_prompt("p", tmp_path)
    (tmp_path / "p.yaml").write_text("system: s\nuser: 'ask {query}!'\n")
    assert load_prompt("p", tmp_path).version != first.version
    with pytest.raises(KeyError, match="query"):
        first.render()
