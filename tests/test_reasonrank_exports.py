"""Trainer exports of listwise and pointwise rows: round trips, loaders, determinism, CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from generators.candidates import CandidateList
from generators.listwise import ListwiseConfig, build_row, parse_ranking, plan_samples, rank_samples
from generators.pointwise import (PointwiseConfig, attach_positives, build_judgment_row, parse_positives,
                                  plan_judgments, positives_by_query)
from generators.teachers import Completion, Sampling, TeacherRunner
from generators.teachers.openai_compat import OpenAIBackend
from prompts import load_prompt
from tests.conftest import REPO
from tests.fake_teacher import FakeTeacher
from warehouse.calls import CallStore
from warehouse.db import Warehouse
from warehouse.exports import export_version
from warehouse.versions import add_rows, begin_version, load_rows, publish_version

RANKZEPHYR_ANSWER = re.compile(r"^\[\d+\]( > \[\d+\])*$")


def scored_lists() -> tuple[list[CandidateList], dict[str, tuple[str, str]]]:
    """A long list (sliding windows) and a short one (one window), passages carrying scores."""
    long = tuple(f"L{i:02d}" for i in range(14))
    short = tuple(f"S{i}" for i in range(5))
    passages = {d: (f"Title {d}", f"text [1] of {d} score={(i * 37) % 23} “quoted” ﬁne")
                for docs in (long, short) for i, d in enumerate(docs)}
    return [CandidateList("snap", "science", "q-long", "long query?", long),
            CandidateList("snap", "law", "q-short", "short query?", short)], passages


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A published version with listwise rows (2 samples per list, windows of 6) and pointwise rows."""
    folder = tmp_path_factory.mktemp("exports")
    lists, passages = scored_lists()
    prompt_l, prompt_p = load_prompt("listwise_reasonrank"), load_prompt("pointwise_reasonrank")
    judgments = plan_judgments(lists, passages, prompt_p, PointwiseConfig(window=20), 14, "judge", Sampling())
    answer = Completion(status="ok", content="<answer>[1], [4]</answer>", reasoning="two fit", finish_reason="stop")
    pointwise = [build_judgment_row(j, answer, prompt_p, "openai") for j in judgments]
    config = ListwiseConfig(window=6, stride=3, depth=14, passes="full", samples=2, passage_tokens=20)
    with FakeTeacher(mode="score", latency_ms=0) as teacher, Warehouse.open(folder / "wh.duckdb") as wh:
        wh.con.executemany("INSERT INTO passages VALUES (?, ?, ?, ?)",
                           [("snap", docid, title, text) for docid, (title, text) in passages.items()])
        backend = OpenAIBackend(teacher.base_url, "fake-scorer")
        planned = plan_samples(lists, passages, prompt_l, config, backend.model, Sampling(), seed=5)
        rankings, _ = rank_samples(planned, TeacherRunner(backend, CallStore(wh), show_progress=False))
        listwise = [attach_positives(build_row(r, prompt_l, "openai"), positives_by_query(pointwise))
                    for r in rankings]
        assert all(row["reason"] is None for row in listwise + pointwise)
        version = begin_version(wh, "rr", {"dataset": "rr"}, ["snap"])
        add_rows(wh, "rr", version, "listwise", listwise)
        add_rows(wh, "rr", version, "pointwise", pointwise)
        publish_version(wh, "rr", version, {})
        rows = {kind: load_rows(wh, "rr", version, kind) for kind in ("listwise", "pointwise")}
    return folder / "wh.duckdb", version, rows


def export(published, fmt, out, kind="listwise"):
    path, version, _ = published
    with Warehouse.open(path, read_only=True) as wh:
        return export_version(wh, "rr", version, kind, fmt, out)


def top_window_ids(row):
    window = row["windows"][row["top_window"]]
    return window["presented"], [window["presented"][i - 1] for i in window["permutation"]]


def test_rows_hold_sliding_windows_and_samples(published):
    rows = published[2]["listwise"]
    assert len(rows) == 4 and {len(row["windows"]) for row in rows} == {1, 10}  # 4 passes: 4 + 3 + 2 + 1
    for row in rows:
        top = row["windows"][row["top_window"]]
        assert top["start"] == 0 and top["pass"] == 1 and len(row["call_keys"]) == len(row["windows"])
        presented, ranked = top_window_ids(row)
        if len(row["windows"]) == 1:
            assert (presented, ranked) == (row["initial_list"], row["final_list"])
        assert ranked[:3] == row["final_list"][:3]  # the top window fixes the top w - s = 3
        user = row["messages"][-1]["content"]
        assert f"\n[{len(presented)}] Title" in user and f"[{len(presented) + 1}] Title" not in user


def test_reasonrank_sft_answers_parse_back_and_load(published, tmp_path):
    import datasets

    data, info = export(published, "reasonrank-sft", tmp_path)
    rows = {row["row_id"]: row for row in published[2]["listwise"]}
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == sorted(rows)
    for record in records:
        row = rows[record["id"]]
        presented, ranked = top_window_ids(row)
        assert record["output"].startswith(f"<think>{row['reasoning']}</think> <answer>")
        parsed = parse_ranking(record["output"], len(presented))
        assert parsed.reason is None and [presented[i - 1] for i in parsed.permutation] == ranked
        assert record["system"].startswith("You are RankLLM") and "[1] Title" in record["instruction"]
        assert "[1] of" not in record["instruction"]  # literal [n] in passages became (n)
    assert json.loads(info.read_text())["synthrank_listwise_reasonrank_sft"]["file_name"] == data.name
    loaded = datasets.load_dataset("json", data_files=str(data), split="train")
    assert loaded.num_rows == len(rows) and {"system", "instruction", "output"} <= set(loaded.column_names)


def test_verl_labels_are_positions_in_initial_list(published, tmp_path):
    import datasets

    path, reward = export(published, "verl", tmp_path)
    assert reward.name == "listwise_verl_reward.py"
    rows = {row["row_id"]: row for row in published[2]["listwise"]}
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert loaded.num_rows == len(rows)
    for record in loaded:
        row = rows[record["extra_info"]["row_id"]]
        presented, ranked = top_window_ids(row)
        assert record["initial_list"] == presented and record["final_list"] == ranked
        assert sorted(record["label"]) == list(range(1, len(presented) + 1))
        assert [record["initial_list"][i - 1] for i in record["label"]] == record["final_list"]
        truth = parse_ranking(f"<answer>{record['reward_model']['ground_truth']}</answer>", len(presented))
        assert list(truth.permutation) == record["label"] and record["reward_model"]["style"] == "rule"
        assert record["relevant_docids"] == [d for d in presented if d in row["relevant_docids"]]
        assert record["prompt"] == row["messages"] and record["data_source"] == "ranking"
        assert record["dataset"] == row["domain"] and record["ability"] == "ranking"
        assert record["extra_info"]["initial_list"] == presented


def test_rankzephyr_answers_match_the_regex_and_parse_back(published, tmp_path):
    import datasets

    path, info = export(published, "rankzephyr", tmp_path)
    assert json.loads(info.read_text())["synthrank_listwise_rankzephyr"]["file_name"] == path.name
    rows = {row["row_id"]: row for row in published[2]["listwise"]}
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert loaded.num_rows == len(rows)
    for record in loaded:
        system, human, gpt = record["conversations"]
        assert [system["from"], human["from"], gpt["from"]] == ["system", "human", "gpt"]
        assert RANKZEPHYR_ANSWER.match(gpt["value"])
        presented, ranked = top_window_ids(rows[record["id"]])
        parsed = parse_ranking(f"<answer>{gpt['value']}</answer>", len(presented))
        assert [presented[i - 1] for i in parsed.permutation] == ranked


def test_hf_and_pointwise_exports_load_and_round_trip(published, tmp_path):
    import datasets

    (folder,) = export(published, "hf", tmp_path / "lw")
    listwise = datasets.load_from_disk(str(folder))
    assert sorted(listwise["row_id"]) == sorted(r["row_id"] for r in published[2]["listwise"])
    assert {"initial_list", "final_list", "reasoning", "relevant_docids", "sample_index"} <= set(listwise.column_names)

    pointwise = {row["row_id"]: row for row in published[2]["pointwise"]}
    chat, _ = export(published, "chat", tmp_path / "pw", kind="pointwise")
    for record in datasets.load_dataset("json", data_files=str(chat), split="train"):
        row = pointwise[record["id"]]
        assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
        parsed = parse_positives(record["messages"][-1]["content"], len(row["candidates"]))
        assert [row["candidates"][i - 1] for i in parsed.positions] == row["relevant_docids"]
    (folder,) = export(published, "hf", tmp_path / "pw", kind="pointwise")
    assert datasets.load_from_disk(str(folder)).num_rows == len(pointwise)


def test_exports_are_deterministic(published, tmp_path):
    for fmt in ("reasonrank-sft", "verl", "rankzephyr"):
        first = export(published, fmt, tmp_path / "a")
        second = export(published, fmt, tmp_path / "b")
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_export_writes_files_and_rejects_unknown_formats(published, tmp_path):
    path, version, _ = published
    done = run_cli("export", f"rr@{version}", "--format", "verl", "--out", str(tmp_path / "o"),
                   "--warehouse", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "listwise_verl.parquet").is_file()
    bad = run_cli("export", "rr", "--format", "alpaca", "--out", str(tmp_path / "x"), "-w", str(path),
                  cwd=tmp_path)
    assert bad.returncode == 2 and "alpaca" in bad.stderr and not (tmp_path / "x").exists()
    missing = run_cli("export", "rr@9", "--format", "verl", "--out", str(tmp_path / "y"), "-w", str(path),
                      cwd=tmp_path)
    assert missing.returncode == 2 and "rr@9" in missing.stderr
