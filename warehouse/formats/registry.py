"""The export-format registry and the deterministic writers formats are built from.

A format is a function ``(rows, out_dir, kind) -> [paths written]`` registered for a
``(kind, format)`` pair with ``@exporter(kind, fmt)``. Every kind also has three generic
formats holding all row fields: ``parquet`` (``<kind>.parquet``), ``jsonl``
(``<kind>.jsonl``) and ``hf`` (a ``datasets.save_to_disk`` folder ``<kind>_hf``); a kind's
own registration of the same name wins. The writers give identical bytes for identical rows
(no timestamps, fixed writer options, sorted JSON keys) and replace a file only once it is
complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

Exporter = Callable[[list[dict], Path, str], list[Path]]
EXPORTERS: dict[tuple[str, str], Exporter] = {}
_PLAIN_PARQUET: set[Exporter] = set()  # exporters that write every row field as <kind>.parquet

# Fixed so that the same rows always give the same Parquet bytes (for a given pyarrow).
_PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, version="2.6", use_dictionary=True,
                        write_statistics=True, data_page_version="1.0", row_group_size=65536)


def exporter(kind: str, fmt: str) -> Callable[[Exporter], Exporter]:
    """Register a function as the ``fmt`` export of ``kind`` rows."""
    def register(function: Exporter) -> Exporter:
        EXPORTERS[(kind, fmt)] = function
        return function
    return register


def find_exporter(kind: str, fmt: str) -> Exporter | None:
    """The kind's own ``fmt`` export, else the generic one of that name, else None."""
    return EXPORTERS.get((kind, fmt)) or _GENERIC.get(fmt)


def known_formats(kind: str) -> list[str]:
    return sorted({fmt for k, fmt in EXPORTERS if k == kind} | set(_GENERIC))


def arrow_table(rows: list[dict]) -> pa.Table:
    """Rows as an Arrow table: columns in first-seen order, missing fields null. A field
    whose values have no common Arrow type (or are empty mappings) becomes JSON text."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pa.table({name: _column([row.get(name) for row in rows]) for name in names})


def _column(values: list) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if array is None or _has_empty_struct(array.type):
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)
                         for v in values], pa.string())
    return array


def _has_empty_struct(arrow_type: pa.DataType) -> bool:
    if pa.types.is_struct(arrow_type):
        return arrow_type.num_fields == 0 or any(_has_empty_struct(f.type) for f in arrow_type)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _has_empty_struct(arrow_type.value_type)
    return False


def write_parquet(rows: list[dict] | pa.Table, path: Path) -> Path:
    """Rows (or a table) as a zstd Parquet file, byte-identical for identical rows."""
    table = rows if isinstance(rows, pa.Table) else arrow_table(rows)
    with _replacing(path) as partial:
        pq.write_table(table, partial, **_PARQUET_OPTIONS)
    return path


def write_parquet_batches(batches: Callable[[], Iterable[list[dict]]], path: Path) -> Path:
    """Rows as a zstd Parquet file written one row group per batch, holding one batch in
    memory at a time: ``batches()`` gives the same batches each call. A first pass types
    every column over all batches (as ``arrow_table`` types it over all rows: a field with
    no common Arrow type in any batch is JSON text everywhere); the second writes. The
    same rows in the same batches give the same bytes; one batch gives ``write_parquet``'s."""
    names, types = _column_types(batches())
    schema = pa.schema([(name, types[name] or pa.string()) for name in names])
    options = {k: v for k, v in _PARQUET_OPTIONS.items() if k != "row_group_size"}
    with _replacing(path) as partial, pq.ParquetWriter(partial, schema, **options) as writer:
        for rows in batches():
            writer.write_table(pa.table({name: _typed_column([row.get(name) for row in rows], types[name])
                                         for name in names}, schema=schema), row_group_size=max(len(rows), 1))
    return path


def _column_types(batches: Iterable[list[dict]]) -> tuple[list[str], dict[str, pa.DataType | None]]:
    """Field names in first-seen order and each one's Arrow type over every batch (None: JSON text)."""
    seen: dict[str, list[pa.DataType | None]] = {}
    for rows in batches:
        for name in dict.fromkeys(name for row in rows for name in row):
            seen.setdefault(name, [])
        for name, found in seen.items():
            values = [row.get(name) for row in rows]
            column_type = _column(values).type
            found.append(None if _is_json_text(column_type, values) else column_type)
    return list(seen), {name: _common_type(found) for name, found in seen.items()}


def _is_json_text(arrow_type: pa.DataType, values: list) -> bool:
    """Whether ``_column`` fell back to JSON text for these values."""
    return pa.types.is_string(arrow_type) and any(v is not None and not isinstance(v, str) for v in values)


def _common_type(found: list[pa.DataType | None]) -> pa.DataType | None:
    if any(t is None for t in found):
        return None
    try:
        return pa.unify_schemas([pa.schema([("c", t)]) for t in found], promote_options="permissive").field("c").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError):
        return None


def _typed_column(values: list, arrow_type: pa.DataType | None) -> pa.Array:
    if arrow_type is None:
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)
                         for v in values], pa.string())
    return pa.array(values, arrow_type)


def write_jsonl(rows: Iterable[dict], path: Path) -> Path:
    """One JSON object a line, keys sorted, UTF-8, ``\\n`` line ends."""
    with _replacing(path) as partial, partial.open("w", encoding="utf-8", newline="\n") as sink:
        for row in rows:
            sink.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def write_hf(rows: list[dict] | pa.Table, folder: Path) -> Path:
    """Rows (or a table) as a Hugging Face ``datasets`` folder (``load_from_disk`` reads it)."""
    import datasets

    table = rows if isinstance(rows, pa.Table) else arrow_table(rows)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with _replacing(folder) as partial:
            datasets.Dataset(table, fingerprint=_table_digest(table)).save_to_disk(str(partial))
    finally:
        if bars:
            datasets.enable_progress_bars()
    return folder


def _table_digest(table: pa.Table) -> str:
    """A content fingerprint (``datasets`` records one in the folder; a random one would
    make two exports of the same rows differ)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Write to ``<path>.partial`` and move it onto ``path`` only when the block succeeds."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove(partial)
    try:
        yield partial
    except BaseException:
        _remove(partial)
        raise
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(partial, path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def parquet_exporter(kind: str) -> Exporter:
    """Register the plain export every kind has: all row fields as ``<kind>.parquet``."""
    @exporter(kind, "parquet")
    def export(rows: list[dict], out_dir: Path, kind_name: str) -> list[Path]:
        return [write_parquet(rows, out_dir / f"{kind_name}.parquet")]
    _PLAIN_PARQUET.add(export)
    return export


def is_plain_parquet(export: Exporter) -> bool:
    """Whether ``export`` writes every row field as ``<kind>.parquet`` (so an exporter may
    stream the rows through ``write_parquet_batches`` instead of calling it)."""
    return export in _PLAIN_PARQUET


def _generic_parquet(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    return [write_parquet(rows, out_dir / f"{kind}.parquet")]


def _generic_jsonl(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    return [write_jsonl(rows, out_dir / f"{kind}.jsonl")]


def _generic_hf(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    return [write_hf(rows, out_dir / f"{kind}_hf")]


_GENERIC: dict[str, Exporter] = {"parquet": _generic_parquet, "jsonl": _generic_jsonl, "hf": _generic_hf}
_PLAIN_PARQUET.add(_generic_parquet)
