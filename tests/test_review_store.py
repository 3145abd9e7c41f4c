"""Human review without a server: selections, annotation parsing, storing judgments, overriding
a build's rows, and the agreement figures, on a real DuckDB warehouse."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from generators.labelstudio import AnnotationProblem, parse_annotation, server_url, task_data
from generators.review import apply_human_judgments, override_rows
from tests.review_support import mixed_cot_row, publish_review_version
from warehouse.db import Warehouse
from warehouse.diff import diff_rows
from warehouse.errors import InputError
from warehouse.review import (Item, judged_items, judgments_fingerprint, latest_judgments, select_items,
                              store_judgments)
from warehouse.review_audit import human_agreement, wilson_interval
from warehouse.versions import add_rows, begin_version, load_rows, publish_version


@pytest.fixture
def published(tmp_path):
    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        yield warehouse, publish_review_version(warehouse)


def keys(items: list[Item]) -> set[tuple[str, str, str]]:
    return {item.key for item in items}


def test_named_selections_pick_the_documented_items(published):
    warehouse, made = published
    version, listwise, negatives = made["version"], made["listwise"], made["negatives"]

    disputed = keys(select_items(warehouse, "rev", version, "disputed"))
    # the near-miss (0.45 < 0.4 + 0.1) and the flagged row; not the clear rows
    assert {k for k in disputed if k[0] == "listwise"} == {("listwise", listwise[0]["row_id"], ""),
                                                          ("listwise", listwise[1]["row_id"], "")}
    # a suspect the judge called relevant, and a judged suspect without a verdict
    assert {k for k in disputed if k[0] == "negatives"} == {("negatives", negatives[0]["row_id"], "n0-1"),
                                                           ("negatives", negatives[1]["row_id"], "n1-1")}
    assert {k for k in disputed if k[0] == "mixed_cot"} == {("mixed_cot", made["mixed_cot"][1]["row_id"], "")}

    assert keys(select_items(warehouse, "rev", version, "rejected")) == {("listwise", made["rejected"]["row_id"], "")}
    assert keys(select_items(warehouse, "rev", version, "suspected_false_negatives")) == {
        ("negatives", negatives[0]["row_id"], "n0-1"), ("negatives", negatives[0]["row_id"], "n0-2"),
        ("negatives", negatives[1]["row_id"], "n1-1")}


def test_sample_is_seeded_per_kind_and_sql_predicates_select_items(published):
    warehouse, made = published
    version = made["version"]
    sample = select_items(warehouse, "rev", version, "sample:2", seed=3)
    assert [item.kind for item in sample].count("listwise") == 2
    assert [item.kind for item in sample].count("mixed_cot") == 2
    assert all(item.status == "accepted" for item in sample)
    assert keys(sample) == keys(select_items(warehouse, "rev", version, "sample:2", seed=3))
    assert keys(select_items(warehouse, "rev", version, "sample:2", ["listwise"], seed=4)) <= keys(
        select_items(warehouse, "rev", version, "kind = 'listwise' AND status = 'accepted'"))

    by_sql = select_items(warehouse, "rev", version,
                          "kind = 'negatives' AND json_extract_string(negative, '$.status') = 'hard_negative'")
    assert keys(by_sql) == {("negatives", made["negatives"][0]["row_id"], "n0-0"),
                            ("negatives", made["negatives"][1]["row_id"], "n1-0")}


@pytest.mark.parametrize("selection, message", [
    ("sample:zero", "sample:N"), ("no_such_column = 1", "not a predicate"),
    ("1 = 1; DROP TABLE dataset_rows", "without ';'")])
def test_bad_selections_name_what_is_wrong(published, selection, message):
    warehouse, made = published
    with pytest.raises(InputError, match=message):
        select_items(warehouse, "rev", made["version"], selection)


def test_listwise_annotations_become_judgments_and_foreign_passages_are_refused(published):
    _, made = published
    row = made["listwise"][0]
    task = task_data("listwise", row, None, {d: f"text of {d}" for d in row["initial_list"]})
    assert [p["id"] for p in task["passages"]] == row["initial_list"]
    a, b, c = row["initial_list"][:3]
    result = [{"from_name": "relevant", "to_name": "query", "type": "choices", "value": {"choices": [c, a]}},
              {"from_name": "ranking", "to_name": "passages", "type": "ranker",
               "value": {"ranker": {"top": [c, a], "rest": [b]}}}]
    assert parse_annotation("listwise", result, task) == {"relevant": [a, c], "ranking": [c, a]}

    result[0]["value"]["choices"].append("not-in-task")
    with pytest.raises(AnnotationProblem, match="not-in-task.*not in the task"):
        parse_annotation("listwise", result, task)
    with pytest.raises(AnnotationProblem, match="config does not have"):
        parse_annotation("listwise", [{"from_name": "sentiment", "value": {"choices": ["x"]}}], task)


def test_negatives_and_mixed_cot_annotations_need_their_choices():
    verdict = [{"from_name": "relevance", "value": {"choices": ["not relevant"]}}]
    assert parse_annotation("negatives", verdict, {}) == {"verdict": "not_relevant"}
    with pytest.raises(AnnotationProblem, match="relevance"):
        parse_annotation("negatives", [], {})
    both = [{"from_name": "answer_verdict", "value": {"choices": ["incorrect"]}},
            {"from_name": "reasoning_verdict", "value": {"choices": ["acceptable"]}}]
    assert parse_annotation("mixed_cot", both, {}) == {"answer": "incorrect", "reasoning": "acceptable"}
    with pytest.raises(AnnotationProblem, match="reasoning_verdict"):
        parse_annotation("mixed_cot", both[:1], {})


def test_server_urls_are_stored_without_credentials():
    assert server_url("http://user:secret@127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert server_url("localhost:8080") == "http://localhost:8080"


def judgment(item: Item, value: dict, annotation_id: int, when: str = "2026-01-01T10:00:00",
             selection: str = "disputed", version: int = 1) -> dict:
    return {"server": "http://127.0.0.1:8080", "project_id": 1, "task_id": 100 + annotation_id,
            "annotation_id": annotation_id, "dataset": "rev", "version": version, "kind": item.kind,
            "row_id": item.row_id, "item": item.item, "selection": selection, "content": item.content(),
            "judgment": value, "annotator": "1:reviewer@example.com", "annotated_at": datetime.fromisoformat(when)}


def test_storing_judgments_twice_changes_nothing_and_an_edited_annotation_replaces_its_judgment(published):
    warehouse, made = published
    items = {item.key: item for item in select_items(warehouse, "rev", made["version"], "disputed")}
    row = made["listwise"][0]
    item = items[("listwise", row["row_id"], "")]
    first = [judgment(item, {"relevant": [row["initial_list"][1]], "ranking": []}, 1)]
    before = judgments_fingerprint(warehouse, "rev")
    assert store_judgments(warehouse, first) == {"added": 1, "updated": 0, "unchanged": 0}
    stored = judgments_fingerprint(warehouse, "rev")
    assert store_judgments(warehouse, first) == {"added": 0, "updated": 0, "unchanged": 1}
    assert before != stored == judgments_fingerprint(warehouse, "rev")  # a scheduled build's input
    edited = [judgment(item, {"relevant": [], "ranking": []}, 1, when="2026-01-02T10:00:00")]
    assert store_judgments(warehouse, edited) == {"added": 0, "updated": 1, "unchanged": 0}
    assert judgments_fingerprint(warehouse, "rev") != stored
    stored = latest_judgments(warehouse, "rev")
    assert len(stored) == 1 and stored[("listwise", row["row_id"], "")]["judgment"] == {"relevant": [], "ranking": []}


def test_overrides_replace_rankings_relabel_candidates_and_drop_rejected_traces(published):
    warehouse, made = published
    version = made["version"]
    items = judged_items(warehouse, "rev", version, {
        ("listwise", made["listwise"][0]["row_id"], ""), ("negatives", made["negatives"][0]["row_id"], "n0-1"),
        ("negatives", made["negatives"][0]["row_id"], "n0-2"), ("mixed_cot", made["mixed_cot"][0]["row_id"], ""),
        ("mixed_cot", made["mixed_cot"][1]["row_id"], "")})
    row = made["listwise"][0]
    top = [row["initial_list"][3], row["initial_list"][0]]
    store_judgments(warehouse, [
        judgment(items[("listwise", row["row_id"], "")], {"relevant": top, "ranking": top}, 1),
        judgment(items[("negatives", made["negatives"][0]["row_id"], "n0-1")], {"verdict": "not_relevant"}, 2),
        judgment(items[("negatives", made["negatives"][0]["row_id"], "n0-2")], {"verdict": "relevant"}, 3),
        judgment(items[("mixed_cot", made["mixed_cot"][0]["row_id"], "")],
                 {"answer": "correct", "reasoning": "unacceptable"}, 4),
        judgment(items[("mixed_cot", made["mixed_cot"][1]["row_id"], "")],
                 {"answer": "correct", "reasoning": "acceptable"}, 5)])
    judgments = latest_judgments(warehouse, "rev")

    listwise = override_rows("listwise", made["listwise"], judgments)
    changed = listwise.changed[0]
    assert changed["final_list"][:2] == top and sorted(changed["final_list"]) == sorted(row["initial_list"])
    assert changed["permutation"] == [row["initial_list"].index(d) + 1 for d in changed["final_list"]]
    assert changed["relevant_docids"] == [d for d in row["initial_list"] if d in top]
    assert changed["human_labels"]["teacher"]["final_list"] == row["final_list"]
    assert changed["human_labels"]["annotator"] == "1:reviewer@example.com"
    assert changed["human_labels"]["task_id"] == 101 and changed["human_labels"]["judged_version"] == version

    negatives = override_rows("negatives", made["negatives"], judgments).changed[0]
    by_docid = {n["docid"]: n for n in negatives["negatives"]}
    assert by_docid["n0-1"]["verdict"] == "not_relevant" and by_docid["n0-1"]["status"] == "hard_negative"
    assert by_docid["n0-2"]["verdict"] == "relevant" and by_docid["n0-2"]["verdict_source"] == "human"
    assert [(p["docid"], p["label_source"]) for p in negatives["positives"]] == [("p0", "qrels"), ("n0-2", "human")]

    mixed = override_rows("mixed_cot", made["mixed_cot"], judgments)
    assert [(row["row_id"], reason) for row, reason in mixed.dropped] == [
        (made["mixed_cot"][0]["row_id"], "reasoning_unacceptable")]
    assert mixed.changed[0]["answer_correct"] is True and mixed.changed[0]["human_labels"]["reasoning"] == "acceptable"

    other_trace = {**made["mixed_cot"][0], "answer": "a different answer"}
    skipped = override_rows("mixed_cot", [other_trace], judgments)
    assert skipped.dropped == [] and skipped.skipped["judged content differs from this build's row"] == 1


def test_a_build_staged_after_review_publishes_the_human_labels_with_lineage(published):
    warehouse, made = published
    row = made["mixed_cot"][0]
    item = judged_items(warehouse, "rev", made["version"], {("mixed_cot", row["row_id"], "")})
    store_judgments(warehouse, [judgment(item[("mixed_cot", row["row_id"], "")],
                                         {"answer": "incorrect", "reasoning": "acceptable"}, 1)])
    version = begin_version(warehouse, "rev", {"dataset": "rev"}, ["snap-1"])
    add_rows(warehouse, "rev", version, "mixed_cot", [row, mixed_cot_row(7)])
    summary = apply_human_judgments(warehouse, "rev", version, ["mixed_cot"])
    publish_version(warehouse, "rev", version, {"human_review": summary})

    assert summary["kinds"]["mixed_cot"] == {"rows_changed": 0, "rows_dropped": 1, "not_applied": {}}
    assert [r["row_id"] for r in load_rows(warehouse, "rev", version, "mixed_cot")] == [mixed_cot_row(7)["row_id"]]
    stage, reason, lineage = warehouse.fetch_one(
        "SELECT stage, reason, lineage FROM rejections WHERE dataset = 'rev' AND version = ?", [version])
    assert (stage, reason) == ("human_review", "answer_incorrect")
    assert json.loads(lineage)["human_labels"]["annotator"] == "1:reviewer@example.com"


def test_diff_counts_rows_whose_labels_came_from_people(published):
    warehouse, made = published
    row = made["listwise"][2]
    relabeled = {**row, "relevant_docids": [row["initial_list"][0]],
                 "human_labels": {"fields": ["relevant_docids"], "annotator": "1:a"}}
    result = diff_rows("listwise", {row["row_id"]: row}, {row["row_id"]: relabeled})
    assert result.human_changed == [row["row_id"]] and result.summary()["human_changed"] == 1


def test_agreement_figures_have_sample_sizes_and_wilson_intervals(published):
    warehouse, made = published
    version = made["version"]
    sample = select_items(warehouse, "rev", version, "sample:10", ["negatives"], seed=1)
    assert len(sample) == 5  # every candidate: n0-0 hard, n0-1 judged relevant, n0-2 judged not, n1-0 hard, n1-1 unjudged
    store_judgments(warehouse, [judgment(item, {"verdict": "relevant"}, i, selection="sample:10")
                                for i, item in enumerate(sample)])
    figures = {(f.kind, f.name): f for f in human_agreement(warehouse, "rev", version)}
    agreement = figures[("negatives", "candidate label agreement")]
    assert (agreement.hits, agreement.n) == (1, 4)  # the unjudged suspect has no teacher label
    error = figures[("negatives", "error rate (sample)")]
    assert (error.hits, error.n) == (3, 4)
    suspects = figures[("negatives", "suspects people found relevant")]
    assert (suspects.hits, suspects.n) == (3, 3)  # n0-1, n0-2, n1-1
    assert error.interval == wilson_interval(3, 4) and error.interval[0] < 0.75 < error.interval[1]
    assert not any(kind == "listwise" for kind, _ in figures)


def test_wilson_interval_matches_the_closed_form():
    low, high = wilson_interval(5, 10)
    assert round(low, 4) == 0.2366 and round(high, 4) == 0.7634
    assert wilson_interval(0, 20)[0] == 0.0 and 0.15 < wilson_interval(0, 20)[1] < 0.17
