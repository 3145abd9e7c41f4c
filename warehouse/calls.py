"""The teacher-call record: cache, resume point and lineage in one table."""

from __future__ import annotations

import json
from typing import Iterable

from warehouse.db import Warehouse

_ANSWER_COLUMNS = ("status", "content", "reasoning", "finish_reason", "prompt_tokens",
                   "completion_tokens", "error", "attempts", "latency_ms")


class CallStore:
    """Reads and writes ``teacher_calls``; each answer is committed as soon as it is recorded."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def stored_answers(self, keys: Iterable[str]) -> dict[str, dict]:
        """key -> answer record for the keys that already have a successful answer."""
        keys = list(keys)
        if not keys:
            return {}
        rows = self.warehouse.con.execute(
            f"SELECT call_key, {', '.join(_ANSWER_COLUMNS)} FROM teacher_calls "
            "WHERE status = 'ok' AND call_key IN (SELECT unnest(?))",
            [keys],
        ).fetchall()
        return {row[0]: dict(zip(_ANSWER_COLUMNS, row[1:])) for row in rows}

    def record(self, key: str, model: str, backend: str, sample_index: int, request: dict,
               answer: dict) -> None:
        """Store one call's answer (or failure); a later success replaces a stored failure."""
        values = [answer.get(column) for column in _ANSWER_COLUMNS]
        self.warehouse.con.execute(
            f"INSERT OR REPLACE INTO teacher_calls (call_key, model, backend, sample_index, request, "
            f"{', '.join(_ANSWER_COLUMNS)}) VALUES (?, ?, ?, ?, ?, {', '.join('?' * len(values))})",
            [key, model, backend, sample_index, json.dumps(request, ensure_ascii=False), *values],
        )

    def failed_keys(self) -> list[str]:
        rows = self.warehouse.con.execute(
            "SELECT call_key FROM teacher_calls WHERE status = 'failed'").fetchall()
        return [row[0] for row in rows]
