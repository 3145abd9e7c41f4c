"""The export-format registry and the deterministic writers formats are built from.

A format is a function ``(rows, out_dir, kind, **options) -> [paths written]`` (or a
``Written``: the paths and what the manifest entry should report) registered for a
``(kind, format)`` pair with ``@exporter(kind, fmt, ...)``. Every kind also has three generic
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
from typing import Callable, Iterable, Iterator, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

Exporter = Callable[..., "list[Path] | Written"]
EXPORTERS: dict[tuple[str, str], Exporter] = {}
_PLAIN_PARQUET: set[Exporter] = set()  # exporters that write every row field as <kind>.parquet


class Written(NamedTuple):
    """What a format wrote, and what its manifest entry should report about it."""

    paths: list[Path]
    report: dict

# Fixed so that the same rows always give the same Parquet bytes (for a given pyarrow).
_PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, version="2.6", use_dictionary=True,
                        write_statistics=True, data_page_version="1.0", row_group_size=65536)


def exporter(kind: str, fmt: str, *, options: dict | None = None,
             prompt: Callable[[dict], list[dict]] | None = None, needs_passages: bool = False,
             llamafactory: dict | None = None) -> Callable[[Exporter], Exporter]:
    """Register a function as the ``fmt`` export of ``kind`` rows.

    ``options``: the keyword options it takes, with their defaults. ``prompt``: a row's
    prompt messages as the export gives them to a trainer (the manifest records their token
    lengths). ``needs_passages``: rows come with ``passages`` ({docid: {title, text}} of
    their ``initial_list``). ``llamafactory``: the ``dataset_info.json`` entry (minus
    ``file_name``) that registers the export's JSONL with LLaMA-Factory.
    """
    def register(function: Exporter) -> Exporter:
        function.options = dict(options or {})
        function.prompt = prompt
        function.needs_passages = needs_passages
        function.llamafactory = llamafactory
        EXPORTERS[(kind, fmt)] = function
        return function
    return register


def find_exporter(kind: str, fmt: str) -> Exporter | None:
    """The kind's own ``fmt`` export, else the generic one of that name, else None."""
    return EXPORTERS.get((kind, fmt)) or _GENERIC.get(fmt)


def known_formats(kind: str) -> list[str]:
    return sorted({fmt for k, fmt in EXPORTERS if k == kind} | set(_GENERIC))


def formats_by_kind() -> dict[str, list[str]]:
    """Every format of every kind that registers its own (the generic ones included)."""
    return {kind: known_formats(kind) for kind in sorted({kind for kind, _ in EXPORTERS})}


# Fields whose type the values alone may not tell (null in every row, or empty lists), by kind.
FIELD_TYPES: dict[str, dict[str, pa.DataType]] = {}
# Every kind's filter verdicts, as a list (one entry per filter that saw the row): a struct
# keyed by filter name would change type with the filter chain, and be empty without one.
VERDICTS_TYPE = pa.list_(pa.struct([("filter", pa.string()), ("keep", pa.bool_()), ("reason", pa.string()),
                                    ("score", pa.float64())]))


def field_types(kind: str, **types: pa.DataType) -> None:
    """Declare the Arrow types of fields of ``kind`` rows that may be null in every row."""
    FIELD_TYPES.setdefault(kind, {}).update(types)


def arrow_table(rows: list[dict], kind: str | None = None) -> pa.Table:
    """Rows as a typed Arrow table: columns in first-seen order, missing fields null.

    Structured fields stay structs and lists. A field (or a field inside a struct) that is
    null in every row takes the type declared with ``field_types``, else string, never
    Arrow's ``null``. ``filter_verdicts`` becomes a list of {filter, keep, reason, score}.
    Only a field whose values have no common Arrow type becomes JSON text.
    """
    names = list(dict.fromkeys(name for row in rows for name in row))
    declared = {"filter_verdicts": VERDICTS_TYPE, **FIELD_TYPES.get(kind or "", {})}
    return pa.table({name: _column([_field(row, name) for row in rows], declared.get(name)) for name in names})


def _field(row: dict, name: str):
    value = row.get(name)
    if name == "filter_verdicts" and isinstance(value, dict):
        return [{"filter": label, **{k: (v or {}).get(k) for k in ("keep", "reason", "score")}}
                for label, v in sorted(value.items())]
    return value


def _column(values: list, declared: pa.DataType | None = None) -> pa.Array:
    if declared is not None:
        return pa.array(values, declared)
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if array is None or _has_empty_struct(array.type):
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=True)
                         for v in values], pa.string())
    return array.cast(_without_null(array.type)) if _has_null(array.type) else array


def _has_null(arrow_type: pa.DataType) -> bool:
    return pa.types.is_null(arrow_type) or any(_has_null(child) for child in _children(arrow_type))


def _without_null(arrow_type: pa.DataType) -> pa.DataType:
    """The type with every ``null`` (a field no row has a value for) made ``string``."""
    if pa.types.is_null(arrow_type):
        return pa.string()
    if pa.types.is_struct(arrow_type):
        return pa.struct([f.with_type(_without_null(f.type)) for f in arrow_type])
    if pa.types.is_list(arrow_type):
        return pa.list_(_without_null(arrow_type.value_type))
    if pa.types.is_large_list(arrow_type):
        return pa.large_list(_without_null(arrow_type.value_type))
    return arrow_type


def _children(arrow_type: pa.DataType) -> list[pa.DataType]:
    if pa.types.is_struct(arrow_type):
        return [f.type for f in arrow_type]
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return [arrow_type.value_type]
    return []


def _has_empty_struct(arrow_type: pa.DataType) -> bool:
    if pa.types.is_struct(arrow_type):
        return arrow_type.num_fields == 0 or any(_has_empty_struct(f.type) for f in arrow_type)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _has_empty_struct(arrow_type.value_type)
    return False


def write_parquet(rows: list[dict] | pa.Table, path: Path, kind: str | None = None) -> Path:
    """Rows (or a table) as a zstd Parquet file, byte-identical for identical rows."""
    table = rows if isinstance(rows, pa.Table) else arrow_table(rows, kind)
    with _replacing(path) as partial:
        pq.write_table(table, partial, **_PARQUET_OPTIONS)
    return path


def write_parquet_batches(batches: Callable[[], Iterable[list[dict]]], path: Path, kind: str | None = None) -> Path:
    """Rows as a zstd Parquet file written one row group per batch, holding one batch in
    memory at a time: ``batches()`` gives the same batches each call. A first pass types
    every column over all batches (as ``arrow_table`` types it over all rows: a field with
    no common Arrow type in any batch is JSON text everywhere); the second writes. The
    same rows in the same batches give the same bytes; one batch gives ``write_parquet``'s."""
    names, types = _column_types(batches(), kind)
    schema = pa.schema([(name, types[name] or pa.string()) for name in names])
    options = {k: v for k, v in _PARQUET_OPTIONS.items() if k != "row_group_size"}
    with _replacing(path) as partial, pq.ParquetWriter(partial, schema, **options) as writer:
        for rows in batches():
            writer.write_table(pa.table({name: _typed_column([_field(row, name) for row in rows], types[name])
                                         for name in names}, schema=schema), row_group_size=max(len(rows), 1))
    return path


def _column_types(batches: Iterable[list[dict]], kind: str | None) -> tuple[list[str], dict[str, pa.DataType | None]]:
    """Field names in first-seen order and each one's Arrow type over every batch (None: JSON
    text), typed as ``arrow_table`` types them over all rows: declared types first, and a
    field null in every row of a batch takes its type from the other batches."""
    declared = {"filter_verdicts": VERDICTS_TYPE, **FIELD_TYPES.get(kind or "", {})}
    seen: dict[str, list[pa.DataType | None]] = {}
    for rows in batches:
        for name in dict.fromkeys(name for row in rows for name in row):
            seen.setdefault(name, [])
        for name, found in seen.items():
            if name not in declared:
                found.append(_raw_type([_field(row, name) for row in rows]))
    return list(seen), {name: declared.get(name) or _settled_type(found) for name, found in seen.items()}


def _raw_type(values: list) -> pa.DataType | None:
    """The Arrow type of one batch's values, nulls kept (None: JSON text)."""
    try:
        arrow_type = pa.array(values).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return None if _has_empty_struct(arrow_type) else arrow_type


def _settled_type(found: list[pa.DataType | None]) -> pa.DataType | None:
    common = _common_type(found)
    return _without_null(common) if common is not None and _has_null(common) else common


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


def copy_file(source: Path, path: Path) -> Path:
    """A copy of ``source`` at ``path``, replaced only once complete."""
    with _replacing(path) as partial:
        shutil.copyfile(source, partial)
    return path


def write_hf(rows: list[dict] | pa.Table, folder: Path, kind: str | None = None) -> Path:
    """Rows (or a table) as a Hugging Face ``datasets`` folder (``load_from_disk`` reads it)."""
    import datasets

    table = rows if isinstance(rows, pa.Table) else arrow_table(rows, kind)
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
        return [write_parquet(rows, out_dir / f"{kind_name}.parquet", kind_name)]
    _PLAIN_PARQUET.add(export)
    return export


def is_plain_parquet(export: Exporter) -> bool:
    """Whether ``export`` writes every row field as ``<kind>.parquet`` (so an exporter may
    stream the rows through ``write_parquet_batches`` instead of calling it)."""
    return export in _PLAIN_PARQUET


def _generic_parquet(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    return [write_parquet(rows, out_dir / f"{kind}.parquet", kind)]


def _generic_jsonl(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    return [write_jsonl(rows, out_dir / f"{kind}.jsonl")]


def _generic_hf(rows: list[dict], out_dir: Path, kind: str) -> list[Path]:
    return [write_hf(rows, out_dir / f"{kind}_hf", kind)]


_GENERIC: dict[str, Exporter] = {"parquet": _generic_parquet, "jsonl": _generic_jsonl, "hf": _generic_hf}
_PLAIN_PARQUET.add(_generic_parquet)
