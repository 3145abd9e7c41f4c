"""The teacher-call record: cache, resume point and lineage in one table."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, NamedTuple, Sequence

import duckdb
import orjson
import pyarrow as pa

from warehouse.db import Warehouse

_ANSWER_COLUMNS = ("status", "content", "reasoning", "finish_reason", "prompt_tokens",
                   "completion_tokens", "error", "attempts", "latency_ms")
_ANSWER_TYPES = (pa.string(), pa.string(), pa.string(), pa.string(), pa.int64(), pa.int64(),
                 pa.string(), pa.int64(), pa.float64())
_COLUMNS = ("call_key", "model", "backend", "sample_index", "request", *_ANSWER_COLUMNS)
_SCHEMA = pa.schema(list(zip(_COLUMNS, (pa.string(), pa.string(), pa.string(), pa.int64(),
                                        pa.string(), *_ANSWER_TYPES))))


class CallRecord(NamedTuple):
    """One call as stored: its key, who answered, the request (never a key or header), the answer."""

    key: str
    model: str
    backend: str
    sample_index: int
    request: dict
    answer: dict  # the _ANSWER_COLUMNS of a completion


class CallStore:
    """Reads and writes ``teacher_calls``."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    @contextlib.contextmanager
    def reading_cursor(self) -> Iterator["CallStore"]:
        """This store on a DuckDB cursor of its own, to read from while another thread writes
        through this one (one connection must not be used by two threads at once)."""
        cursor = self.warehouse.con.cursor()
        try:
            yield CallStore(Warehouse(cursor, self.warehouse.path, self.warehouse.read_only))
        finally:
            cursor.close()

    def stored_answers(self, keys: Iterable[str]) -> dict[str, dict]:
        """key -> answer record for the keys that already have a successful answer."""
        keys = pa.table({"call_key": pa.array(list(keys), pa.string())})
        if keys.num_rows == 0:
            return {}
        self.warehouse.con.register("_synthrank_keys", keys)
        try:
            rows = self.warehouse.con.execute(
                f"SELECT call_key, {', '.join(_ANSWER_COLUMNS)} FROM teacher_calls "
                "WHERE status = 'ok' AND call_key IN (SELECT call_key FROM _synthrank_keys)").fetchall()
        finally:
            self.warehouse.con.unregister("_synthrank_keys")
        return {row[0]: dict(zip(_ANSWER_COLUMNS, row[1:])) for row in rows}

    def record_many(self, records: Sequence[CallRecord]) -> None:
        """Store answers (or failures) in one commit; a later success replaces a stored failure."""
        if not records:
            return
        columns = [[r.key for r in records], [r.model for r in records], [r.backend for r in records],
                   [r.sample_index for r in records],
                   [orjson.dumps(r.request).decode() for r in records],
                   *([r.answer.get(name) for r in records] for name in _ANSWER_COLUMNS)]
        batch = pa.Table.from_arrays([pa.array(c, t.type) for c, t in zip(columns, _SCHEMA)], schema=_SCHEMA)
        names = ", ".join(_COLUMNS)
        self.warehouse.con.register("_synthrank_calls", batch)
        try:
            try:  # new keys, the usual case: a plain insert costs half of a replacing one
                self.warehouse.con.execute(f"INSERT INTO teacher_calls ({names}) SELECT {names} FROM _synthrank_calls")
            except duckdb.ConstraintException:  # a retried call replaces its stored failure
                self.warehouse.con.execute(
                    f"INSERT OR REPLACE INTO teacher_calls ({names}) SELECT {names} FROM _synthrank_calls")
        finally:
            self.warehouse.con.unregister("_synthrank_calls")

    def failed_keys(self) -> list[str]:
        rows = self.warehouse.con.execute(
            "SELECT call_key FROM teacher_calls WHERE status = 'failed'").fetchall()
        return [row[0] for row in rows]
