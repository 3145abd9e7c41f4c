"""The DuckDB warehouse file: opening it (one writer at a time), schema, bulk inserts."""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from warehouse.errors import InputError, WarehouseLocked

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?)(?: \(PID (\d+)\))?(?:\. See also|$)", re.S)
_SECRET_ARG = re.compile(r"key|token|secret|password", re.I)


class Warehouse:
    """A DuckDB connection to one warehouse file, with the synthrank schema in place."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(cls, path: str | Path, read_only: bool = False, wait_seconds: float = 0.0) -> "Warehouse":
        """Open (creating if needed) the warehouse at ``path``.

        DuckDB lets one process write a file at a time, and no other process read it meanwhile.
        When another process holds it, retry for up to ``wait_seconds`` and then raise
        :class:`WarehouseLocked` naming that process (PID and command line).
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
            except duckdb.Error as exc:
                holder = _LOCK_HOLDER.search(str(exc)) if isinstance(exc, duckdb.IOException) else None
                if holder is None:
                    raise InputError(f"{path}: cannot open it as a DuckDB warehouse "
                                     f"({str(exc).strip().splitlines()[0]})") from None
                if time.monotonic() >= deadline:
                    raise _locked(path, _describe_holder(holder.group(1), holder.group(2)),
                                  read_only, wait_seconds) from None
                time.sleep(0.5)
        _limit_memory(con)
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


# DuckDB's buffer pool defaults to 80% of RAM, so a long build's RSS grows with the warehouse
# it caches; a fixed limit bounds it (DuckDB spills to ``<warehouse>.tmp`` beyond it).
MEMORY_LIMIT_ENV = "SYNTHRANK_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "1GB"


def _limit_memory(con: duckdb.DuckDBPyConnection) -> None:
    limit = os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT
    try:
        con.execute("SET memory_limit = ?", [limit])
    except duckdb.Error as exc:
        con.close()
        raise InputError(f"{MEMORY_LIMIT_ENV}={limit!r} is not a DuckDB memory limit such as 1GB or "
                         f"512MB ({str(exc).strip().splitlines()[0]})") from None


@contextmanager
def discarded_if_unused(path: str | Path) -> Iterator[None]:
    """Run a block that may create the warehouse file ``path``. If the block fails and the file
    is new and holds no data (no snapshot, teacher call or version), remove it, its WAL and
    the folders made for it: a failed command leaves no empty warehouse behind."""
    path = Path(path)
    made = [folder for folder in (path, *path.parents) if not folder.exists()]
    try:
        yield
    except BaseException:
        if made and _holds_no_data(path):
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".wal").unlink(missing_ok=True)
            for folder in made[1:]:
                _remove_empty_folder(folder)
        raise


def _holds_no_data(path: Path) -> bool:
    if not path.is_file():
        return True
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return False  # held by another process, or not ours to judge: keep it
    try:
        return not con.execute("SELECT (SELECT count(*) FROM snapshots) + (SELECT count(*) FROM teacher_calls)"
                               " + (SELECT count(*) FROM dataset_versions)").fetchall()[0][0]
    except duckdb.Error:
        return False
    finally:
        con.close()


def _remove_empty_folder(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (something else wrote there), or already gone


def _locked(path: Path, holder: str, read_only: bool, wait_seconds: float) -> WarehouseLocked:
    advice = f"Waited {wait_seconds:g} s; wait for it to finish or raise --wait."
    if read_only:
        advice = f"DuckDB lets no other process open the file while one writes it. {advice}"
    return WarehouseLocked(f"{path} is in use by another process: {holder}. {advice}", holder)


def _describe_holder(program: str, pid: str | None) -> str:
    """``PID n: <command line>`` when the process can be looked up, else what DuckDB said."""
    if pid is None:
        return program.strip()
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return f"PID {pid} ({program.strip()})"
    return f"PID {pid} ({_redacted_command(args)})"


def _redacted_command(args: list[str]) -> str:
    """A command line with the value of any key/token/secret/password argument hidden."""
    shown, hide_next = [], False
    for arg in filter(None, args):
        name, equals, _ = arg.partition("=")
        if hide_next:
            shown.append("***")
        elif equals and _SECRET_ARG.search(name):
            shown.append(f"{name}=***")
        else:
            shown.append(arg)
        hide_next = arg.startswith("-") and not equals and bool(_SECRET_ARG.search(arg))
    command = " ".join(" ".join(shown).split())
    return command if len(command) <= 200 else command[:200] + " …"
