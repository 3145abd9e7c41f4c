"""Read sources into memory, validating every record.

Supported layouts (``read_source`` detects which):

* **BEIR folder**: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``, optional ``answers``), ``qrels/*.tsv`` (``query-id corpus-id score``
  with a header, or TREC's four columns ``qid 0 docid grade``). ``corpus`` and ``queries``
  may also be ``.parquet`` files with the same columns.
* **Query-list file** (``.jsonl`` or ``.parquet``): one record per query,
  ``{"qid", "query", "answers"?, "passages": [{"docid", "title"?, "text", "relevance"?}]}``;
  a passage with ``relevance > 0`` becomes a qrel.
* **Hugging Face dataset**: a ``save_to_disk`` folder holding ``corpus``, ``queries`` and
  optionally ``qrels`` (``query-id``, ``corpus-id``, ``score``), or a hub id laid out like
  the BEIR datasets on the hub (configs ``corpus`` and ``queries``, qrels in ``<id>-qrels``).

Every problem raises :class:`InputError` naming the file and line (or row) and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from warehouse.errors import InputError

ID_FIELDS = ("_id", "id", "docid", "qid")


@dataclass
class SourceData:
    """A source read and validated in memory, ready to become a snapshot."""

    kind: str
    passages: dict[str, tuple[str, str]] = field(default_factory=dict)  # docid -> (title, text)
    queries: dict[str, tuple[str, list[str] | None]] = field(default_factory=dict)
    qrels: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (split, qid, docid)


def read_source(source: str | Path, hub: bool = False) -> SourceData:
    """Read a BEIR folder, a query-list file or a Hugging Face dataset (see module doc);
    with ``hub`` the source is a Hugging Face hub id."""
    if hub:
        return _read_hf_hub(str(source))
    path = Path(source)
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
            return _read_hf_disk(path)
        return _read_beir_folder(path)
    if path.is_file():
        if path.suffix in (".jsonl", ".json"):
            return _read_query_list(_iter_jsonl(path), str(path))
        if path.suffix == ".parquet":
            return _read_query_list(_iter_parquet(path), str(path))
        raise InputError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl or .parquet)")
    raise InputError(f"{source}: no such file or folder")


# --- line-level readers -------------------------------------------------------------


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location, record) for each non-blank line; location is ``file:line``."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record


def _iter_parquet(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: cannot read Parquet ({exc})") from None
    for number, record in enumerate(table.to_pylist(), start=1):
        yield f"{path}: row {number}", record


def _table_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.jsonl`` or ``folder/stem.parquet``, whichever exists."""
    for path in (folder / f"{stem}.jsonl", folder / f"{stem}.parquet"):
        if path.is_file():
            return path
    return None


def _iter_table(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    return _iter_jsonl(path) if path.suffix == ".jsonl" else _iter_parquet(path)


# --- field validation ---------------------------------------------------------------


def _record_id(where: str, record: dict[str, Any], fields: Iterable[str] = ID_FIELDS) -> str:
    for name in fields:
        if name in record and record[name] is not None:
            value = record[name]
            if isinstance(value, (str, int)) and str(value).strip():
                return str(value)
            raise InputError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    raise InputError(f"{where}: missing field '_id'")


def _text_field(where: str, record: dict[str, Any], name: str, required: bool = True) -> str:
    value = record.get(name)
    if value is None:
        if required:
            raise InputError(f"{where}: missing field {name!r}")
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _answers_field(where: str, record: dict[str, Any]) -> list[str] | None:
    answers = record.get("answers")
    if answers is None:
        return None
    if isinstance(answers, str):
        return [answers]
    if isinstance(answers, list) and all(isinstance(a, str) for a in answers):
        return answers
    raise InputError(f"{where}: field 'answers' must be a string or a list of strings")


def _add_passage(data: SourceData, where: str, docid: str, title: str, text: str) -> None:
    if not (title.strip() or text.strip()):
        raise InputError(f"{where}: passage {docid!r} has empty title and text")
    if docid in data.passages:
        if data.passages[docid] != (title, text) or data.kind == "beir":
            raise InputError(f"{where}: duplicate passage id {docid!r}")
        return
    data.passages[docid] = (title, text)


def _add_query(data: SourceData, where: str, qid: str, text: str, answers: list[str] | None) -> None:
    if not text.strip():
        raise InputError(f"{where}: query {qid!r} has empty text")
    if qid in data.queries:
        raise InputError(f"{where}: duplicate query id {qid!r}")
    data.queries[qid] = (text, answers)


def _add_qrel(data: SourceData, where: str, split: str, qid: str, docid: str, grade: int) -> None:
    if qid not in data.queries:
        raise InputError(f"{where}: qrels name unknown query id {qid!r}")
    if docid not in data.passages:
        raise InputError(f"{where}: qrels name unknown passage id {docid!r}")
    data.qrels[(split, qid, docid)] = grade


def _require(found: dict, where: str, what: str) -> None:
    if not found:
        raise InputError(f"{where}: no {what} (the table is empty)")


# --- layouts ------------------------------------------------------------------------


def _read_beir_folder(folder: Path) -> SourceData:
    corpus, queries = _table_file(folder, "corpus"), _table_file(folder, "queries")
    if corpus is None or queries is None:
        raise InputError(
            f"{folder}: not a BEIR folder (needs corpus.jsonl|parquet and queries.jsonl|parquet)"
        )
    data = SourceData(kind="beir")
    for where, record in _iter_table(corpus):
        docid = _record_id(where, record)
        _add_passage(data, where, docid, _text_field(where, record, "title", False),
                     _text_field(where, record, "text"))
    _require(data.passages, str(corpus), "passages")
    for where, record in _iter_table(queries):
        _add_query(data, where, _record_id(where, record), _text_field(where, record, "text"),
                   _answers_field(where, record))
    _require(data.queries, str(queries), "queries")
    for qrels_file in sorted((folder / "qrels").glob("*.tsv")):
        for where, qid, docid, grade in _iter_qrels_tsv(qrels_file):
            _add_qrel(data, where, qrels_file.stem, qid, docid, grade)
    return data


def _iter_qrels_tsv(path: Path) -> Iterator[tuple[str, str, str, int]]:
    """Yield (location, qid, docid, grade) from a BEIR (3 columns) or TREC (4 columns) file."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputError(f"{where}: not valid UTF-8") from None
            if not line or (number == 1 and line.lower().startswith("query-id")):
                continue
            cols = line.split()
            if len(cols) == 4:  # TREC: qid iteration docid grade
                cols = [cols[0], cols[2], cols[3]]
            if len(cols) != 3:
                raise InputError(f"{where}: expected 'query-id corpus-id score', got {len(cols)} columns")
            try:
                grade = int(cols[2])
            except ValueError:
                raise InputError(f"{where}: score {cols[2]!r} is not an integer") from None
            yield where, cols[0], cols[1], grade


def _read_query_list(records: Iterable[tuple[str, dict[str, Any]]], name: str) -> SourceData:
    data = SourceData(kind="table")
    for where, record in records:
        qid = _record_id(where, record, ("qid", "_id", "id"))
        _add_query(data, where, qid, _text_field(where, record, "query"), _answers_field(where, record))
        passages = record.get("passages")
        if not isinstance(passages, list) or not passages:
            raise InputError(f"{where}: field 'passages' must be a non-empty list")
        for index, passage in enumerate(passages):
            spot = f"{where} passages[{index}]"
            if not isinstance(passage, dict):
                raise InputError(f"{spot}: expected an object")
            docid = _record_id(spot, passage, ("docid", "_id", "id"))
            _add_passage(data, spot, docid, _text_field(spot, passage, "title", False),
                         _text_field(spot, passage, "text"))
            relevance = passage.get("relevance", 0)
            if not isinstance(relevance, int):
                raise InputError(f"{spot}: field 'relevance' must be an integer")
            if relevance > 0:
                _add_qrel(data, spot, "test", qid, docid, relevance)
    _require(data.queries, name, "records")
    return data


def _read_hf_disk(folder: Path) -> SourceData:
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    parts = loaded if isinstance(loaded, datasets.DatasetDict) else {}
    missing = {"corpus", "queries"} - set(parts)
    if missing:
        raise InputError(f"{folder}: Hugging Face dataset needs splits corpus and queries, missing {sorted(missing)}")
    return _hf_parts_to_source(str(folder), parts["corpus"], parts["queries"], parts.get("qrels"))


def _read_hf_hub(repo_id: str) -> SourceData:
    """Load a BEIR-style dataset from the hub (needs a network)."""
    import datasets

    try:
        corpus = datasets.load_dataset(repo_id, "corpus", split="corpus")
        queries = datasets.load_dataset(repo_id, "queries", split="queries")
    except Exception as exc:  # offline, unknown repo, gated repo
        raise InputError(f"{repo_id}: cannot load from the Hugging Face hub ({exc})") from None
    try:
        qrels = datasets.load_dataset(f"{repo_id}-qrels", split="test")
    except Exception:
        qrels = None
    return _hf_parts_to_source(repo_id, corpus, queries, qrels)


def _hf_parts_to_source(name: str, corpus, queries, qrels) -> SourceData:
    data = SourceData(kind="hf")
    for number, record in enumerate(corpus, start=1):
        where = f"{name}: corpus row {number}"
        _add_passage(data, where, _record_id(where, record), _text_field(where, record, "title", False),
                     _text_field(where, record, "text"))
    _require(data.passages, f"{name}: corpus", "passages")
    for number, record in enumerate(queries, start=1):
        where = f"{name}: queries row {number}"
        _add_query(data, where, _record_id(where, record), _text_field(where, record, "text"),
                   _answers_field(where, record))
    _require(data.queries, f"{name}: queries", "queries")
    for number, record in enumerate(qrels or [], start=1):
        where = f"{name}: qrels row {number}"
        try:
            qid, docid, grade = str(record["query-id"]), str(record["corpus-id"]), int(record["score"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{where}: needs fields query-id, corpus-id and an integer score") from None
        _add_qrel(data, where, "test", qid, docid, grade)
    return data
