"""One build with kinds [negatives] under the Prefect harness: mine, judge, publish, export."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from warehouse.db import Warehouse
from warehouse.exports import export_version
from warehouse.versions import list_versions, load_rows

pytestmark = pytest.mark.slow

RELEVANT = "<think>It is about the same condition.</think> <answer>relevant</answer>"


def test_negatives_build_publishes_judged_rows(prefect_harness, tmp_path):
    from flows.build import build_flow

    with FakeTeacher(mode="fixed", fixed_content=RELEVANT, model="fn-judge-fake") as teacher:
        spec = {
            "dataset": "demo-negatives", "output": str(tmp_path / "out"),
            "sources": [{"name": "demo-medicine", "domain": "medicine",
                         "path": str(REPO / "examples" / "demo" / "medicine"), "queries": 4}],
            "kinds": ["negatives"],
            "negatives": {"retrievers": ["hybrid"], "depth": 8, "num_negatives": 2, "positive_fraction": 0.7},
            "teacher": {"backend": "openai", "base_url": teacher.base_url, "model": teacher.model},
            "sampling": {"temperature": 0.0, "max_tokens": 128, "seed": 5},
        }
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        summary = build_flow(str(path))
        calls = teacher.stats()["ok"]

    assert summary["counts"] == {"negatives": 4} and summary["attempted"] == {"negatives": 4}
    assert summary["prompts"].keys() == {"fn_judge"}
    with Warehouse.open(summary["warehouse"]) as warehouse:
        assert list_versions(warehouse, "demo-negatives")[-1]["status"] == "published"
        rows = load_rows(warehouse, "demo-negatives", summary["version"], "negatives")
        [flag] = export_version(warehouse, "demo-negatives", None, "negatives", "flagembedding", tmp_path / "x")
    suspects = [n for row in rows for n in row["negatives"] if n["status"] == "suspected_false_negative"]
    assert suspects and calls == len(suspects) == summary["teachers"][0]["calls_made"]
    assert all(n["verdict"] == "relevant" and n["judge_model"] == "fn-judge-fake" for n in suspects)
    assert all(n["retriever"] == "hybrid" for row in rows for n in row["negatives"])
    relabeled = sum(p["label_source"] == "judge" for row in rows for p in row["positives"])
    assert relabeled == len(suspects)
    [parquet] = [p for p in summary["outputs"] if p.endswith("negatives.parquet")]
    assert pq.read_table(parquet).num_rows == 4
    assert flag.read_text().count("\n") == sum(any(n["status"] == "hard_negative" for n in r["negatives"])
                                               for r in rows)
