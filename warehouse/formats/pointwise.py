"""Exports of pointwise rows (ReasonRank positive selection), in ``row_id`` order.

- ``parquet``: every field.
- ``chat``: ``{"id", "messages"}`` JSONL: the system and user messages the teacher saw
  (reference answer included where shown), then the assistant turn
  ``<think>…</think> <answer>[2], [5]</answer>`` (or ``<answer>none</answer>``), positions
  in increasing order.
- ``hf`` (generic): every field as a ``datasets`` folder.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from warehouse.formats.registry import exporter, field_types, parquet_exporter, write_jsonl

parquet_exporter("pointwise")
field_types("pointwise", reference_answers=pa.list_(pa.string()))
# LLaMA-Factory reads ``messages`` JSONL as sharegpt with OpenAI-style role/content tags.
CHAT_MESSAGES = {"formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                          "assistant_tag": "assistant", "system_tag": "system"}}


def positives_text(row: dict) -> str:
    """The row's positives as 1-based positions among its candidates, or ``none``."""
    relevant = set(row["relevant_docids"])
    positions = [i for i, docid in enumerate(row["candidates"], start=1) if docid in relevant]
    return ", ".join(f"[{i}]" for i in positions) or "none"


def reply(row: dict) -> str:
    return f"<think>{row['reasoning']}</think> <answer>{positives_text(row)}</answer>"


def prompt_messages(row: dict) -> list[dict]:
    return [m for m in row["messages"] if m["role"] in ("system", "user")]


@exporter("pointwise", "chat", prompt=prompt_messages, llamafactory=CHAT_MESSAGES)
def export_chat(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    records = [{"id": row["row_id"], "messages": [*row["messages"], {"role": "assistant", "content": reply(row)}]}
               for row in sorted(rows, key=lambda r: r["row_id"])]
    return [write_jsonl(records, out_dir / f"{kind}_chat.jsonl")]
