"""The export-format registry: ``(kind, format) -> function(rows, out_dir, kind) -> [paths]``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

Exporter = Callable[[list[dict], Path, str], list[Path]]
EXPORTERS: dict[tuple[str, str], Exporter] = {}


def exporter(kind: str, fmt: str) -> Callable[[Exporter], Exporter]:
    """Register a function as the ``fmt`` export of ``kind`` rows."""
    def register(function: Exporter) -> Exporter:
        EXPORTERS[(kind, fmt)] = function
        return function
    return register


def write_parquet(rows: list[dict], path: Path) -> Path:
    """Rows as a zstd Parquet file (deterministic for identical rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    pq.write_table(table, path, compression="zstd")
    return path


def parquet_exporter(kind: str) -> Exporter:
    """The plain export every kind has: all row fields as ``<kind>.parquet``."""
    @exporter(kind, "parquet")
    def export(rows: list[dict], out_dir: Path, kind_name: str) -> list[Path]:
        return [write_parquet(rows, out_dir / f"{kind_name}.parquet")]
    return export
