"""Immutable, fingerprinted source snapshots: ingest once, read many times.

Ingest streams a source's records into staging tables in chunks (memory does not grow with
the source), checks what needs the whole source in SQL (duplicate ids, qrels naming unknown
ids), fingerprints the content, and writes the snapshot, all in one transaction: bad input
leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.names import check_name
from warehouse.sources import SKIP_HINT, BadRecord, OnBadRecord, ReadPlan, SourceRef, Where, plan_source, where_text

CHUNK_ROWS = 20_000


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    name: str
    domain: str
    source: str
    source_kind: str
    n_passages: int
    n_queries: int
    n_qrels: int
    n_skipped: int = 0


@dataclass(frozen=True)
class SkippedRecord:
    """A record ingest left out (``on_bad_record: skip``): where it was and why."""

    reason: str
    location: str
    detail: str


_STAGE_COLUMNS = {
    "passages": "docid VARCHAR, title VARCHAR, text VARCHAR",
    "queries": "qid VARCHAR, text VARCHAR, answers VARCHAR[]",
    "qrels": "split VARCHAR, qid VARCHAR, docid VARCHAR, grade INTEGER",
}
_LOCATION_COLUMNS = "seq BIGINT, src VARCHAR, n BIGINT, sub VARCHAR"
_PASSAGE_SCHEMA = pa.schema([("docid", pa.string()), ("title", pa.string()), ("text", pa.string()),
                             ("seq", pa.int64()), ("src", pa.string()), ("n", pa.int64()), ("sub", pa.string())])


class Stager:
    """The sink that ingest readers write into: validates each record, buffers it, and
    appends chunks of ``CHUNK_ROWS`` to staging: queries and qrels to tables of the open
    transaction, passages (the bulk of a source) to a temporary Parquet file that DuckDB
    reads back, so memory stays bounded whatever the corpus size. Passages set aside later
    (duplicates) are listed by ``seq`` in a table of dropped records."""

    def __init__(self, warehouse: Warehouse, plan: ReadPlan, on_bad_record: OnBadRecord):
        self.con = warehouse.con
        self.plan = plan
        self.on_bad_record = on_bad_record
        self.token = uuid.uuid4().hex[:12]
        self.skipped: list[SkippedRecord] = []
        self.seq = 0
        self.bulk: BulkCorpus | None = None
        self.buffers: dict[str, list[tuple]] = {table: [] for table in _STAGE_COLUMNS}
        self.folder = Path(tempfile.mkdtemp(prefix="synthrank-ingest-"))
        self.passage_file = self.folder / "passages.parquet"
        self.passage_writer = pq.ParquetWriter(self.passage_file, _PASSAGE_SCHEMA, compression="none",
                                               use_dictionary=["src", "sub"])
        self.dropped_passages = False

    def create_tables(self) -> None:
        """The staging tables, inside the ingest transaction."""
        for table in ("queries", "qrels"):
            self.con.execute(f"CREATE TABLE {self.table(table)} ({_STAGE_COLUMNS[table]}, {_LOCATION_COLUMNS})")
        self.con.execute(f"CREATE TABLE {self.table('dropped')} (seq BIGINT)")

    def table(self, name: str) -> str:
        return f"_stage_{name}_{self.token}"

    # --- the sink ---------------------------------------------------------------------

    def passage(self, where: Where, docid: str, title: str, text: str) -> None:
        if not (title.strip() or text.strip()):
            raise BadRecord(where, "empty_text", f"passage {docid!r} has empty title and text")
        self._add("passages", (docid, title, text), where)

    def query(self, where: Where, qid: str, text: str, answers: list[str] | None) -> None:
        if not text.strip():
            raise BadRecord(where, "empty_text", f"query {qid!r} has empty text")
        self._add("queries", (qid, text, answers), where)

    def qrel(self, where: Where, split: str, qid: str, docid: str, grade: int) -> None:
        self._add("qrels", (split, qid, docid, grade), where)

    def bulk_passages(self, path: Path, fallback: Callable[[], None]) -> None:
        """Take a JSONL corpus as DuckDB reads it (``read_json``, no Python per record); if
        any record needs a closer look, ``fallback`` stages it record by record instead."""
        self.bulk = BulkCorpus(path, fallback)

    def bad(self, error: BadRecord) -> None:
        if self.on_bad_record == "fail":
            raise InputError(f"{error}; {SKIP_HINT}") from None
        self.skipped.append(SkippedRecord(error.reason, where_text(error.where), error.detail))

    def _add(self, table: str, values: tuple, where: Where) -> None:
        self.seq += 1
        buffer = self.buffers[table]
        buffer.append((*values, self.seq, *where))
        if len(buffer) >= CHUNK_ROWS:
            self.flush(table)

    def flush(self, table: str) -> None:
        rows = self.buffers[table]
        if not rows:
            return
        columns = [name for name, _ in _staged_columns(table)]
        arrays = dict(zip(columns, (list(column) for column in zip(*rows))))
        if table == "passages":
            self.passage_writer.write_table(pa.table(arrays, schema=_PASSAGE_SCHEMA))
            rows.clear()
            return
        # numpy columns, not pyarrow's: pyarrow imports pandas (0.5 s) to convert Python lists
        if table == "queries":
            arrays["answers"] = [None if answers is None else json.dumps(answers) for answers in arrays["answers"]]
        self.con.register("_stage_chunk", {column: np.array(values, dtype=object) for column, values in arrays.items()})
        try:
            self.con.execute(f"INSERT INTO {self.table(table)} SELECT {_casts(table)} FROM _stage_chunk")
        finally:
            self.con.unregister("_stage_chunk")
        rows.clear()

    # --- whole-source checks ----------------------------------------------------------

    def finish(self, require_queries: bool = True) -> None:
        """Flush, check that there are passages (and queries), then duplicate ids and qrels
        references in SQL."""
        for table in _STAGE_COLUMNS:
            self.flush(table)
        if self.bulk is not None and not self.bulk.check(self.con, self.table("qrels")):
            fallback, self.bulk = self.bulk.fallback, None
            fallback()
            self.flush("passages")
        self.passage_writer.close()
        self._check_not_empty(require_queries)
        if self.bulk is None:  # the bulk corpus's scan found its ids unique
            self._check_duplicates("passages", "docid", "(title, text)", "passage", self.plan.merge_passages)
        self._check_duplicates("queries", "qid", "(text, answers)", "query", self.plan.merge_queries)
        self._check_qrels()

    def _check_not_empty(self, require_queries: bool) -> None:
        why = f"{len(self.skipped)} records skipped" if self.skipped else "the table is empty"
        passages = self.bulk.rows if self.bulk is not None else self.con.execute(
            f"SELECT count(*) FROM {self._passages()}").fetchall()[0][0]
        if not passages:
            raise InputError(f"{self.plan.passages_from}: no passages ({why})")
        if require_queries and not self.con.execute(f"SELECT count(*) FROM {self.table('queries')}").fetchall()[0][0]:
            raise InputError(f"{self.plan.queries_from}: no queries ({why})")

    def _check_duplicates(self, table: str, key: str, content: str, noun: str, merge: bool) -> None:
        """A repeated id is an error (or skipped), unless ``merge`` and its content is identical."""
        staged = self._staged(table)
        repeated = self.con.execute(
            f"SELECT count(*) FROM (SELECT {key} FROM {staged} GROUP BY {key} HAVING count(*) > 1)").fetchall()[0][0]
        if not repeated:
            return
        differs = f"{content} IS DISTINCT FROM first_content" if merge else "true"
        rows = self.con.execute(
            f"SELECT {key}, seq, src, n, sub FROM (SELECT *, first_value({content}) OVER w AS first_content,"
            f" row_number() OVER w AS rn FROM {staged} WINDOW w AS (PARTITION BY {key} ORDER BY seq))"
            f" WHERE rn > 1 AND {differs} ORDER BY seq").fetchall()
        for value, _, src, n, sub in rows:
            self.bad(BadRecord((src, n, sub or ""), "duplicate_id", f"duplicate {noun} id {value!r}"))
        # keep the first record of every id
        later = f"SELECT seq FROM (SELECT seq, row_number() OVER (PARTITION BY {key} ORDER BY seq) AS rn FROM {staged}) WHERE rn > 1"
        if table == "passages":
            self.con.execute(f"INSERT INTO {self.table('dropped')} {later}")
            self.dropped_passages = True
        else:
            self.con.execute(f"DELETE FROM {staged} WHERE seq IN ({later})")

    def _check_qrels(self) -> None:
        # the bulk corpus's scan found every qrels passage id: no second scan to look them up
        passages = self._passages() if self.bulk is None else f"(SELECT DISTINCT docid FROM {self.table('qrels')})"
        rows = self.con.execute(
            f"SELECT r.seq, r.src, r.n, r.sub, r.qid, r.docid, q.qid IS NULL, p.docid IS NULL"
            f" FROM {self.table('qrels')} r LEFT JOIN {self.table('queries')} q USING (qid)"
            f" LEFT JOIN {passages} p ON p.docid = r.docid"
            f" WHERE q.qid IS NULL OR p.docid IS NULL ORDER BY r.seq").fetchall()
        for seq, src, n, sub, qid, docid, no_query, _ in rows:
            where = (src, n, sub or "")
            if no_query:
                self.bad(BadRecord(where, "unknown_query", f"qrels name unknown query id {qid!r}"))
            else:
                self.bad(BadRecord(where, "unknown_passage", f"qrels name unknown passage id {docid!r}"))
        if rows:
            self.con.execute(f"DELETE FROM {self.table('qrels')} WHERE seq IN (SELECT unnest(?))",
                             [[row[0] for row in rows]])

    # --- results ----------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(passages, queries, qrels) as they will be stored (qrels: one per split, qid, docid)."""
        passages = self.bulk.rows if self.bulk is not None else f"(SELECT count(*) FROM {self._passages()})"
        return tuple(self.con.execute(
            f"SELECT {passages}, (SELECT count(*) FROM {self.table('queries')}),"
            f" (SELECT count(*) FROM (SELECT DISTINCT split, qid, docid FROM {self.table('qrels')}))").fetchall()[0])

    def content_digest(self) -> str:
        """An order-independent digest of the staged content (sums of per-record md5 halves)."""
        parts = []
        for table, expression in (
                ("passages", "docid || chr(0) || title || chr(0) || text"),
                ("queries", "qid || chr(0) || text || chr(0) || coalesce(to_json(answers)::VARCHAR, '')"),
                ("qrels", "split || chr(0) || qid || chr(0) || docid || chr(0) || grade::VARCHAR")):
            source = self._staged(table) if table != "qrels" else self._final_qrels()
            if table == "passages" and self.bulk is not None:
                parts.append(self.bulk.digest)
                continue
            parts.append(self.con.execute(
                f"SELECT count(*), sum((h >> 64)::HUGEINT)::VARCHAR, sum((h & {2**64 - 1}::UHUGEINT)::HUGEINT)::VARCHAR"
                f" FROM (SELECT md5_number({expression}) AS h FROM {source})").fetchall()[0])
        return json.dumps([list(part) for part in parts])

    def _passages(self) -> str:
        """The staged passages (docid, title, text): the staging table, or the bulk corpus."""
        if self.bulk is not None:
            return self.bulk.relation()
        kept = f" WHERE seq NOT IN (SELECT seq FROM {self.table('dropped')})" if self.dropped_passages else ""
        return f"(SELECT * FROM read_parquet('{_sql_string(self.passage_file)}'){kept})"

    def _staged(self, table: str) -> str:
        return self._passages() if table == "passages" else self.table(table)

    def _final_qrels(self) -> str:
        """Qrels as stored: the last grade given to each (split, qid, docid)."""
        return (f"(SELECT split, qid, docid, arg_max(grade, seq) AS grade FROM {self.table('qrels')}"
                f" GROUP BY split, qid, docid)")

    def write(self, snapshot_id: str) -> None:
        """Move the staged records into the snapshot tables."""
        self.con.execute(f"INSERT INTO passages SELECT ?, docid, title, text FROM {self._passages()}", [snapshot_id])
        self.con.execute(f"INSERT INTO queries SELECT ?, qid, text, answers FROM {self.table('queries')}", [snapshot_id])
        self.con.execute(f"INSERT INTO qrels SELECT ?, split, qid, docid, grade FROM {self._final_qrels()}",
                         [snapshot_id])
        if self.skipped:
            self.con.register("_stage_skips", pa.table({
                "snapshot_id": [snapshot_id] * len(self.skipped),
                "reason": [s.reason for s in self.skipped], "location": [s.location for s in self.skipped],
                "detail": [s.detail for s in self.skipped]}))
            try:
                self.con.execute("INSERT INTO snapshot_skips SELECT * FROM _stage_skips")
            finally:
                self.con.unregister("_stage_skips")

    def drop(self) -> None:
        """Drop the staging tables (inside the transaction)."""
        for table in ("queries", "qrels", "dropped"):
            self.con.execute(f"DROP TABLE IF EXISTS {self.table(table)}")

    def remove_files(self) -> None:
        """Remove the staging Parquet file, whatever happened."""
        self.passage_writer.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _staged_columns(table: str) -> list[tuple[str, str]]:
    """(name, SQL type) of each column of ``table``'s staging table."""
    return [tuple(column.split()) for column in f"{_STAGE_COLUMNS[table]}, {_LOCATION_COLUMNS}".split(", ")]


def _casts(table: str) -> str:
    """The staging columns of ``table`` cast from a chunk of numpy object columns (answers
    come as JSON text)."""
    return ", ".join(f"CAST({f'{name}::JSON' if name == 'answers' else name} AS {kind})"
                     for name, kind in _staged_columns(table))


@dataclass
class BulkCorpus:
    """A BEIR ``corpus.jsonl`` read by DuckDB itself. One scan checks every record (an id that
    is a non-empty string or integer, unique; title and text strings, not both blank) and
    every qrels passage id, and computes the content digest; only a clean corpus is used as
    it is, the rest go to the record-by-record reader for exact lines and reasons."""

    path: Path
    fallback: Callable[[], None]
    rows: int = 0
    digest: tuple = ()

    _COLUMNS = "{'_id': 'JSON', 'id': 'JSON', 'docid': 'JSON', 'title': 'JSON', 'text': 'JSON'}"
    _BLANK = "' \t\n\r\x0b\x0c'"

    def scan(self) -> str:
        return (f"(SELECT coalesce(_id, id, docid) AS raw_id, title AS raw_title, text AS raw_text FROM "
                f"read_json('{_sql_string(self.path)}', format='newline_delimited', columns={self._COLUMNS}))")

    def relation(self) -> str:
        return (f"(SELECT raw_id->>'$' AS docid, coalesce(raw_title->>'$', '') AS title, raw_text->>'$' AS text"
                f" FROM {self.scan()})")

    def check(self, con: duckdb.DuckDBPyConnection, qrels_table: str) -> bool:
        """True when the corpus is clean and knows every qrels passage id (``rows`` and
        ``digest`` are then set); False on any doubt, DuckDB's own read errors included.
        The scan runs on its own cursor, so a read error leaves the ingest transaction usable."""
        with self.path.open("rb") as head:
            if head.read(3) == b"\xef\xbb\xbf":  # DuckDB skips a byte-order mark; JSON Lines has none
                return False
        wanted = con.sql(f"SELECT DISTINCT docid FROM {qrels_table}").to_arrow_table()
        reader = con.cursor()
        try:
            reader.register("_qrels_docids", wanted)
            n, distinct, bad, upper, lower, found = reader.execute(
                f"SELECT count(*), count(DISTINCT docid), count(*) FILTER (WHERE"
                f" coalesce(json_type(raw_id), '') NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT') OR trim(docid) = ''"
                f" OR coalesce(json_type(raw_text), '') <> 'VARCHAR' OR coalesce(json_type(raw_title), 'NULL')"
                f" NOT IN ('VARCHAR', 'NULL') OR NOT regexp_matches(title || text, '{_NOT_SPACE}')),"
                f" sum((h >> 64)::HUGEINT)::VARCHAR, sum((h & {2**64 - 1}::UHUGEINT)::HUGEINT)::VARCHAR,"
                f" count(DISTINCT docid) FILTER (WHERE docid IN (SELECT docid FROM _qrels_docids))"
                f" FROM (SELECT *, md5_number(docid || chr(0) || title || chr(0) || text) AS h FROM"
                f" (SELECT *, raw_id->>'$' AS docid, coalesce(raw_title->>'$', '') AS title,"
                f" coalesce(raw_text->>'$', '') AS text FROM {self.scan()}))").fetchall()[0]
        except duckdb.Error:
            return False
        finally:
            reader.close()
        if bad or distinct != n or found != wanted.num_rows:
            return False
        self.rows, self.digest = n, (n, upper, lower)
        return True


# What Python's str.strip() removes; a passage made only of these is blank.
_NOT_SPACE = "[^\\s\\x0b\\x1c-\\x1f\\x85\\xa0\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]"


def _sql_string(path: Path) -> str:
    return str(path).replace("'", "''")


def fingerprint(name: str, domain: str, content_digest: str, skipped: list[SkippedRecord]) -> str:
    """A stable id for (name, domain, content, records left out): identical input gives the
    identical id."""
    digest = hashlib.sha256()
    digest.update(json.dumps([name, domain, content_digest]).encode())
    for record in sorted((s.reason, s.location) for s in skipped):
        digest.update(json.dumps(record, ensure_ascii=False).encode())
    return "snap-" + digest.hexdigest()[:16]


def ingest(warehouse: Warehouse, source: str | Path | SourceRef, name: str, domain: str,
           hub: bool = False, on_bad_record: OnBadRecord | None = None,
           require_queries: bool = True) -> tuple[Snapshot, bool]:
    """Read ``source`` (a path, a hub id with ``hub``, or a :class:`SourceRef`) and store it as a
    snapshot; return (snapshot, created).

    Ingesting identical content under the same name and domain returns the existing snapshot
    and writes nothing. An invalid record raises before anything is written, or with
    ``on_bad_record="skip"`` (default: the ref's, else ``fail``) is left out and recorded in
    ``snapshot_skips``. ``require_queries=False`` accepts a corpus with no queries (for
    synthesized queries).
    """
    check_name(name, "snapshot name")
    if not domain.strip():
        raise InputError("ingest: the domain must be non-empty")
    ref = source if isinstance(source, SourceRef) else SourceRef(str(source), hub=hub)
    policy = on_bad_record or ref.on_bad_record
    plan = plan_source(ref)
    stager = Stager(warehouse, plan, policy)
    try:
        with warehouse.transaction():
            stager.create_tables()
            plan.read(stager)
            stager.finish(require_queries)
            n_passages, n_queries, n_qrels = stager.counts()
            snapshot_id = fingerprint(name, domain, stager.content_digest(), stager.skipped)
            existing = find_snapshot(warehouse, snapshot_id)
            if existing is None:
                stager.write(snapshot_id)
                warehouse.con.execute(
                    "INSERT INTO snapshots (snapshot_id, name, domain, source, source_kind, n_passages,"
                    " n_queries, n_qrels) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [snapshot_id, name, domain, ref.describe(), plan.kind, n_passages, n_queries, n_qrels])
            stager.drop()
    finally:
        stager.remove_files()
    if existing is not None:
        return existing, False
    return Snapshot(snapshot_id, name, domain, ref.describe(), plan.kind, n_passages, n_queries, n_qrels,
                    len(stager.skipped)), True


def derive_snapshot(warehouse: Warehouse, base: Snapshot, name: str, queries: dict[str, str],
                    positives: dict[str, str], split: str = "synthetic") -> tuple[Snapshot, bool]:
    """A new snapshot holding ``base``'s passages, queries and qrels plus ``queries`` (qid ->
    text), each judged relevant (grade 1, qrels split ``split``) to its passage in ``positives``
    (qid -> docid). Identical input gives the identical snapshot; returns (snapshot, created)."""
    digest = hashlib.sha256(json.dumps([base.snapshot_id, split, sorted(queries.items()),
                                        sorted(positives.items())], ensure_ascii=False).encode())
    snapshot_id = fingerprint(name, base.domain, digest.hexdigest(), [])
    existing = find_snapshot(warehouse, snapshot_id)
    if existing is not None:
        return existing, False
    qids = list(queries)
    with warehouse.transaction() as con:
        for table, columns in (("passages", "docid, title, text"), ("queries", "qid, text, answers"),
                               ("qrels", "split, qid, docid, grade")):
            con.execute(f"INSERT INTO {table} SELECT ?, {columns} FROM {table} WHERE snapshot_id = ?",
                        [snapshot_id, base.snapshot_id])
        warehouse.insert_arrow("queries", pa.table({
            "snapshot_id": [snapshot_id] * len(qids), "qid": qids, "text": [queries[q] for q in qids],
            "answers": pa.array([None] * len(qids), type=pa.list_(pa.string()))}))
        warehouse.insert_arrow("qrels", pa.table({
            "snapshot_id": [snapshot_id] * len(qids), "split": [split] * len(qids), "qid": qids,
            "docid": [positives[q] for q in qids], "grade": pa.array([1] * len(qids), pa.int32())}))
        counts = con.execute("SELECT (SELECT count(*) FROM passages WHERE snapshot_id = $s),"
                             " (SELECT count(*) FROM queries WHERE snapshot_id = $s),"
                             " (SELECT count(*) FROM qrels WHERE snapshot_id = $s)", {"s": snapshot_id}).fetchall()[0]
        con.execute("INSERT INTO snapshots (snapshot_id, name, domain, source, source_kind, n_passages, n_queries,"
                    " n_qrels) VALUES (?, ?, ?, ?, 'synthetic', ?, ?, ?)",
                    [snapshot_id, name, base.domain, f"derived:{base.snapshot_id}", *counts])
    return Snapshot(snapshot_id, name, base.domain, f"derived:{base.snapshot_id}", "synthetic", *counts), True


_SNAPSHOT_COLUMNS = ("snapshot_id, name, domain, source, source_kind, n_passages, n_queries, n_qrels,"
                     " (SELECT count(*) FROM snapshot_skips k WHERE k.snapshot_id = s.snapshot_id)")


def find_snapshot(warehouse: Warehouse, snapshot_id: str) -> Snapshot | None:
    row = warehouse.fetch_one(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots s WHERE snapshot_id = ?", [snapshot_id]
    )
    return Snapshot(*row) if row else None


def latest_snapshot(warehouse: Warehouse, name: str) -> Snapshot:
    """The most recently ingested snapshot with this name."""
    row = warehouse.fetch_one(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots s WHERE name = ? ORDER BY created_at DESC LIMIT 1",
        [name],
    )
    if row is None:
        raise InputError(f"no snapshot named {name!r} in {warehouse.path}")
    return Snapshot(*row)


def list_snapshots(warehouse: Warehouse) -> list[Snapshot]:
    rows = warehouse.con.execute(f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots s ORDER BY created_at").fetchall()
    return [Snapshot(*row) for row in rows]


def skipped_records(warehouse: Warehouse, snapshot_id: str) -> list[SkippedRecord]:
    """The records ingest left out of a snapshot, in the order it met them."""
    rows = warehouse.con.execute(
        "SELECT reason, location, detail FROM snapshot_skips WHERE snapshot_id = ? ORDER BY rowid",
        [snapshot_id]).fetchall()
    return [SkippedRecord(*row) for row in rows]


def snapshot_record(warehouse: Warehouse, snapshot_id: str) -> dict:
    """What a version's manifest says about a source snapshot, records left out included."""
    snapshot = find_snapshot(warehouse, snapshot_id)
    return {"snapshot_id": snapshot_id, "name": snapshot.name, "domain": snapshot.domain, "source": snapshot.source,
            "source_kind": snapshot.source_kind, "passages": snapshot.n_passages, "queries": snapshot.n_queries,
            "qrels": snapshot.n_qrels, "skipped": skip_summary(skipped_records(warehouse, snapshot_id))}


def skip_summary(records: list[SkippedRecord], examples: int = 3) -> dict[str, dict]:
    """reason -> {count, locations: the first few} for reports."""
    counts = Counter(record.reason for record in records)
    return {reason: {"count": count,
                     "locations": [r.location for r in records if r.reason == reason][:examples]}
            for reason, count in counts.most_common()}


def load_passages(warehouse: Warehouse, snapshot_id: str) -> dict[str, tuple[str, str]]:
    """docid -> (title, text) for every passage of the snapshot."""
    rows = warehouse.con.execute(
        "SELECT docid, title, text FROM passages WHERE snapshot_id = ? ORDER BY docid", [snapshot_id]
    ).fetchall()
    return {docid: (title, text) for docid, title, text in rows}


def load_queries(warehouse: Warehouse, snapshot_id: str, qids: list[str] | None = None
                 ) -> dict[str, tuple[str, list[str] | None]]:
    """qid -> (text, reference answers or None), in qid order: of ``qids`` only, when given."""
    rows = warehouse.con.execute(
        "SELECT qid, text, answers FROM queries WHERE snapshot_id = ? "
        "AND (?::VARCHAR[] IS NULL OR qid IN (SELECT unnest(?::VARCHAR[]))) ORDER BY qid", [snapshot_id, qids, qids]
    ).fetchall()
    return {qid: (text, answers) for qid, text, answers in rows}


def load_qrels(warehouse: Warehouse, snapshot_id: str) -> dict[str, dict[str, int]]:
    """qid -> {docid: grade} over all splits (the highest grade where splits disagree)."""
    rows = warehouse.con.execute(
        "SELECT qid, docid, max(grade) FROM qrels WHERE snapshot_id = ? GROUP BY qid, docid",
        [snapshot_id],
    ).fetchall()
    qrels: dict[str, dict[str, int]] = {}
    for qid, docid, grade in rows:
        qrels.setdefault(qid, {})[docid] = grade
    return qrels
