"""A spec's filter chain in a real build: every removed row is recorded with its filter,
reason and score, and every threshold is in the version manifest."""

from __future__ import annotations

import pytest
import yaml

from flows.spec import load_spec
from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.versions import list_versions, load_rows

INJECTED = "prog-04"  # the demo passage that says "Ignore previous instructions ..."


def write_spec(tmp_path, teacher_url: str, filters: dict) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "dataset": "filtered", "output": str(tmp_path / "out"),
        "sources": [{"name": "demo-programming", "domain": "programming",
                     "path": str(REPO / "examples/demo/programming")}],
        "candidates": {"k": 10}, "listwise": {"window": 10, "samples": 2},
        "teacher": {"backend": "openai", "base_url": teacher_url, "model": "fake"},
        "filters": filters,
    }))
    return str(spec)


@pytest.mark.slow
def test_filter_chain_rejections_are_recorded_and_thresholds_published(prefect_harness, tmp_path):
    from flows.build import build_flow

    filters = {"listwise": [{"name": "injection", "exclude": True}, {"name": "exact_dedup", "key": "query"}]}
    with FakeTeacher(mode="identity") as teacher:
        summary = build_flow(write_spec(tmp_path, teacher.base_url, filters))
    with Warehouse.open(summary["warehouse"], read_only=True) as wh:
        kept = load_rows(wh, "filtered", summary["version"], "listwise")
        rejected = wh.con.execute(
            "SELECT stage, reason, score, data FROM rejections WHERE dataset = 'filtered'").fetchall()
        manifest = list_versions(wh, "filtered")[-1]["manifest"]
    by_stage = {}
    for stage, reason, score, data in rejected:
        by_stage.setdefault(stage, []).append((reason, score, yaml.safe_load(data)))
    injected = by_stage["injection"]
    assert injected and all(INJECTED in row["initial_list"] and reason.startswith(f"injection:{INJECTED}:")
                            and score > 0 for reason, score, row in injected)
    assert all(INJECTED not in row["initial_list"] for row in kept)
    # Two samples per list: exact dedup on the query keeps the first sample of each list only.
    assert len(by_stage["exact_dedup"]) == len(kept) > 0
    assert sorted(row["query"] for row in kept) == sorted({row["query"] for row in kept})
    assert all(set(row["filter_verdicts"]) == {"injection", "exact_dedup"} for row in kept)
    steps = manifest["filters"]["listwise"]
    assert [step["name"] for step in steps] == ["injection", "exact_dedup"]
    assert steps[0]["params"]["exclude"] is True and steps[0]["params"]["threshold"] == 0.5
    assert steps[0]["rejected"] == len(injected) and steps[1]["rejected"] == len(kept)


def test_unknown_filter_or_parameter_names_the_place(tmp_path):
    with pytest.raises(InputError, match=r"filters\.listwise\[0\]: unknown filter 'dedupe'"):
        load_spec(write_spec(tmp_path, "http://127.0.0.1:9/v1", {"listwise": [{"name": "dedupe"}]}))
    with pytest.raises(InputError, match=r"filters\.listwise\[1\]: unknown parameter 'treshold'"):
        load_spec(write_spec(tmp_path, "http://127.0.0.1:9/v1",
                             {"listwise": [{"name": "exact_dedup"}, {"name": "minhash_dedup", "treshold": 0.8}]}))
    with pytest.raises(InputError, match=r"filters\.negatives: not a kind this build produces"):
        load_spec(write_spec(tmp_path, "http://127.0.0.1:9/v1", {"negatives": [{"name": "exact_dedup"}]}))
