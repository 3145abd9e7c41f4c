"""The DuckDB warehouse file: opening it (one writer at a time), schema, bulk inserts."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from warehouse.errors import WarehouseLocked

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?)(?: \(PID (\d+)\))?(?:\.|$| by)", re.S)


class Warehouse:
    """A DuckDB connection to one warehouse file, with the synthrank schema in place."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(cls, path: str | Path, read_only: bool = False, wait_seconds: float = 0.0) -> "Warehouse":
        """Open (creating if needed) the warehouse at ``path``.

        DuckDB lets one process write a file at a time. When another process holds it, retry
        for up to ``wait_seconds`` and then raise :class:`WarehouseLocked` naming that process.
        """
        path = Path(path)
        if read_only and not path.exists():
            raise FileNotFoundError(f"{path}: no warehouse file here (run `synthrank ingest` or a build first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                holder = _LOCK_HOLDER.search(str(exc))
                if holder is None:
                    raise
                if time.monotonic() >= deadline:
                    who = holder.group(1).strip() + (f" (PID {holder.group(2)})" if holder.group(2) else "")
                    raise WarehouseLocked(
                        f"{path} is in use by another process: {who}. "
                        f"Waited {wait_seconds:.0f} s; wait for it to finish or raise --wait."
                    ) from None
                time.sleep(0.5)
        warehouse = cls(con, path, read_only)
        if not read_only:
            con.execute(SCHEMA_PATH.read_text())
        return warehouse

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def fetch_one(self, sql: str, params: list | dict | None = None) -> tuple | None:
        """The first row of a query, with the result drained (DuckDB 2 refuses further work on
        a connection whose last result was not read to the end)."""
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run a block atomically: everything in it is committed together or not at all."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def insert_arrow(self, table: str, rows: pa.Table) -> None:
        """Bulk-insert an Arrow table whose column names match ``table``'s columns."""
        if rows.num_rows == 0:
            return
        columns = ", ".join(rows.column_names)
        self.con.register("_synthrank_bulk", rows)
        try:
            self.con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _synthrank_bulk")
        finally:
            self.con.unregister("_synthrank_bulk")
