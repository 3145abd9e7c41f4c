"""mixed_cot end to end on KorQuAD with the embedded teacher, as one Prefect flow run.

SmolLM2-135M writes no real mixed chain of thought, so most (or all) traces fail a gate:
what matters is that every row is accepted or rejected with its reasons, that the ratio is
measured on the reasoning, and that answers are checked against KorQuAD's references.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from generators.language import LANGUAGES, target_ratio
from generators.mixed_cot import REJECT_REASONS, MixedCotConfig, check_answer
from warehouse.db import Warehouse
from warehouse.versions import load_rows

pytestmark = pytest.mark.slow


def read_jsonl(path: Path) -> dict[str, dict]:
    return {record["_id"]: record for record in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def staged_rows(summary: dict) -> tuple[list[dict], list[dict]]:
    """Accepted rows, and rejected rows with their stage, reason and score."""
    with Warehouse.open(summary["warehouse"], read_only=True) as warehouse:
        accepted = load_rows(warehouse, summary["dataset"], summary["version"], "mixed_cot")
        rejected = [{**json.loads(data), **json.loads(lineage), "stage": stage, "rejected_for": reason,
                     "score": score}
                    for stage, reason, score, data, lineage in warehouse.con.execute(
                        "SELECT stage, reason, score, data, lineage FROM rejections WHERE dataset = ? AND "
                        "version = ? AND kind = 'mixed_cot'", [summary["dataset"], summary["version"]]
                    ).fetchall()]
    return accepted, rejected


def test_korquad_build_accepts_or_rejects_every_trace_with_reasons(prefect_harness, shared_data, tmp_path):
    from flows.build import build_flow

    settings = {"language": "ko", "with_passage": True, "passage_tokens": 60}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "dataset": "korquad-cot", "output": str(tmp_path / "out"), "kinds": ["mixed_cot"],
        "sources": [{"name": "korquad", "domain": "wiki-ko", "path": str(shared_data / "korquad"),
                     "queries": 4}],
        "mixed_cot": settings,
        "teacher": {"backend": "embedded", "n_ctx": 2048},
        "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 128, "seed": 3},
    }, allow_unicode=True))

    summary = build_flow(str(spec))

    assert summary["outcome"] == "published" and summary["attempted"]["mixed_cot"] == 4
    assert summary["teachers"][0]["calls_made"] == 4 and summary["teachers"][0]["calls_failed"] == 0
    accepted, rejected = staged_rows(summary)
    assert len(accepted) + len(rejected) == 4 and len(accepted) == summary["counts"]["mixed_cot"]
    assert sum(n for key, n in summary["rejections"].items() if key.startswith("mixed_cot/")) == len(rejected)
    for row in rejected:
        assert row["stage"] == "gate" and row["rejected_for"] in REJECT_REASONS
        assert row["failed_gates"][0] == row["rejected_for"] == row["reason"]
    for row in accepted:
        assert row["reason"] is None and row["failed_gates"] == []

    queries = read_jsonl(shared_data / "korquad" / "queries.jsonl")
    qrels = dict(line.split("\t")[:2] for line in
                 (shared_data / "korquad" / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:])
    config = MixedCotConfig(**settings)
    for row in accepted + rejected:
        # The passage is the question's judged passage; the references are KorQuAD's answers.
        assert row["passage_docid"] == qrels[row["qid"]]
        assert row["references"] == queries[row["qid"]]["answers"]
        assert (row["answer_exact"], row["answer_f1"], row["answer_correct"]) == check_answer(
            row["answer"], tuple(row["references"]), config)
        assert row["answer_correct"] is not None
        # The ratio is measured on the reasoning alone (None when there is none).
        assert row["target_ratio"] == target_ratio(row["reasoning"], LANGUAGES["ko"])
        assert row["question"] == queries[row["qid"]]["text"]
        assert row["prompt_name"] == "mixed_cot_passage" and len(row["prompt_version"]) == 12
        assert row["prompt_messages"][1]["content"].endswith(row["question"])
    assert "mixed_cot.parquet" in [Path(p).name for p in summary["outputs"]]
