"""mixed_cot exports from a published version: chat messages JSONL and HF datasets, deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generators.mixed_cot import MixedCotConfig, build_row, plan_traces
from generators.teachers import Completion, Sampling
from prompts import load_prompt
from tests.test_mixed_cot_gates import GOOD_ANSWER, GOOD_REASONING, PASSAGES, QRELS, QUERIES, SNAPSHOT
from warehouse.db import Warehouse
from warehouse.exports import export_version
from warehouse.versions import add_rows, begin_version, publish_version


ANSWERS = {"q1": GOOD_ANSWER, "q2": "차범근이 졸업한 대학교는 고려대학교입니다."}


@pytest.fixture()
def published(tmp_path) -> Path:
    """A warehouse with one published mixed_cot version of two accepted rows."""
    config = MixedCotConfig(with_passage=True)
    prompt = load_prompt(config.prompt_name)
    planned = plan_traces(SNAPSHOT, QUERIES, QRELS, PASSAGES, prompt, config, "teacher", Sampling(), None, 0)
    rows = [build_row(p, Completion(status="ok", reasoning=GOOD_REASONING, content=ANSWERS[p.qid],
                                    finish_reason="stop", completion_tokens=200), prompt, "embedded", config)
            for p in planned]
    assert [row["reason"] for row in rows] == [None, None]
    path = tmp_path / "wh.duckdb"
    with Warehouse.open(path) as warehouse:
        version = begin_version(warehouse, "ko-cot", {"kinds": ["mixed_cot"]}, [SNAPSHOT.snapshot_id])
        add_rows(warehouse, "ko-cot", version, "mixed_cot", rows)
        publish_version(warehouse, "ko-cot", version, {})
    return path


def export(path: Path, fmt: str, out_dir: Path) -> list[Path]:
    with Warehouse.open(path, read_only=True) as warehouse:
        return export_version(warehouse, "ko-cot", None, "mixed_cot", fmt, out_dir)


def test_messages_jsonl_has_system_user_and_assistant_with_think_block(published, tmp_path):
    path, _ = export(published, "messages", tmp_path / "a")  # and dataset_info.json
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2
    for line in lines:
        system, user, assistant = line["messages"]
        assert [system["role"], user["role"], assistant["role"]] == ["system", "user", "assistant"]
        assert "Korean" in system["content"]
    by_question = {line["messages"][1]["content"].rsplit("\n", 1)[1]: line["messages"] for line in lines}
    nickname = by_question["차범근의 애칭은?"]
    assert nickname[1]["content"] == "차범근 독일에서 차붐이라 불렸다.\n\n차범근의 애칭은?"
    assert nickname[2]["content"] == f"<think>\n{GOOD_REASONING}\n</think>\n\n{GOOD_ANSWER}"
    again, _ = export(published, "messages", tmp_path / "b")
    assert again.read_bytes() == path.read_bytes()


def test_hf_export_loads_back_and_is_byte_identical_on_reexport(published, tmp_path):
    from datasets import load_from_disk

    (first,) = export(published, "hf", tmp_path / "a")
    (second,) = export(published, "hf", tmp_path / "b")
    files = sorted(p.name for p in first.iterdir())
    assert files == sorted(p.name for p in second.iterdir())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in files)
    dataset = load_from_disk(str(first))
    assert len(dataset) == 2 and dataset[0]["messages"][2]["role"] == "assistant"
    assert dataset["language"] == ["ko", "ko"] and dataset["answer_correct"] == [True, True]
    assert sorted(dataset["references"]) == [["고려대학교"], ["차붐"]]
    assert all(0.05 <= ratio <= 0.20 for ratio in dataset["target_ratio"])
