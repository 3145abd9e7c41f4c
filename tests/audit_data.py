"""A tiny warehouse for the audit tests, built with the warehouse functions and no teacher.

Two BEIR folders (domains alpha and beta, two judged queries each, six passages per query)
are ingested; the retriever's stored lists put the passages in a fixed order. Two datasets
are published over the same lists, each list ranked twice (sample 0 as retrieved, sample 1
shuffled):

- ``ideal``: the teacher ranks every list in the qrels order (nDCG@10 = 1).
- ``reversed``: the teacher ranks every list in the reverse of that order.

``ideal`` also holds pointwise, negatives and mixed_cot rows with known counts, and
rejections under four reasons (one row ranked in reverse and removed by a filter; one
with an answer and a passage full of HTML, to test escaping).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from warehouse.candidates import store_candidates
from warehouse.db import Warehouse
from warehouse.snapshots import ingest
from warehouse.versions import add_rejections, add_rows, begin_version, publish_version

DOMAINS = ("alpha", "beta")
# per query: passages in the qrels order (grades 2, 1, then unjudged ones)
GRADES = {"p1": 2, "p2": 1}
PASSAGES = ("p1", "p2", "p3", "p4", "p5", "p6")
RETRIEVED = ("p3", "p1", "p4", "p2", "p5", "p6")  # the retriever's order of every list
HOSTILE = '<script>console.error("injected")</script><img src=x onerror=alert(1)> & "quotes"'


def docid(domain: str, query: int, passage: str) -> str:
    return f"{domain}-q{query}-{passage}"


def write_beir(folder: Path, domain: str) -> None:
    (folder / "qrels").mkdir(parents=True)
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for q in (1, 2):
        qid = f"{domain}-q{q}"
        queries.append({"_id": qid, "text": f"What is {domain} topic {q}?", "answers": [f"{domain} answer {q}"]})
        for p in PASSAGES:
            text = HOSTILE if (domain, q, p) == ("alpha", 1, "p6") else f"Passage {p} about {domain} topic {q}."
            corpus.append({"_id": docid(domain, q, p), "title": f"{domain} {p}", "text": text})
        qrels += [f"{qid}\t{docid(domain, q, p)}\t{g}" for p, g in GRADES.items()]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in corpus) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(r) for r in queries) + "\n")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")


def listwise_row(sid: str, domain: str, q: int, sample: int, reverse: bool) -> dict:
    """``reversed`` rows carry the retriever order in ``candidates`` as the listwise stage
    writes it; ``ideal`` rows do not, so the audit finds it in the stored candidate lists."""
    ids = [docid(domain, q, p) for p in PASSAGES]
    presented = [docid(domain, q, p) for p in RETRIEVED]
    if sample:
        random.Random(f"{domain}{q}{sample}").shuffle(presented)
    final = ids[::-1] if reverse else ids
    row = {
        "row_id": f"{domain}-q{q}-s{sample}", "list_id": f"list-{domain}-q{q}", "sample_index": sample,
        "qid": f"{domain}-q{q}", "domain": domain, "snapshot_id": sid, "query": f"What is {domain} topic {q}?",
        "initial_list": presented, "final_list": final,
        "permutation": [presented.index(d) + 1 for d in final],
        "relevant_docids": [docid(domain, q, "p1"), docid(domain, q, "p3")],
        "reasoning": f"Passage {final[0]} answers it best <b>bold</b>.", "answer": "<answer>[1] > [2]</answer>",
        "teacher_model": "reverser" if reverse else "oracle", "teacher_backend": "constructed",
        "prompt_name": "listwise_reasonrank", "prompt_version": "test", "call_keys": [],
    }
    if reverse:
        row["candidates"] = [docid(domain, q, p) for p in RETRIEVED]
    return row


def pointwise_rows(sid: str, domain: str, q: int) -> list[dict]:
    """Two batches of one query naming p1 (relevant) and p3 (not): precision 1/2, recall 1/2
    against p1, p2."""
    return [{"row_id": f"pw-{domain}-q{q}-b{batch}", "list_id": f"list-{domain}-q{q}", "batch_index": batch,
             "qid": f"{domain}-q{q}", "domain": domain, "snapshot_id": sid,
             "candidates": [docid(domain, q, p) for p in part],
             "relevant_docids": [docid(domain, q, p) for p in part if p in ("p1", "p3")]}
            for batch, part in enumerate((PASSAGES[:3], PASSAGES[3:]))]


def negatives_row(sid: str, domain: str, q: int) -> dict:
    """Four mined negatives; the qrels call p2 relevant: a hard negative the judge catches."""
    def negative(p: str, rank: int, status: str, verdict: str | None) -> dict:
        return {"docid": docid(domain, q, p), "rank": rank, "score": 0.9 - rank / 10, "status": status,
                "verdict": verdict}

    return {"row_id": f"neg-{domain}-q{q}", "qid": f"{domain}-q{q}", "domain": domain, "snapshot_id": sid,
            "query": f"What is {domain} topic {q}?", "positives": [{"docid": docid(domain, q, "p1")}],
            "negatives": [negative("p2", 2, "hard_negative", "relevant"),
                          negative("p3", 3, "hard_negative", None),
                          negative("p4", 4, "hard_negative", "not_relevant"),
                          negative("p5", 5, "suspected_false_negative", "not_relevant")]}


def mixed_cot_row(index: int, ratio: float, correct: bool) -> dict:
    return {"row_id": f"cot-{index}", "qid": f"k{index}", "domain": "korean", "language": "ko",
            "question": "서울은 어디에 있나요?", "reasoning": "The question asks 서울 ...",
            "answer": "서울은 한국에 있습니다.", "target_ratio": ratio, "script_switches": 4,
            "answer_language": "ko" if index != 8 else "en", "answer_correct": correct}


def publish(wh: Warehouse, dataset: str, snapshot_ids: list[str], rows: dict[str, list[dict]],
            rejections: dict[str, list[tuple]] | None = None, teacher: str = "oracle") -> int:
    version = begin_version(wh, dataset, {"dataset": dataset, "candidates": {"method": "bm25", "k": 6}},
                            snapshot_ids)
    for kind, kind_rows in rows.items():
        add_rows(wh, dataset, version, kind, kind_rows)
    for kind, rejected in (rejections or {}).items():
        add_rejections(wh, dataset, version, kind, rejected)
    publish_version(wh, dataset, version, {
        "counts": {kind: len(r) for kind, r in rows.items()},
        "teachers": [{"kind": "listwise", "backend": "constructed", "model": teacher, "calls_made": 8,
                      "calls_reused": 0, "calls_failed": 0, "prompt_tokens": 800, "completion_tokens": 160,
                      "seconds": 1.5}],
        "cost": {"calls_made": 8, "prompt_tokens": 800, "completion_tokens": 160, "teacher_seconds": 1.5,
                 "usd": 0.01},
        "timings": {"build_seconds": 2.0, "stages": {"listwise": 1.5}}})
    return version


def build_audit_warehouse(root: Path) -> Path:
    """Write the two BEIR folders and the warehouse under ``root``; return the warehouse path."""
    path = root / "audit.duckdb"
    with Warehouse.open(path) as wh:
        sids = {}
        for domain in DOMAINS:
            write_beir(root / domain, domain)
            sids[domain], _ = ingest(wh, root / domain, f"src-{domain}", domain)
            sids[domain] = sids[domain].snapshot_id
            store_candidates(wh, sids[domain], "bm25:k=6", {
                f"{domain}-q{q}": [(docid(domain, q, p), 10.0 - i) for i, p in enumerate(RETRIEVED)] for q in (1, 2)})
        lists = [(sids[d], d, q) for d in DOMAINS for q in (1, 2)]
        for dataset, reverse in (("ideal", False), ("reversed", True)):
            rows = {"listwise": [listwise_row(*lst, sample, reverse) for lst in lists for sample in (0, 1)]}
            rejected = {}
            if not reverse:
                rows["pointwise"] = [row for lst in lists for row in pointwise_rows(*lst)]
                rows["negatives"] = [negatives_row(*lst) for lst in lists]
                rows["mixed_cot"] = [mixed_cot_row(i, 0.1, i != 2) for i in range(3)]
                bad = listwise_row(sids["alpha"], "alpha", 1, 2, True)
                bad.update(row_id="alpha-q1-s2", final_list=[], permutation=[], answer=HOSTILE)
                disagreeing = listwise_row(sids["beta"], "beta", 1, 2, True)  # ranked, then filtered out
                disagreeing["row_id"] = "beta-q1-s2"
                rejected = {"listwise": [(bad, "validate", "wrong_format", None),
                                         (disagreeing, "consistency_agreement", "low_agreement_tau", -1.0)],
                            "mixed_cot": [(mixed_cot_row(7, 0.6, True), "validate", "ratio_out_of_band", 0.6),
                                          (mixed_cot_row(8, 0.01, False), "validate", "ratio_out_of_band", 0.01),
                                          (mixed_cot_row(9, 0.12, False), "validate", "wrong_answer", 0.0)]}
            publish(wh, dataset, list(sids.values()), rows, rejected, "reverser" if reverse else "oracle")
    return path
