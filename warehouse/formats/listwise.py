"""Exports of listwise rows for reranker trainers.

Every trainer example is one teacher call exactly as it happened: the messages of the
row's ``top_window`` (for a list ranked in one window, the whole list; with sliding windows,
the top window of the first pass), that window's presented passage ids and the teacher's
permutation of them. The row's full merged ranking stays in the ``parquet``/``hf`` exports.
Rows go out in ``row_id`` order with fixed key order, so a version always exports the same bytes.
A list with a consensus row (several samples merged, ``consensus`` names them) exports that
row only.

- ``reasonrank-sft``: LLaMA-Factory (alpaca columns) ``system``, ``instruction``, ``input``,
  ``output`` = ``<think>…</think> <answer>[4] > [2] > …</answer>``, plus ``id``; and a
  ``dataset_info.json`` registering the file.
- ``verl``: Parquet for verl RL (ReasonRank's ``ranking`` reward): ``prompt`` messages,
  ``label`` (1-based positions in ``initial_list``, best first), ``initial_list``,
  ``final_list``, ``relevant_docids``, ``dataset`` (the domain), ``data_source``,
  ``ability``, ``reward_model`` = {"ground_truth": "[4] > [2] > …", "style": "rule"},
  ``extra_info``.
- ``rankzephyr``: ShareGPT ``conversations`` JSONL (system, human, gpt) whose answers are
  bare rankings matching ``^\\[\\d+\\]( > \\[\\d+\\])*$``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from warehouse.formats.registry import exporter, parquet_exporter, write_jsonl, write_parquet

parquet_exporter("listwise")

RANKZEPHYR_SYSTEM = ("You are RankLLM, an intelligent assistant that can rank passages based on their "
                     "relevancy to the query.")
VERL_DATA_SOURCE = "ranking"  # the reward ReasonRank's verl fork dispatches on

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
_IDS = pa.list_(pa.string())
VERL_SCHEMA = pa.schema([
    ("data_source", pa.string()),
    ("dataset", pa.string()),
    ("ability", pa.string()),
    ("prompt", pa.list_(_MESSAGE)),
    ("label", pa.list_(pa.int64())),
    ("initial_list", _IDS),
    ("final_list", _IDS),
    ("relevant_docids", _IDS),
    ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
    ("extra_info", pa.struct([("index", pa.int64()), ("split", pa.string()), ("row_id", pa.string()),
                              ("qid", pa.string()), ("list_id", pa.string()), ("sample_index", pa.int64()),
                              ("initial_list", _IDS), ("final_list", _IDS), ("relevant_docids", _IDS)])),
])


def top_window(row: dict) -> tuple[list[str], list[int]]:
    """(presented ids, permutation) of the row's top window: the example trainers get."""
    window = row["windows"][row["top_window"]]
    return window["presented"], window["permutation"]


def ranking_text(permutation: list[int]) -> str:
    return " > ".join(f"[{i}]" for i in permutation)


def sft_output(row: dict) -> str:
    """The assistant turn: the top window's reasoning, then its ranking."""
    return f"<think>{row['reasoning']}</think> <answer>{ranking_text(top_window(row)[1])}</answer>"


def _message(row: dict, role: str) -> str:
    return next((m["content"] for m in row["messages"] if m["role"] == role), "")


def _in_order(rows: list[dict]) -> list[dict]:
    """The rows trainers get, by ``row_id``: a list's consensus row when it has one (its
    samples stay in the parquet/hf exports), else each of its samples."""
    merged = {row["list_id"] for row in rows if row.get("consensus")}
    return sorted((row for row in rows if row.get("consensus") or row["list_id"] not in merged),
                  key=lambda row: row["row_id"])


@exporter("listwise", "reasonrank-sft")
def export_reasonrank_sft(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    records = []
    for row in _in_order(rows):
        records.append({"id": row["row_id"], "system": _message(row, "system"),
                        "instruction": _message(row, "user"), "input": "", "output": sft_output(row)})
    data = write_jsonl(records, out_dir / f"{kind}_reasonrank_sft.jsonl")
    info = out_dir / "dataset_info.json"
    info.write_text(json.dumps({f"synthrank_{kind}_reasonrank_sft": {
        "file_name": data.name,
        "columns": {"system": "system", "prompt": "instruction", "query": "input", "response": "output"},
    }}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [data, info]


@exporter("listwise", "verl")
def export_verl(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    records = []
    for index, row in enumerate(_in_order(rows)):
        presented, permutation = top_window(row)
        final = [presented[i - 1] for i in permutation]
        relevant = [d for d in presented if d in set(row["relevant_docids"])]
        records.append({
            "data_source": VERL_DATA_SOURCE, "dataset": row["domain"], "ability": "ranking",
            "prompt": row["messages"], "label": permutation, "initial_list": presented,
            "final_list": final, "relevant_docids": relevant,
            "reward_model": {"ground_truth": ranking_text(permutation), "style": "rule"},
            "extra_info": {"index": index, "split": "train", "row_id": row["row_id"], "qid": row["qid"],
                           "list_id": row["list_id"], "sample_index": row["sample_index"],
                           "initial_list": presented, "final_list": final, "relevant_docids": relevant},
        })
    table = pa.Table.from_pylist(records, schema=VERL_SCHEMA)
    return [write_parquet(table, out_dir / f"{kind}_verl.parquet")]


@exporter("listwise", "rankzephyr")
def export_rankzephyr(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    records = [{"id": row["row_id"], "conversations": [
        {"from": "system", "value": RANKZEPHYR_SYSTEM},
        {"from": "human", "value": _message(row, "user")},
        {"from": "gpt", "value": ranking_text(top_window(row)[1])},
    ]} for row in _in_order(rows)]
    return [write_jsonl(records, out_dir / f"{kind}_rankzephyr.jsonl")]
