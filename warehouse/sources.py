"""Read sources as streams of validated records (see ``read_source``).

Supported sources:

* **BEIR folder**: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``, optional ``answers``; optional when topics are given or the corpus is
  for synthesized queries), ``qrels/*.tsv`` (``query-id corpus-id score`` with a header, or
  TREC's four columns ``qid 0 docid grade``). ``corpus`` and ``queries`` may also be
  ``.parquet`` files with the same columns.
* **Query-list file** (``.jsonl`` or ``.parquet``): one record per query,
  ``{"qid", "query", "answers"?, "passages": [{"docid", "title"?, "text", "relevance"?}]}``;
  a passage with ``relevance > 0`` becomes a qrel.
* **Any Hugging Face dataset** (a hub id, a ``save_to_disk`` folder, or a Parquet/JSONL/CSV
  file read with ``datasets.load_dataset``) in a known ``layout`` (``beir``, ``msmarco``,
  ``squad``, ``triplets``, ``qa``) or with a ``columns`` mapping of roles to (dotted) column
  paths; see ``LAYOUTS`` and ``ROLES``.
* **TREC files** added to any of these: ``topics`` (TSV ``qid<TAB>text`` or classic ``<top>``
  SGML) and ``qrels`` (TREC four columns or BEIR three).

Readers hand records to a sink (``warehouse.snapshots`` stages them in the warehouse in
chunks, so memory does not grow with the source). A record that cannot be used raises
:class:`BadRecord` naming the file and line (or row) and the field; the sink either stops
there (``on_bad_record: fail``, the default) or leaves the record out and keeps its place
and reason (``skip``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol

import orjson

from warehouse.errors import InputError

ID_FIELDS = ("_id", "id", "docid", "qid")
SKIP_HINT = ("to leave such records out (counted, with their lines, in the snapshot), set "
             "`on_bad_record: skip` on the source or pass --skip-bad-records to `synthrank ingest`")

# Column roles of a mapped table; each names a (dotted) column path.
ROLES = {
    "qid": "query id (default: a hash of the query text)",
    "query": "query text",
    "answers": "reference answers (a string or a list of strings)",
    "docid": "passage id (default: a hash of title and text)",
    "title": "passage title",
    "text": "relevant passage text (a string or a list of strings)",
    "relevance": "grade of (query, text) (default 1)",
    "passages": "a list of passage texts judged for the query (MS MARCO)",
    "selected": "one flag or grade per entry of `passages`",
    "negatives": "non-relevant passage texts (a string or a list); stored with grade 0",
}
LAYOUTS: dict[str, dict[str, str]] = {
    "squad": {"qid": "id", "query": "question", "title": "title", "text": "context", "answers": "answers.text"},
    "msmarco": {"qid": "query_id", "query": "query", "answers": "answers", "passages": "passages.passage_text",
                "selected": "passages.is_selected"},
    "triplets": {"query": "anchor", "text": "positive", "negatives": "negative"},
    "qa": {"query": "question", "text": "answer"},
}
OnBadRecord = Literal["fail", "skip"]
Where = tuple[str, int, str]  # (location template with {} for the number, number, sub-location)


def where_text(where: Where) -> str:
    template, number, sub = where
    return template.format(number) + (f" {sub}" if sub else "")


class BadRecord(InputError):
    """A record that cannot be used; ``reason`` is a short code (``empty_text``, ...)."""

    def __init__(self, where: Where, reason: str, message: str):
        super().__init__(f"{where_text(where)}: {message}")
        self.where, self.reason, self.detail = where, reason, message


class RecordSink(Protocol):
    def passage(self, where: Where, docid: str, title: str, text: str) -> None: ...
    def query(self, where: Where, qid: str, text: str, answers: list[str] | None) -> None: ...
    def qrel(self, where: Where, split: str, qid: str, docid: str, grade: int) -> None: ...
    def bad(self, error: BadRecord) -> None: ...


@dataclass(frozen=True)
class SourceRef:
    """Where a source is and how to read it (the ``sources`` entry of a spec, or ``ingest``'s
    arguments). ``location`` is a path, or with ``hub`` a Hugging Face hub id."""

    location: str
    hub: bool = False
    layout: str | None = None
    columns: dict[str, str] | None = None
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    streaming: bool = False
    limit: int | None = None
    topics: str | None = None
    topics_field: str = "title"
    qrels: str | None = None
    on_bad_record: OnBadRecord = "fail"

    @property
    def mapped(self) -> bool:
        return self.layout not in (None, "beir") or self.columns is not None

    def describe(self) -> str:
        return f"hf:{self.location}" if self.hub else self.location


@dataclass
class ReadPlan:
    """What a reader produces: its kind, and which repeated ids merge when identical
    (tables repeat a query per row and a passage per query)."""

    kind: str
    merge_queries: bool = False
    merge_passages: bool = False
    read: Callable[[RecordSink], None] = field(default=lambda sink: None, repr=False)
    passages_from: str = ""  # where passages and queries come from, for "no passages" errors
    queries_from: str = ""


def plan_source(ref: SourceRef) -> ReadPlan:
    """How to read ``ref``; raises :class:`InputError` when it cannot be read at all."""
    plan = _plan_main(ref)
    if ref.topics is None and ref.qrels is None:
        return plan
    base = plan.read

    def read_with_trec(sink: RecordSink) -> None:
        base(sink)
        if ref.topics:
            _read_topics(sink, Path(ref.topics), ref.topics_field)
        if ref.qrels:
            _read_qrels_file(sink, Path(ref.qrels), Path(ref.qrels).stem)

    return ReadPlan(plan.kind, plan.merge_queries, plan.merge_passages, read_with_trec, plan.passages_from,
                    ref.topics or plan.queries_from)


def _plan_main(ref: SourceRef) -> ReadPlan:
    plan = _plan_reader(ref)
    plan.passages_from = plan.passages_from or ref.location
    plan.queries_from = plan.queries_from or ref.location
    return plan


def _plan_reader(ref: SourceRef) -> ReadPlan:
    if ref.layout is not None and ref.layout != "beir" and ref.layout not in LAYOUTS:
        raise InputError(f"{ref.location}: unknown layout {ref.layout!r} (known: beir, {', '.join(LAYOUTS)})")
    if ref.hub or ref.mapped:
        return _plan_dataset(ref)
    path = Path(ref.location)
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
            return _plan_dataset(ref)
        corpus, queries = _table_file(path, "corpus"), _table_file(path, "queries")
        return ReadPlan("beir", read=lambda sink: _read_beir_folder(sink, path), passages_from=str(corpus or path),
                        queries_from=str(queries or f"{path} (no queries.jsonl|parquet)"))
    if path.is_file():
        if path.suffix in (".jsonl", ".json"):
            return ReadPlan("table", merge_passages=True, read=lambda sink: _read_query_list(sink, _iter_jsonl(path)))
        if path.suffix == ".parquet":
            return ReadPlan("table", merge_passages=True,
                            read=lambda sink: _read_query_list(sink, _iter_parquet(path)))
        raise InputError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl or .parquet, "
                         "or give a layout or columns to read it as a dataset)")
    raise InputError(f"{ref.location}: no such file or folder")


def each_record(sink: RecordSink, records: Iterable[tuple[Where, Any]], handle: Callable[[Where, Any], None]) -> None:
    """Call ``handle(where, record)`` for each record; a bad one goes to ``sink.bad``."""
    for where, record in records:
        try:
            if isinstance(record, BadRecord):
                raise record
            handle(where, record)
        except BadRecord as error:
            sink.bad(error)


# --- line-level readers -------------------------------------------------------------


def _iter_jsonl(path: Path) -> Iterator[tuple[Where, dict[str, Any] | BadRecord]]:
    """Yield (where, record) for each non-blank line, or a BadRecord for an unreadable one."""
    template = f"{path}:{{}}"
    loads = orjson.loads
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                record = loads(raw)
            except orjson.JSONDecodeError:
                if not raw.strip():
                    continue
                yield (template, number, ""), _unreadable_line((template, number, ""), raw)
                continue
            if not isinstance(record, dict):
                yield (template, number, ""), BadRecord((template, number, ""), "not_an_object",
                                                        f"expected a JSON object, got {type(record).__name__}")
                continue
            yield (template, number, ""), record


def _unreadable_line(where: Where, raw: bytes) -> BadRecord:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadRecord(where, "not_utf8",
                         f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
    try:
        json.loads(line)
    except json.JSONDecodeError as exc:
        return BadRecord(where, "malformed_json", f"malformed JSON ({exc.msg} at column {exc.colno})")
    return BadRecord(where, "malformed_json", "malformed JSON")


def _iter_parquet(path: Path) -> Iterator[tuple[Where, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: cannot read Parquet ({exc})") from None
    template, number = f"{path}: row {{}}", 0
    for batch in parquet.iter_batches(batch_size=8192):
        for record in batch.to_pylist():
            number += 1
            yield (template, number, ""), record


def _table_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.jsonl`` or ``folder/stem.parquet``, whichever exists."""
    for path in (folder / f"{stem}.jsonl", folder / f"{stem}.parquet"):
        if path.is_file():
            return path
    return None


def _iter_table(folder: Path, stem: str) -> Iterator[tuple[Where, Any]] | None:
    path = _table_file(folder, stem)
    if path is None:
        return None
    return _iter_jsonl(path) if path.suffix == ".jsonl" else _iter_parquet(path)


# --- field validation ---------------------------------------------------------------


def _record_id(where: Where, record: dict[str, Any], fields: Iterable[str] = ID_FIELDS) -> str:
    for name in fields:
        value = record.get(name)
        if value is not None:
            if isinstance(value, (str, int)) and str(value).strip():
                return str(value)
            raise BadRecord(where, "bad_id", f"field {name!r} must be a non-empty string, got {value!r}")
    raise BadRecord(where, "missing_id", f"missing field {next(iter(fields))!r}")


def _text_field(where: Where, record: dict[str, Any], name: str, required: bool = True) -> str:
    value = record.get(name)
    if value is None:
        if required:
            raise BadRecord(where, "missing_field", f"missing field {name!r}")
        return ""
    if not isinstance(value, str):
        raise BadRecord(where, "bad_field", f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _answers(where: Where, value: Any, name: str = "answers") -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return value
    raise BadRecord(where, "bad_field", f"field {name!r} must be a string or a list of strings")


# --- BEIR folders, query lists, TREC files ------------------------------------------


def _read_beir_folder(sink: RecordSink, folder: Path) -> None:
    corpus, queries = _iter_table(folder, "corpus"), _iter_table(folder, "queries")
    if corpus is None:
        raise InputError(f"{folder}: not a BEIR folder (needs corpus.jsonl|parquet, and queries.jsonl|parquet "
                         "or a `topics` file for its queries)")

    def stage_corpus() -> None:
        each_record(sink, corpus, lambda where, record: sink.passage(
            where, _record_id(where, record), _text_field(where, record, "title", False),
            _text_field(where, record, "text")))

    bulk = getattr(sink, "bulk_passages", None)
    if bulk is not None and (folder / "corpus.jsonl").is_file():
        bulk(folder / "corpus.jsonl", stage_corpus)
    else:
        stage_corpus()
    if queries is not None:
        each_record(sink, queries, lambda where, record: sink.query(
            where, _record_id(where, record), _text_field(where, record, "text"),
            _answers(where, record.get("answers"))))
    for qrels_file in sorted((folder / "qrels").glob("*.tsv")):
        _read_qrels_file(sink, qrels_file, qrels_file.stem)


def _read_qrels_file(sink: RecordSink, path: Path, split: str) -> None:
    if not path.is_file():
        raise InputError(f"{path}: qrels file not found")
    each_record(sink, _iter_qrels_lines(path),
                lambda where, cols: sink.qrel(where, split, cols[0], cols[1], _grade(where, cols[2])))


def _iter_qrels_lines(path: Path) -> Iterator[tuple[Where, list[str] | BadRecord]]:
    """(where, [qid, docid, grade]) from a BEIR (3 columns) or TREC (4 columns) file."""
    template = f"{path}:{{}}"
    for where, line in _iter_text_lines(path, template):
        if isinstance(line, BadRecord):
            yield where, line
            continue
        if not line or (where[1] == 1 and line.lower().startswith("query-id")):
            continue
        cols = line.split()
        if len(cols) == 4:  # TREC: qid iteration docid grade
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            yield where, BadRecord(where, "bad_line",
                                   f"expected 'query-id corpus-id score', got {len(cols)} columns")
            continue
        yield where, cols


def _iter_text_lines(path: Path, template: str) -> Iterator[tuple[Where, str | BadRecord]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = (template, number, "")
            try:
                yield where, raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                yield where, BadRecord(where, "not_utf8", "not valid UTF-8")


def _grade(where: Where, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRecord(where, "bad_grade", f"score {value!r} is not an integer") from None


_SGML_FIELD = re.compile(r"<(num|title|desc|narr)>", re.I)


def _read_topics(sink: RecordSink, path: Path, text_field: str = "title") -> None:
    """TREC topics: TSV ``qid<TAB>text`` lines, or classic SGML ``<top><num>…<title>…</top>``."""
    if not path.is_file():
        raise InputError(f"{path}: topics file not found")
    head = path.read_bytes()[:4096].lower()
    records = _iter_sgml_topics(path, text_field) if b"<top>" in head else _iter_tsv_topics(path)
    each_record(sink, records, lambda where, topic: sink.query(where, topic[0], topic[1], None))


def _iter_tsv_topics(path: Path) -> Iterator[tuple[Where, tuple[str, str] | BadRecord]]:
    for where, line in _iter_text_lines(path, f"{path}:{{}}"):
        if isinstance(line, BadRecord) or not line:
            if line:
                yield where, line
            continue
        qid, tab, text = line.partition("\t")
        if not tab or not qid.strip():
            yield where, BadRecord(where, "bad_line", "expected 'qid<TAB>query text'")
            continue
        yield where, (qid.strip(), text.strip())


def _iter_sgml_topics(path: Path, text_field: str) -> Iterator[tuple[Where, tuple[str, str] | BadRecord]]:
    """One topic per ``<top>`` block; fields run to the next tag. ``<num> Number: 301``."""
    template, start, fields, current = f"{path}:{{}}", 0, {}, None
    for where, line in _iter_text_lines(path, template):
        if isinstance(line, BadRecord):
            yield where, line
            continue
        lowered = line.lower()
        if lowered.startswith("<top>"):
            start, fields, current = where[1], {}, None
            continue
        if lowered.startswith("</top>"):
            yield _sgml_topic((template, start, ""), fields, text_field)
            continue
        match = _SGML_FIELD.match(line)
        if match:
            current = match.group(1).lower()
            line = line[match.end():]
        if current is not None:
            fields[current] = (fields.get(current, "") + " " + line).strip()


def _sgml_topic(where: Where, fields: dict[str, str], text_field: str):
    number = re.sub(r"^(number:)\s*", "", fields.get("num", ""), flags=re.I).strip()
    key = {"title": "title", "description": "desc", "desc": "desc"}.get(text_field, text_field)
    text = re.sub(r"^(topic:|description:)\s*", "", fields.get(key, ""), flags=re.I).strip()
    if not number:
        return where, BadRecord(where, "missing_id", "topic has no <num>")
    return where, (number, text)


def _read_query_list(sink: RecordSink, records: Iterable[tuple[Where, Any]]) -> None:
    def handle(where: Where, record: dict[str, Any]) -> None:
        qid = _record_id(where, record, ("qid", "_id", "id"))
        text, answers = _text_field(where, record, "query"), _answers(where, record.get("answers"))
        passages = record.get("passages")
        if not isinstance(passages, list) or not passages:
            raise BadRecord(where, "missing_field", "field 'passages' must be a non-empty list")
        sink.query(where, qid, text, answers)
        each_record(sink, (((where[0], where[1], f"passages[{i}]"), p) for i, p in enumerate(passages)),
                    lambda spot, passage: _query_list_passage(sink, spot, qid, passage))

    each_record(sink, records, handle)


def _query_list_passage(sink: RecordSink, where: Where, qid: str, passage: Any) -> None:
    if not isinstance(passage, dict):
        raise BadRecord(where, "not_an_object", "expected an object")
    docid = _record_id(where, passage, ("docid", "_id", "id"))
    relevance = passage.get("relevance", 0)
    if not isinstance(relevance, int):
        raise BadRecord(where, "bad_field", "field 'relevance' must be an integer")
    sink.passage(where, docid, _text_field(where, passage, "title", False), _text_field(where, passage, "text"))
    if relevance > 0:
        sink.qrel(where, "test", qid, docid, relevance)


# --- Hugging Face datasets ----------------------------------------------------------


def _plan_dataset(ref: SourceRef) -> ReadPlan:
    if ref.mapped:
        roles = _roles(ref)
        return ReadPlan(ref.layout or "table", merge_queries=True, merge_passages=True,
                        read=lambda sink: _read_mapped(sink, ref, roles))
    return ReadPlan("hf", read=lambda sink: _read_beir_parts(sink, ref))


def _roles(ref: SourceRef) -> dict[str, str]:
    roles = {**LAYOUTS.get(ref.layout or "", {}), **(ref.columns or {})}
    unknown = sorted(set(ref.columns or {}) - set(ROLES))
    if unknown:
        raise InputError(f"{ref.location}: columns.{unknown[0]}: unknown role (known: {', '.join(ROLES)})")
    if "text" not in roles and "passages" not in roles and "query" not in roles:
        raise InputError(f"{ref.location}: columns: map at least `query` or `text` (roles: {', '.join(ROLES)})")
    if ("selected" in roles) != ("passages" in roles):
        raise InputError(f"{ref.location}: columns: `passages` and `selected` go together")
    return roles


def load_dataset_part(ref: SourceRef, split: str | None = None, config: str | None = None):
    """One split of a dataset: ``load_from_disk`` for a saved folder, else ``load_dataset``
    (a hub id, or a local Parquet/JSONL/CSV file or folder), with config/revision/streaming."""
    import datasets

    split = split or ref.split
    path = Path(ref.location)
    try:
        if not ref.hub and path.is_dir() and ((path / "dataset_dict.json").exists()
                                              or (path / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(path))
        elif not ref.hub and path.is_file():
            builder = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}.get(path.suffix)
            if builder is None:
                raise InputError(f"{path}: unsupported file type {path.suffix!r} (use .parquet, .jsonl or .csv)")
            loaded = datasets.load_dataset(builder, data_files=str(path), split="train", streaming=ref.streaming)
        else:
            loaded = datasets.load_dataset(ref.location, config or ref.config, split=split,
                                           revision=ref.revision, streaming=ref.streaming)
    except InputError:
        raise
    except Exception as exc:  # offline, unknown repo, gated repo, unknown config or split
        where = "the Hugging Face hub" if ref.hub else "disk"
        raise InputError(f"{ref.location}: cannot load from {where} ({type(exc).__name__}: {exc})") from None
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is None and len(loaded) == 1:
            split = next(iter(loaded))
        if split not in loaded:
            raise InputError(f"{ref.location}: split {split!r} not found (splits: {', '.join(loaded)}); set `split`")
        loaded = loaded[split]
    if ref.limit is not None:
        loaded = loaded.take(ref.limit) if hasattr(loaded, "take") else loaded.select(range(min(ref.limit, len(loaded))))
    return loaded


def _iter_rows(dataset, template: str, batch_size: int = 1000) -> Iterator[tuple[Where, dict[str, Any]]]:
    number = 0
    for batch in dataset.iter(batch_size=batch_size):
        names = list(batch)
        for values in zip(*(batch[name] for name in names)):
            number += 1
            yield (template, number, ""), dict(zip(names, values))


def _read_beir_parts(sink: RecordSink, ref: SourceRef) -> None:
    """A BEIR-style dataset: parts ``corpus``, ``queries`` and optionally ``qrels`` (splits of a
    saved folder, or configs of a hub id with qrels in ``<id>-qrels``)."""
    import datasets

    name = ref.location
    if ref.hub:
        corpus = load_dataset_part(ref, "corpus", "corpus")
        queries = load_dataset_part(ref, "queries", "queries")
        try:
            qrels = load_dataset_part(SourceRef(f"{name}-qrels", hub=True, revision=ref.revision), "test")
        except InputError:
            qrels = None
    else:
        loaded = datasets.load_from_disk(name)
        parts = loaded if isinstance(loaded, datasets.DatasetDict) else {}
        missing = {"corpus", "queries"} - set(parts)
        if missing:
            raise InputError(f"{name}: Hugging Face dataset needs splits corpus and queries, missing "
                             f"{sorted(missing)} (or give a layout or columns)")
        corpus, queries, qrels = parts["corpus"], parts["queries"], parts.get("qrels")
    each_record(sink, _iter_rows(corpus, f"{name}: corpus row {{}}"), lambda where, record: sink.passage(
        where, _record_id(where, record), _text_field(where, record, "title", False),
        _text_field(where, record, "text")))
    each_record(sink, _iter_rows(queries, f"{name}: queries row {{}}"), lambda where, record: sink.query(
        where, _record_id(where, record), _text_field(where, record, "text"), _answers(where, record.get("answers"))))
    if qrels is not None:
        each_record(sink, _iter_rows(qrels, f"{name}: qrels row {{}}"), lambda where, record: _hf_qrel(sink, where, record))


def _hf_qrel(sink: RecordSink, where: Where, record: dict[str, Any]) -> None:
    try:
        qid, docid, grade = str(record["query-id"]), str(record["corpus-id"]), int(record["score"])
    except (KeyError, TypeError, ValueError):
        raise BadRecord(where, "bad_field", "needs fields query-id, corpus-id and an integer score") from None
    sink.qrel(where, "test", qid, docid, grade)


def _read_mapped(sink: RecordSink, ref: SourceRef, roles: dict[str, str]) -> None:
    dataset = load_dataset_part(ref)
    rows = _iter_rows(dataset, f"{ref.location}: row {{}}")
    first = next(rows, None)
    if first is None:
        return
    roles = _resolve_negatives(roles, first[1])
    _check_columns(ref, roles, list(first[1]))
    each_record(sink, _chain(first, rows), lambda where, row: _mapped_row(sink, where, row, roles))


def _chain(first, rest):
    yield first
    yield from rest


def _resolve_negatives(roles: dict[str, str], row: dict[str, Any]) -> dict[str, str]:
    """Sentence-transformers triplets may spell negatives ``negative_1 … negative_n``."""
    if roles.get("negatives") == "negative" and "negative" not in row:
        numbered = sorted((c for c in row if re.fullmatch(r"negative_\d+", c)), key=lambda c: int(c[9:]))
        if numbered:
            return {**roles, "negatives": ",".join(numbered)}
    return roles


def _check_columns(ref: SourceRef, roles: dict[str, str], columns: list[str]) -> None:
    """Every mapped column exists: a layout that does not fit names what it expected."""
    for role, path in roles.items():
        for part in path.split(","):
            top = part.split(".")[0]
            if top not in columns:
                how = f"layout {ref.layout!r} expects" if ref.layout and role not in (ref.columns or {}) \
                    else f"columns.{role} names"
                raise InputError(f"{ref.location}: {how} column {top!r} ({role}), which the dataset does not have "
                                 f"(columns: {', '.join(columns)})")


def column_value(row: dict[str, Any], path: str) -> Any:
    """The value at a dotted path; through a list, the list of each item's value."""
    value: Any = row
    for part in path.split("."):
        if isinstance(value, list):
            value = [item.get(part) if isinstance(item, dict) else None for item in value]
        elif isinstance(value, dict):
            if part not in value:
                raise KeyError(part)
            value = value[part]
        else:
            raise KeyError(part)
    return value


_REQUIRED_ROLES = ("query", "text", "passages", "selected")


def _value(where: Where, row: dict[str, Any], roles: dict[str, str], role: str) -> Any:
    if role not in roles:
        return None
    try:
        values = [column_value(row, path) for path in roles[role].split(",")]
    except KeyError as missing:
        raise BadRecord(where, "missing_field", f"{roles[role]} ({role}): no field {missing.args[0]!r}") from None
    value = values[0] if len(values) == 1 else values
    if value is None and role in _REQUIRED_ROLES:
        raise BadRecord(where, "missing_field", f"{roles[role]} ({role}) has no value")
    return value


def _texts(where: Where, value: Any, role: str) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise BadRecord(where, "bad_field", f"{role} must be a string or a list of strings")
    return items


def content_id(prefix: str, *parts: str) -> str:
    """A stable id from text, for tables without ids (identical text, identical id)."""
    return prefix + hashlib.sha1("\0".join(parts).encode()).hexdigest()[:16]


def _mapped_row(sink: RecordSink, where: Where, row: dict[str, Any], roles: dict[str, str]) -> None:
    """One table row: a query, its judged passages (relevant, listed with flags, negatives)."""
    get = lambda role: _value(where, row, roles, role)  # noqa: E731
    query = get("query")
    if query is not None and not isinstance(query, str):
        raise BadRecord(where, "bad_field", f"{roles['query']} (query) must be a string")
    title = get("title") or ""
    if not isinstance(title, str):
        raise BadRecord(where, "bad_field", f"{roles['title']} (title) must be a string")
    judged = [(text, _grade_value(where, get("relevance"), 1)) for text in _texts(where, get("text"), "text")]
    passages = _texts(where, get("passages"), "passages")
    if passages:
        flags = get("selected")
        if not isinstance(flags, list) or len(flags) != len(passages):
            raise BadRecord(where, "bad_field", f"{roles['selected']} (selected) needs one flag per passage")
        judged += [(text, _grade_value(where, flag, 0)) for text, flag in zip(passages, flags)]
    judged += [(text, 0) for text in _texts(where, get("negatives"), "negatives")]
    qid = None
    if query is not None:
        qid = get("qid")
        qid = str(qid) if qid is not None and str(qid).strip() else content_id("q-", query)
        sink.query(where, qid, query, _answers(where, get("answers"), roles.get("answers", "answers")))
    given_docid = get("docid")
    for index, (text, grade) in enumerate(judged):
        spot = (where[0], where[1], f"passage {index + 1}") if len(judged) > 1 else where
        own_title = title if index == 0 else ""
        docid = str(given_docid) if given_docid is not None and index == 0 else content_id("d-", own_title, text)
        sink.passage(spot, docid, own_title, text)
        if qid is not None:
            sink.qrel(spot, "test", qid, docid, grade)


def _grade_value(where: Where, value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRecord(where, "bad_grade", f"grade {value!r} is not an integer") from None
