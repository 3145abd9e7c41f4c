"""Exports of mixed_cot rows: parquet, chat ``messages`` JSONL, and a Hugging Face dataset.

Both chat exports hold one conversation per row (ordered by row_id): the system prompt and
the question as the teacher saw them, then the assistant turn
``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``. Identical rows give identical files.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from warehouse.formats.pointwise import CHAT_MESSAGES
from warehouse.formats.registry import exporter, field_types, parquet_exporter, write_hf, write_jsonl

parquet_exporter("mixed_cot")
field_types("mixed_cot", failed_gates=pa.list_(pa.string()), references=pa.list_(pa.string()))

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
# The HF export: the conversation, and what a trainer may want to filter or weight on.
HF_SCHEMA = pa.schema([
    ("messages", pa.list_(_MESSAGE)),
    ("row_id", pa.string()),
    ("qid", pa.string()),
    ("domain", pa.string()),
    ("language", pa.string()),
    ("question", pa.string()),
    ("reasoning", pa.string()),
    ("answer", pa.string()),
    ("references", pa.list_(pa.string())),
    ("target_ratio", pa.float64()),
    ("script_switches", pa.int64()),
    ("answer_language", pa.string()),
    ("answer_correct", pa.bool_()),
    ("teacher_model", pa.string()),
    ("prompt_version", pa.string()),
])


def chat_messages(row: dict) -> list[dict[str, str]]:
    """The row as one conversation: prompt messages, then reasoning and answer."""
    assistant = f"<think>\n{row['reasoning']}\n</think>\n\n{row['answer']}"
    return [*row["prompt_messages"], {"role": "assistant", "content": assistant}]


def prompt_messages(row: dict) -> list[dict[str, str]]:
    return list(row["prompt_messages"])


@exporter("mixed_cot", "messages", prompt=prompt_messages, llamafactory=CHAT_MESSAGES)
def export_messages(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    """``<kind>.messages.jsonl``: one ``{"messages": [...]}`` a line."""
    return [write_jsonl(({"messages": chat_messages(row)} for row in rows),
                        out_dir / f"{kind}.messages.jsonl")]


@exporter("mixed_cot", "hf", prompt=prompt_messages)
def export_hf(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    """``<kind>_hf/``: a ``datasets`` ``save_to_disk`` folder (``load_from_disk`` reads it)."""
    table = pa.Table.from_pylist(
        [{"messages": chat_messages(row), **{name: row.get(name) for name in HF_SCHEMA.names[1:]}}
         for row in rows], schema=HF_SCHEMA)
    return [write_hf(table, out_dir / f"{kind}_hf")]
