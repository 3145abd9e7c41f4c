"""Exports of listwise rows for reranker trainers.

Every trainer example is one teacher call exactly as it happened: the messages of the
row's ``top_window`` (for a list ranked in one window, the whole list; with sliding windows,
the top window of the first pass), that window's presented passage ids and the teacher's
permutation of them. The row's full merged ranking stays in the ``parquet``/``hf`` exports.
Rows go out in ``row_id`` order with fixed key order, so a version always exports the same bytes.
A list with a consensus row (several samples merged, ``consensus`` names them) exports that
row only.

- ``reasonrank-sft``: LLaMA-Factory (alpaca columns) ``system``, ``instruction``, ``input``,
  ``output`` = ``<think>…</think> <answer>[4] > [2] > …</answer>``, plus ``id``.
- ``verl``: Parquet for verl RL (ReasonRank's ``ranking`` reward): ``prompt`` messages,
  ``label`` (1-based positions in ``initial_list``, best first), ``initial_list``,
  ``final_list``, ``relevant_docids``, ``dataset`` (the domain), ``data_source``,
  ``ability``, ``reward_model`` = {"ground_truth": "[4] > [2] > …", "style": "rule"},
  ``extra_info``; and ``listwise_verl_reward.py``, the reward verl loads
  (``warehouse/rewards.py``).
- ``rankzephyr``: ShareGPT ``conversations`` JSONL (system, human, gpt) in rank_llm's
  RankZephyr prompt (``rank_zephyr_template``, rank_llm 0.25), built from the top window's
  passages, whose answers are bare rankings matching ``^\\[\\d+\\]( > \\[\\d+\\])*$``.

The JSONL formats are registered for LLaMA-Factory in the folder's ``dataset_info.json``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from warehouse import rewards
from warehouse.formats.registry import copy_file, exporter, parquet_exporter, write_jsonl, write_parquet

parquet_exporter("listwise")

# rank_llm's rank_zephyr_template, as rank_llm 0.25 renders it (a test compares the two):
# the system message has no final period; the user turn is the prefix, one line per passage
# ("Title: … Content: …" where the passage has a title, ftfy-fixed, cut to 300 × 20 / n
# words, "[n]" written "(n)"), then the suffix. The query has "[n]" written "(n)" too.
RANKZEPHYR_SYSTEM = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query"
RANKZEPHYR_PREFIX = ("I will provide you with {num} passages, each indicated by a numerical identifier []. "
                     "Rank the passages based on their relevance to the search query: {query}.\n")
RANKZEPHYR_PASSAGE = "[{rank}] {candidate}\n"
RANKZEPHYR_SUFFIX = ("Search Query: {query}.\nRank the {num} passages above based on their relevance to the search "
                     "query. All the passages should be included and listed using identifiers, in descending order "
                     "of relevance. The output format should be [] > [], e.g., [2] > [1], Answer concisely and "
                     "directly and only respond with the ranking results, do not say any word or explain.")
RANKZEPHYR_WORDS = 300  # rank_llm's passage budget for a window of 20: 300 * 20 / n words each
_NUMBER = re.compile(r"\[(\d+)\]")
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


def rankzephyr_passage(title: str, text: str, words: int) -> str:
    """One passage as rank_llm writes it into the RankZephyr prompt."""
    from ftfy import fix_text

    content = f"Title: {title} Content: {text}" if title else text
    return _NUMBER.sub(r"(\1)", " ".join(fix_text(content.strip()).split()[:words]))


def rankzephyr_messages(query: str, passages: list[tuple[str, str]]) -> list[dict[str, str]]:
    """rank_llm's RankZephyr prompt (system and user messages) for a query and its
    (title, text) passages in presented order."""
    num, query = len(passages), _NUMBER.sub(r"(\1)", query)
    words = int(RANKZEPHYR_WORDS * 20 / num)
    body = "".join(RANKZEPHYR_PASSAGE.format(rank=rank, candidate=rankzephyr_passage(title, text, words))
                   for rank, (title, text) in enumerate(passages, start=1))
    user = RANKZEPHYR_PREFIX.format(num=num, query=query) + body + RANKZEPHYR_SUFFIX.format(num=num, query=query)
    return [{"role": "system", "content": RANKZEPHYR_SYSTEM}, {"role": "user", "content": user}]


def rankzephyr_prompt(row: dict) -> list[dict[str, str]]:
    """The RankZephyr prompt of the row's top window (the row carries its ``passages``)."""
    presented, _ = top_window(row)
    return rankzephyr_messages(row["query"], [(row["passages"][d]["title"], row["passages"][d]["text"])
                                              for d in presented])


def _prompt_messages(row: dict) -> list[dict[str, str]]:
    return [m for m in row["messages"] if m["role"] in ("system", "user")]


@exporter("listwise", "reasonrank-sft", prompt=_prompt_messages,
          llamafactory={"columns": {"system": "system", "prompt": "instruction", "query": "input",
                                    "response": "output"}})
def export_reasonrank_sft(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    records = []
    for row in _in_order(rows):
        records.append({"id": row["row_id"], "system": _message(row, "system"),
                        "instruction": _message(row, "user"), "input": "", "output": sft_output(row)})
    return [write_jsonl(records, out_dir / f"{kind}_reasonrank_sft.jsonl")]


@exporter("listwise", "verl", prompt=_prompt_messages)
def export_verl(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    """The parquet, and the reward module verl loads by path, copied next to it."""
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
    return [write_parquet(table, out_dir / f"{kind}_verl.parquet"),
            copy_file(Path(rewards.__file__), out_dir / f"{kind}_verl_reward.py")]


@exporter("listwise", "rankzephyr", prompt=rankzephyr_prompt, needs_passages=True,
          llamafactory={"formatting": "sharegpt", "columns": {"messages": "conversations"}})
def export_rankzephyr(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    records = []
    for row in _in_order(rows):
        system, user = rankzephyr_prompt(row)
        records.append({"id": row["row_id"], "conversations": [
            {"from": "system", "value": system["content"]},
            {"from": "human", "value": user["content"]},
            {"from": "gpt", "value": ranking_text(top_window(row)[1])},
        ]})
    return [write_jsonl(records, out_dir / f"{kind}_rankzephyr.jsonl")]
