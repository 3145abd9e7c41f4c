"""Pointwise + listwise end to end on CISI: one Prefect flow run, the embedded teacher,
grammar-constrained answers, sliding windows."""

from __future__ import annotations

import json

import pytest
import yaml

from prompts import load_prompt
from warehouse.db import Warehouse
from warehouse.versions import load_rows

pytestmark = pytest.mark.slow


def test_pointwise_then_listwise_on_cisi_with_the_embedded_teacher(prefect_harness, shared_data, tmp_path):
    from flows.build import build_flow

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "dataset": "cisi-rr",
        "output": str(tmp_path / "out"),
        "kinds": ["listwise", "pointwise"],  # the build runs pointwise first whatever the order here
        "sources": [{"name": "cisi", "domain": "library-science", "path": str(shared_data / "cisi"),
                     "queries": 2}],
        "candidates": {"method": "bm25", "k": 6},
        "pointwise": {"window": 3, "passage_tokens": 40, "constrained": True},
        "listwise": {"window": 4, "stride": 2, "depth": 6, "passage_tokens": 40, "constrained": True},
        "teacher": {"backend": "embedded", "n_ctx": 4096},
        "sampling": {"temperature": 0.3, "top_p": 0.9, "max_tokens": 160, "seed": 7},
    }))
    summary = build_flow(str(spec))
    pointwise_prompt, listwise_prompt = load_prompt("pointwise_reasonrank"), load_prompt("listwise_reasonrank")
    assert summary["attempted"] == {"pointwise": 4, "listwise": 2}  # 2 queries: 2 batches, 1 list each
    assert summary["prompts"] == {pointwise_prompt.name: pointwise_prompt.version,
                                  listwise_prompt.name: listwise_prompt.version}
    # The grammar fixes the answer's shape: only a cut-off answer may be rejected.
    assert {reason.split(":")[-1] for reason in summary["rejections"]} <= {"truncated"}

    with Warehouse.open(summary["warehouse"], read_only=True) as wh:
        pointwise = load_rows(wh, "cisi-rr", summary["version"], "pointwise")
        listwise = load_rows(wh, "cisi-rr", summary["version"], "listwise")
        rejected = [json.loads(data) for (data,) in wh.con.execute(
            "SELECT data FROM rejections WHERE kind = 'listwise'").fetchall()]
        requests = {key: json.loads(request) for key, request in
                    wh.con.execute("SELECT call_key, request FROM teacher_calls").fetchall()}
    assert pointwise and listwise
    # One call per window; a list stops at its first rejected window.
    calls = {t["kind"]: t["calls_made"] for t in summary["teachers"]}
    assert calls == {"pointwise": 4, "listwise": sum(len(row["windows"]) for row in listwise + rejected)}
    for row in pointwise:
        assert row["reference_answers"] == [] and row["prompt_version"] == pointwise_prompt.version
        assert set(row["relevant_docids"]) <= set(row["candidates"]) and len(row["candidates"]) == 3
    for row in listwise:
        assert row["prompt_version"] == listwise_prompt.version
        assert row["positives_lineage"]["prompt_version"] == pointwise_prompt.version
        judged = [p for p in pointwise if p["qid"] == row["qid"]]
        assert row["positives_judged"] == (len(judged) == 2)
        assert row["relevant_docids"] == [d for d in row["candidates"]
                                          if any(d in p["relevant_docids"] for p in judged)]
        assert sorted(row["final_list"]) == sorted(row["initial_list"]) and len(row["windows"]) == 2
        for key in row["call_keys"]:
            sent = json.dumps(requests[key]["messages"])
            assert "Reference answer" not in sent and "[5]" not in sent  # windows of four passages
    assert {p.rsplit("/", 1)[-1] for p in summary["outputs"]} >= {"pointwise.parquet", "listwise.parquet"}
