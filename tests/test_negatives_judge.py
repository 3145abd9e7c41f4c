"""The false-negative judge: strict verdicts, planned calls, and verdicts that survive the
warehouse and every export."""

from __future__ import annotations

import copy
import json

import pyarrow.parquet as pq
import pytest

from generators.negatives import (HARD_NEGATIVE, SUSPECTED_FALSE_NEGATIVE, NegativesConfig, apply_verdicts,
                                  mine_snapshot, parse_verdict, plan_judgments, verdict_grammar)
from generators.constraints import reasoning_budget
from generators.listwise import clean_passage
from generators.teachers import Sampling, TeacherRunner
from generators.teachers.openai_compat import OpenAIBackend
from prompts import load_prompt
from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from warehouse.calls import CallStore
from warehouse.db import Warehouse
from warehouse.exports import export_version
from warehouse.snapshots import ingest
from warehouse.versions import add_rows, begin_version, load_rows, publish_version

SAMPLING = Sampling(temperature=0.0, max_tokens=4096, seed=3)
RELEVANT = "<think>It covers the same condition.</think> <answer>relevant</answer>"
NOT_RELEVANT = "<think>Another topic altogether.</think> <answer>not relevant</answer>"


@pytest.mark.parametrize("answer,finish,expected", [
    ("<answer>relevant</answer>", "stop", ("relevant", None)),
    ("<answer> Not  Relevant </answer>", "stop", ("not_relevant", None)),
    ("because... <answer>not relevant</answer>", "stop", ("not_relevant", None)),
    ("relevant", "stop", (None, "wrong_format")),
    ("<answer>relevant.</answer>", "stop", (None, "wrong_format")),
    ("<answer>maybe</answer>", "stop", (None, "wrong_format")),
    ("<answer>relevant</answer> or <answer>not relevant</answer>", "stop", (None, "wrong_format")),
    ("<answer>relevant</answer>", "length", (None, "truncated")),
])
def test_parse_verdict_is_strict(answer, finish, expected):
    assert parse_verdict(answer, finish) == expected


@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    """A real warehouse with the demo medicine snapshot and its mined (unjudged) rows."""
    warehouse = Warehouse.open(tmp_path_factory.mktemp("neg-judge") / "wh.duckdb")
    snapshot, _ = ingest(warehouse, REPO / "examples" / "demo" / "medicine", "demo-medicine", "medicine")
    rows = mine_snapshot(warehouse, snapshot, NegativesConfig(depth=8, num_negatives=2, positive_fraction=0.7))
    assert len(rows) == 8 and all(any(n["status"] == SUSPECTED_FALSE_NEGATIVE for n in r["negatives"])
                                  for r in rows)
    yield warehouse, rows
    warehouse.close()


@pytest.mark.parametrize("judge,statuses", [("none", set()), ("suspected", {SUSPECTED_FALSE_NEGATIVE}),
                                            ("all", {SUSPECTED_FALSE_NEGATIVE, HARD_NEGATIVE})])
def test_plan_judgments_covers_what_the_spec_asks(mined, judge, statuses):
    _, rows = mined
    prompt = load_prompt("fn_judge")
    planned = plan_judgments(rows, prompt, NegativesConfig(judge=judge, judge_positives=1), "m", SAMPLING)
    expected = [(i, j) for i, row in enumerate(rows) for j, n in enumerate(row["negatives"])
                if n["status"] in statuses]
    assert [(p.row_index, p.negative_index) for p in planned] == expected
    for p in planned:
        row = rows[p.row_index]
        user = p.call.messages[-1][1]
        shown = [clean_passage("", positive["text"], 256) in user for positive in row["positives"]]
        assert row["query"] in user and shown[0] and not any(shown[1:])
        assert clean_passage("", row["negatives"][p.negative_index]["text"], 256) in user
        assert p.call.grammar is None


def test_constrained_calls_carry_the_verdict_grammar(mined):
    _, rows = mined
    planned = plan_judgments(rows, load_prompt("fn_judge"), NegativesConfig(constrained=True), "m", SAMPLING)
    assert planned and all(p.call.grammar == planned[0].call.grammar for p in planned)
    assert '"relevant" | "not relevant"' in planned[0].call.grammar


def judge(rows: list[dict], config: NegativesConfig, teacher: FakeTeacher, warehouse: Warehouse) -> list[dict]:
    prompt = load_prompt("fn_judge")
    backend = OpenAIBackend(teacher.base_url, teacher.model, max_retries=0)
    planned = plan_judgments(rows, prompt, config, backend.model, SAMPLING)
    answers, stats = TeacherRunner(backend, CallStore(warehouse), show_progress=False).run(
        [p.call for p in planned], "fn-judge")
    assert stats.calls_made == len(planned) > 0 and stats.calls_failed == 0
    return apply_verdicts(rows, planned, answers, prompt, backend.name, backend.model, config, SAMPLING)


def test_verdicts_round_trip_through_the_warehouse_and_exports(mined, tmp_path):
    warehouse, mined_rows = mined
    rows = copy.deepcopy(mined_rows)
    groups = {  # rows 0-1 relabel, 2-3 exclude, 4-5 all judged not relevant, 6-7 unparseable answers
        "relabel": (rows[0:2], NegativesConfig(judge="suspected", false_negatives="relabel"), "fixed", RELEVANT),
        "exclude": (rows[2:4], NegativesConfig(judge="suspected", false_negatives="exclude"), "fixed", RELEVANT),
        "cleared": (rows[4:6], NegativesConfig(judge="all"), "fixed", NOT_RELEVANT),
        "garbled": (rows[6:8], NegativesConfig(judge="all"), "echo", ""),
    }
    judged = {}
    for name, (group, config, mode, content) in groups.items():
        with FakeTeacher(mode=mode, fixed_content=content, model=f"judge-{name}") as teacher:
            judged[name] = judge(group, config, teacher, warehouse)
    check_verdicts(judged)

    version = begin_version(warehouse, "negs", {"test": True}, [rows[0]["snapshot_id"]])
    staged = [row for group in judged.values() for row in group]
    add_rows(warehouse, "negs", version, "negatives", staged)
    publish_version(warehouse, "negs", version, {})
    loaded = load_rows(warehouse, "negs", version, "negatives")
    assert loaded == sorted(staged, key=lambda r: r["row_id"])

    out = tmp_path / "export"
    paths = {fmt: export_version(warehouse, "negs", version, "negatives", fmt, out)[0]
             for fmt in ("parquet", "st", "st-triplets", "flagembedding")}
    assert pq.read_table(paths["parquet"]).to_pylist() == loaded
    check_exports(loaded, paths)
    again = {fmt: export_version(warehouse, "negs", version, "negatives", fmt, tmp_path / "again")[0]
             for fmt in paths}
    assert all(paths[fmt].read_bytes() == again[fmt].read_bytes() for fmt in paths)


def check_verdicts(judged: dict[str, list[dict]]) -> None:
    prompt_version = load_prompt("fn_judge").version
    for name, rows in judged.items():
        for row in rows:
            assert row["teacher_model"] == f"judge-{name}" and row["prompt_version"] == prompt_version
            judged_ones = [n for n in row["negatives"] if n["judge_model"]]
            assert len(row["call_keys"]) == len(judged_ones)
            assert all(n["judge_prompt_version"] == prompt_version for n in judged_ones)
            suspects = [n for n in row["negatives"] if n["status"] == SUSPECTED_FALSE_NEGATIVE]
            relabeled = [p for p in row["positives"] if p["label_source"] == "judge"]
            if name in ("relabel", "exclude"):
                assert all(n["verdict"] == "relevant" and n["reasoning"] for n in suspects)
                assert all(n["verdict"] is None for n in row["negatives"] if n["status"] == HARD_NEGATIVE)
                assert len(relabeled) == (len(suspects) if name == "relabel" else 0)
            if name == "cleared":
                assert {n["verdict"] for n in row["negatives"]} == {"not_relevant"} and not relabeled
            if name == "garbled":
                assert all(n["verdict"] is None and n["judge_error"] == "wrong_format" for n in row["negatives"])


def trainable(row: dict) -> list[str]:
    """Hard negatives not judged relevant, and suspects the judge cleared (not relevant), in order."""
    return [n["text"] for n in row["negatives"]
            if (n["status"] == HARD_NEGATIVE and n["verdict"] != "relevant")
            or (n["status"] == SUSPECTED_FALSE_NEGATIVE and n["verdict"] == "not_relevant")]


def check_exports(rows: list[dict], paths: dict) -> None:
    by_query = {row["query"]: row for row in rows}
    lines = [json.loads(line) for line in paths["flagembedding"].read_text().splitlines()]
    assert lines and all(list(line) == ["neg", "pos", "query"] for line in lines)
    size = max(len(trainable(row)) for row in rows)  # no num_negatives in the spec: the most any row has
    for line in lines:
        row = by_query[line["query"]]
        assert line["pos"] == [p["text"] for p in row["positives"]]
        usable = trainable(row)
        assert line["neg"] == [usable[i % len(usable)] for i in range(size)]  # short rows padded in order
        uncleared = {n["text"] for n in row["negatives"]
                     if n["status"] == SUSPECTED_FALSE_NEGATIVE and n["verdict"] != "not_relevant"}
        assert not uncleared & set(line["neg"])
    assert len(lines) == sum(1 for row in rows if trainable(row))
    cleared = {n["text"] for row in rows for n in row["negatives"]
               if n["status"] == SUSPECTED_FALSE_NEGATIVE and n["verdict"] == "not_relevant"}
    assert cleared & {text for line in lines for text in line["neg"]}  # judged near-positives train as negatives
    relabeled = {p["text"] for row in rows for p in row["positives"] if p["label_source"] == "judge"}
    exported_pos = {text for line in lines for text in line["pos"]}
    assert relabeled & exported_pos  # relabeled false negatives train as positives
    st = pq.read_table(paths["st"]).to_pylist()
    assert list(st[0]) == ["anchor", "positive"] + [f"negative_{i}" for i in range(1, size + 1)]
    assert len(st) == sum(len(line["pos"]) for line in lines)
    triplets = pq.read_table(paths["st-triplets"]).to_pylist()
    assert len(triplets) == sum(len(by_query[line["query"]]["positives"]) * len(trainable(by_query[line["query"]]))
                                for line in lines)
    assert {t["negative"] for t in triplets} == {text for line in lines for text in line["neg"]}


@pytest.mark.slow
def test_embedded_judge_answers_in_shape_with_the_grammar(mined, tmp_path):
    """The embedded 135M model, constrained by the verdict grammar, gives parseable verdicts."""
    from generators.teachers.embedded import EmbeddedBackend

    _, rows = mined
    config = NegativesConfig(judge="all", constrained=True, passage_tokens=40, judge_positives=1)
    sampling = Sampling(temperature=0.3, max_tokens=60, seed=1)
    prompt = load_prompt("fn_judge")
    backend = EmbeddedBackend(n_ctx=2048)
    planned = plan_judgments(copy.deepcopy(rows[:1]), prompt, config, backend.model, sampling)[:2]
    assert verdict_grammar(reasoning_budget(1, 60)) == planned[0].call.grammar
    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        answers, stats = TeacherRunner(backend, CallStore(warehouse), show_progress=False).run(
            [p.call for p in planned], "fn-judge")
    judged = apply_verdicts(copy.deepcopy(rows[:1]), planned, answers, prompt, backend.name, backend.model,
                            config, sampling)
    verdicts = [judged[0]["negatives"][p.negative_index] for p in planned]
    print([(v["verdict"], v["reasoning"]) for v in verdicts])
    assert stats.calls_made == len(planned) == 2
    assert all(v["verdict"] in ("relevant", "not_relevant") and v["judge_error"] is None for v in verdicts)
    assert all(v["judge_model"] == backend.model for v in verdicts)
