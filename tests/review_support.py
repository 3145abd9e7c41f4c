"""Rows of the three reviewable kinds, published into a real warehouse, for the review tests."""

from __future__ import annotations

import hashlib

from tests.warehouse_support import listwise_row
from warehouse.db import Warehouse
from warehouse.versions import add_rejections, add_rows, begin_version, publish_version

MANIFEST = {"teachers": [], "prompts": {},
            "filters": {"listwise": [{"step": "consistency_ndcg", "name": "consistency_ndcg",
                                      "params": {"alpha": 0.4}}]}}


def negatives_row(index: int, statuses: list[tuple[str, str | None]]) -> dict:
    """A negatives row whose candidates have the given (status, judge verdict)."""
    row_id = hashlib.sha256(f"snap-1:nq{index}".encode()).hexdigest()[:16]
    negatives = [{"docid": f"n{index}-{j}", "text": f"candidate {j} of query {index}", "retriever": "bm25",
                  "rank": j + 1, "score": 0.5 - j / 100, "margin_to_positive": 0.1, "status": status,
                  "set_aside_by": "positive_fraction" if status == "suspected_false_negative" else None,
                  "verdict": verdict, "judge_model": "fake-teacher" if status == "suspected_false_negative" else None,
                  "judge_prompt_version": None, "reasoning": None, "judge_error": None}
                 for j, (status, verdict) in enumerate(statuses)]
    return {"row_id": row_id, "qid": f"nq{index}", "domain": "test", "snapshot_id": "snap-1",
            "query": f"negatives query {index}",
            "positives": [{"docid": f"p{index}", "text": f"positive of {index}", "score": 0.9,
                           "label_source": "qrels"}],
            "negatives": negatives, "num_negatives": 3}


def mixed_cot_row(index: int, answer_correct: bool | None = True) -> dict:
    row_id = hashlib.sha256(f"cot-{index}".encode()).hexdigest()[:16]
    return {"row_id": row_id, "qid": f"cq{index}", "domain": "test", "snapshot_id": "snap-1", "language": "ko",
            "question": f"질문 {index}", "reasoning": f"I think about 질문 {index} carefully.",
            "answer": f"답 {index}", "references": [f"답 {index}"], "answer_correct": answer_correct,
            "failed_gates": [], "reason": None, "teacher_model": "fake-teacher"}


def publish_review_version(warehouse: Warehouse, dataset: str = "rev") -> dict:
    """A published version with listwise, negatives and mixed_cot rows (and a rejected listwise
    row); returns the rows by kind and the version."""
    listwise = [{**listwise_row(i), "candidates": listwise_row(i)["initial_list"]} for i in range(4)]
    listwise[0]["filter_verdicts"] = {"consistency_ndcg": {"keep": True, "reason": None, "score": 0.45}}  # near-miss
    listwise[1]["filter_verdicts"] = {"consistency_ndcg": {"keep": True, "reason": None, "score": 0.9},
                                      "injection": {"keep": True, "reason": "instruction_like", "score": None}}
    listwise[2]["filter_verdicts"] = {"consistency_ndcg": {"keep": True, "reason": None, "score": 0.95}}
    rejected = listwise_row(9)
    negatives = [negatives_row(0, [("hard_negative", None), ("suspected_false_negative", "relevant"),
                                   ("suspected_false_negative", "not_relevant")]),
                 negatives_row(1, [("hard_negative", None), ("suspected_false_negative", None)])]
    mixed = [mixed_cot_row(0), mixed_cot_row(1, answer_correct=None)]
    version = begin_version(warehouse, dataset, {"dataset": dataset}, ["snap-1"])
    add_rows(warehouse, dataset, version, "listwise", listwise)
    add_rejections(warehouse, dataset, version, "listwise", [(rejected, "consistency_ndcg", "ndcg_below_alpha", 0.1)])
    add_rows(warehouse, dataset, version, "negatives", negatives)
    add_rows(warehouse, dataset, version, "mixed_cot", mixed)
    publish_version(warehouse, dataset, version, MANIFEST)
    return {"version": version, "listwise": listwise, "rejected": rejected, "negatives": negatives,
            "mixed_cot": mixed}
