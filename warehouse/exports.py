"""Exports of a published version to the files trainers load.

Each format is a function ``(rows, out_dir) -> list[Path]`` registered in ``EXPORTERS``
under ``(kind, format)``; ``export_version`` resolves the version and writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.versions import load_rows, resolve_version

Exporter = Callable[[list[dict], Path, str], list[Path]]
EXPORTERS: dict[tuple[str, str], Exporter] = {}


def exporter(kind: str, fmt: str) -> Callable[[Exporter], Exporter]:
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


@exporter("listwise", "parquet")
def listwise_parquet(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    return [write_parquet(rows, out_dir / f"{kind}.parquet")]


def export_version(warehouse: Warehouse, dataset: str, version: int | None, kind: str, fmt: str,
                   out_dir: Path) -> list[Path]:
    """Write one kind of a published version in one format into ``out_dir``."""
    if (kind, fmt) not in EXPORTERS:
        known = sorted(f"{k}/{f}" for k, f in EXPORTERS)
        raise InputError(f"no export format {fmt!r} for kind {kind!r} (known: {known})")
    version = resolve_version(warehouse, dataset, version)
    rows = load_rows(warehouse, dataset, version, kind)
    return EXPORTERS[(kind, fmt)](rows, Path(out_dir), kind)
