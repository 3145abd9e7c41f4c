"""Dataset versions: staged while a build runs, published in one transaction, then frozen.

A version is ``building`` while its rows are staged, ``published`` once
:func:`publish_version` commits, or ``failed``. Only a building version takes rows; a
published one is never changed by these functions, and its manifest carries a fingerprint
of its rows that :func:`verify_version` checks before anything is exported from it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from warehouse.db import Warehouse
from warehouse.errors import InputError

# Row fields that say how a row was made; stored apart from the row's data.
LINEAGE_FIELDS = ("snapshot_id", "teacher_model", "teacher_backend", "prompt_name",
                  "prompt_version", "sampling", "call_keys", "filter_verdicts", "positives_lineage",
                  "human_labels")

_ROW_TABLES = ("dataset_rows", "rejections")
_CALL_COLUMNS = ("call_key", "model", "backend", "sample_index", "request", "status", "content",
                 "reasoning", "finish_reason", "prompt_tokens", "completion_tokens", "error",
                 "attempts", "latency_ms", "created_at")


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    """Package version, plus the git commit (and ``.dirty`` for local changes) in a checkout."""
    try:
        version = metadata.version("synthrank")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return version
    dirty = ".dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{version}+g{commit}{dirty}"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# The packages whose code turns stored inputs and answers into rows.
_CODE_PACKAGES = ("flows", "generators", "filters", "prompts", "warehouse")


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the paths and contents of synthrank's own source files: any change to
    the code, committed or not, changes it (``code_version`` only says ``.dirty``)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in _CODE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def begin_version(warehouse: Warehouse, dataset: str, spec: dict, snapshot_ids: list[str]) -> int:
    """Open a staging version and return its number.

    A staging version left by an interrupted build is marked failed and its rows dropped:
    rows are derived from stored teacher calls, so nothing paid for is lost.
    """
    with warehouse.transaction() as con:
        stale = [v for (v,) in con.execute(
            "SELECT version FROM dataset_versions WHERE dataset = ? AND status = 'building'",
            [dataset]).fetchall()]
        for version in stale:
            _drop_rows(warehouse, dataset, version)
            con.execute("UPDATE dataset_versions SET status = 'failed', manifest = ? "
                        "WHERE dataset = ? AND version = ?",
                        [json.dumps({"error": "interrupted: the build stopped before publishing"}),
                         dataset, version])
        latest = warehouse.fetch_one("SELECT max(version) FROM dataset_versions WHERE dataset = ?",
                                     [dataset])[0]
        parent = warehouse.fetch_one(
            "SELECT max(version) FROM dataset_versions WHERE dataset = ? AND status = 'published'",
            [dataset])[0]
        version = (latest or 0) + 1
        con.execute(
            "INSERT INTO dataset_versions (dataset, version, parent_version, status, spec, spec_hash,"
            " code_version, snapshot_ids, manifest) VALUES (?, ?, ?, 'building', ?, ?, ?, ?, '{}')",
            [dataset, version, parent, json.dumps(spec), spec_hash(spec), code_version(), snapshot_ids])
    return version


def _drop_rows(warehouse: Warehouse, dataset: str, version: int) -> None:
    for table in _ROW_TABLES:
        warehouse.con.execute(f"DELETE FROM {table} WHERE dataset = ? AND version = ?", [dataset, version])


def _jsonable(value: object) -> object:
    """JSON for values rows may carry besides plain types (e.g. a filter's Verdict)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"row value of type {type(value).__name__} cannot be stored: {value!r}")


# What json.dumps(value, ensure_ascii=False, default=_jsonable) builds on every call, made once.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_jsonable)
_LINEAGE = frozenset(LINEAGE_FIELDS)


def _dumps(value: dict) -> str:
    return _ENCODER.encode(value)


def _split_row(row: dict) -> tuple[dict, dict]:
    data = {k: v for k, v in row.items() if k not in _LINEAGE}
    lineage = {k: row[k] for k in LINEAGE_FIELDS if k in row}
    return data, lineage


def add_rows(warehouse: Warehouse, dataset: str, version: int, kind: str, rows: list[dict]) -> None:
    """Stage accepted rows (each needs ``row_id``, ``qid``, ``domain``).

    Raises InputError when the version is not building: a published version never changes.
    """
    _assert_staging(warehouse, dataset, version)
    row_ids, qids, domains, datas, lineages = [], [], [], [], []
    encode = _ENCODER.encode
    for row in rows:  # one pass: ids, then data and lineage serialised as soon as split
        row_ids.append(row["row_id"])
        qids.append(row["qid"])
        domains.append(row["domain"])
        data, lineage = _split_row(row)
        datas.append(encode(data))
        lineages.append(encode(lineage))
    warehouse.insert_arrow("dataset_rows", pa.table({
        "dataset": [dataset] * len(rows),
        "version": pa.array([version] * len(rows), pa.int32()),
        "kind": [kind] * len(rows),
        "row_id": row_ids,
        "qid": qids,
        "domain": domains,
        "data": datas,
        "lineage": lineages,
    }))


def copy_rows(warehouse: Warehouse, dataset: str, source: int, target: int) -> None:
    """Stage every accepted row and rejection of version ``source``, unchanged, in the
    building version ``target`` (a rebuild whose inputs, code and answers are ``source``'s)."""
    _assert_staging(warehouse, dataset, target)
    with warehouse.transaction() as con:
        for table in _ROW_TABLES:
            con.execute(f"INSERT INTO {table} SELECT * REPLACE (?::INTEGER AS version) FROM {table} "
                        "WHERE dataset = ? AND version = ?", [target, dataset, source])


def add_rejections(warehouse: Warehouse, dataset: str, version: int, kind: str,
                   rejections: list[tuple[dict, str, str, float | None]]) -> None:
    """Stage rejected rows as (row, stage, reason, score).

    The rejecting verdict is added to the row's ``filter_verdicts`` lineage under ``stage``.
    """
    _assert_staging(warehouse, dataset, version)
    split = []
    for row, stage, reason, score in rejections:
        data, lineage = _split_row(row)
        verdicts = {**(lineage.get("filter_verdicts") or {}),
                    stage: {"keep": False, "reason": reason, "score": score}}
        split.append((data, {**lineage, "filter_verdicts": verdicts}))
    warehouse.insert_arrow("rejections", pa.table({
        "dataset": [dataset] * len(rejections),
        "version": pa.array([version] * len(rejections), pa.int32()),
        "kind": [kind] * len(rejections),
        "row_id": [row["row_id"] for row, *_ in rejections],
        "stage": [stage for _, stage, _, _ in rejections],
        "reason": [reason for _, _, reason, _ in rejections],
        "score": pa.array([score for *_, score in rejections], pa.float64()),
        "data": [_dumps(data) for data, _ in split],
        "lineage": [_dumps(lineage) for _, lineage in split],
    }))


def _assert_staging(warehouse: Warehouse, dataset: str, version: int) -> None:
    status = _status(warehouse, dataset, version)
    if status != "building":
        raise InputError(f"{dataset}@{version} is {status or 'missing'}; only a building version "
                         "takes rows or changes (a published version never changes)")


def _status(warehouse: Warehouse, dataset: str, version: int) -> str | None:
    row = warehouse.fetch_one("SELECT status FROM dataset_versions WHERE dataset = ? AND version = ?",
                              [dataset, version])
    return row[0] if row else None


def publish_version(warehouse: Warehouse, dataset: str, version: int, manifest: dict) -> None:
    """Make a staging version visible, with its manifest, in one transaction.

    The manifest's ``counts``, ``rejections``, ``content`` (row fingerprints per kind) and
    ``tokens`` (of the teacher calls behind the rows) are computed here, from the staged
    rows, inside the transaction, so they always describe exactly what was published (a
    kind the given manifest counts but that has no rows stays in ``counts`` with 0).
    """
    with warehouse.transaction() as con:
        _assert_staging(warehouse, dataset, version)
        facts = _row_facts(warehouse, dataset, version)
        facts["counts"] = {**{kind: 0 for kind in manifest.get("counts", {})}, **facts["counts"]}
        con.execute(
            "UPDATE dataset_versions SET status = 'published', manifest = ?, published_at = now() "
            "WHERE dataset = ? AND version = ?", [json.dumps({**manifest, **facts}), dataset, version])


def _row_facts(warehouse: Warehouse, dataset: str, version: int) -> dict:
    """Counts, rejections, fingerprints and tokens of a version, from its rows."""
    key = [dataset, version]
    counts = dict(warehouse.con.execute(
        "SELECT kind, count(*) FROM dataset_rows WHERE dataset = ? AND version = ? GROUP BY kind "
        "ORDER BY kind", key).fetchall())
    rejections = dict(warehouse.con.execute(
        "SELECT kind || '/' || stage || ':' || reason, count(*) FROM rejections "
        "WHERE dataset = ? AND version = ? GROUP BY 1 ORDER BY 1", key).fetchall())
    calls, prompt, completion = warehouse.fetch_one(
        "WITH keys AS (SELECT DISTINCT unnest(json_extract_string(lineage, '$.call_keys[*]')) AS k "
        "FROM (SELECT lineage FROM dataset_rows WHERE dataset = ? AND version = ? "
        "UNION ALL SELECT lineage FROM rejections WHERE dataset = ? AND version = ?)) "
        "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
        "FROM teacher_calls JOIN keys ON call_key = k", key + key)
    return {"counts": counts, "rejections": rejections, "content": _fingerprints(warehouse, dataset, version),
            "tokens": {"calls": calls, "prompt": int(prompt), "completion": int(completion)}}


def _fingerprints(warehouse: Warehouse, dataset: str, version: int) -> dict[str, str]:
    """kind -> md5 over the kind's rows (id, data, lineage) in row_id order."""
    return dict(warehouse.con.execute(
        "SELECT kind, md5(string_agg(md5(row_id || chr(31) || data::VARCHAR || chr(31) || "
        "lineage::VARCHAR), '' ORDER BY row_id)) FROM dataset_rows WHERE dataset = ? AND version = ? "
        "GROUP BY kind ORDER BY kind", [dataset, version]).fetchall())


def verify_version(warehouse: Warehouse, dataset: str, version: int) -> None:
    """Raise InputError unless a published version's rows still match its manifest."""
    manifest = version_info(warehouse, dataset, version)["manifest"]
    if "content" not in manifest:  # published before fingerprints were recorded
        return
    if _fingerprints(warehouse, dataset, version) != manifest["content"]:
        raise InputError(f"{dataset}@{version}: its rows no longer match the fingerprints recorded "
                         f"when it was published; the warehouse {warehouse.path} was changed outside "
                         "synthrank. Rebuild instead of exporting it.")


def fail_version(warehouse: Warehouse, dataset: str, version: int, error: str) -> None:
    """Mark a staging version failed and drop its rows; a published version is left as it is."""
    with warehouse.transaction() as con:
        if _status(warehouse, dataset, version) != "building":
            return
        _drop_rows(warehouse, dataset, version)
        con.execute("UPDATE dataset_versions SET status = 'failed', manifest = ? "
                    "WHERE dataset = ? AND version = ?", [json.dumps({"error": error}), dataset, version])


def discard_version(warehouse: Warehouse, dataset: str, version: int) -> None:
    """Remove a staging version and its rows entirely (a scheduled run that changed nothing)."""
    with warehouse.transaction() as con:
        _assert_staging(warehouse, dataset, version)
        _drop_rows(warehouse, dataset, version)
        con.execute("DELETE FROM dataset_versions WHERE dataset = ? AND version = ?", [dataset, version])


def same_rows(warehouse: Warehouse, dataset: str, staged: int, published: dict) -> bool:
    """Whether a staging version holds exactly the accepted rows and rejections of a published
    one (``published`` as :func:`version_info` returns it)."""
    facts = _row_facts(warehouse, dataset, staged)
    manifest = published["manifest"]
    return (facts["content"], facts["rejections"]) == (manifest.get("content"), manifest.get("rejections"))


def failed_calls(manifest: dict) -> int:
    """Teacher calls that failed in the build that made a version; a version with any is
    incomplete (its teacher_failed rows are missing), and the next scheduled run retries them."""
    return sum(teacher.get("calls_failed", 0) for teacher in manifest.get("teachers", []))


def version_status(version: dict) -> str:
    """A version's status as users read it: ``published, incomplete`` when calls failed."""
    if version["status"] == "published" and failed_calls(version["manifest"]):
        return "published, incomplete"
    return version["status"]


_VERSION_COLUMNS = ("dataset", "version", "parent_version", "status", "spec_hash", "code_version",
                    "snapshot_ids", "manifest", "created_at", "published_at")


def list_versions(warehouse: Warehouse, dataset: str | None = None) -> list[dict]:
    rows = warehouse.con.execute(
        f"SELECT {', '.join(_VERSION_COLUMNS)} FROM dataset_versions WHERE ? IS NULL OR dataset = ? "
        "ORDER BY dataset, version", [dataset, dataset]).fetchall()
    return [_version_dict(row) for row in rows]


def version_info(warehouse: Warehouse, dataset: str, version: int) -> dict:
    """One version's record (manifest parsed, spec included)."""
    row = warehouse.fetch_one(f"SELECT {', '.join(_VERSION_COLUMNS)}, spec FROM dataset_versions "
                              "WHERE dataset = ? AND version = ?", [dataset, version])
    if row is None:
        raise InputError(f"{dataset}@{version} is not a version in {warehouse.path}")
    return {**_version_dict(row[:-1]), "spec": json.loads(row[-1])}


def _version_dict(row: tuple) -> dict:
    version = dict(zip(_VERSION_COLUMNS, row))
    version["manifest"] = json.loads(version["manifest"])
    return version


def latest_published(warehouse: Warehouse, dataset: str) -> dict | None:
    """The record of the dataset's latest published version (:func:`version_info`), if any."""
    row = warehouse.fetch_one(
        "SELECT max(version) FROM dataset_versions WHERE dataset = ? AND status = 'published'", [dataset])
    return None if row[0] is None else version_info(warehouse, dataset, row[0])


def resolve_version(warehouse: Warehouse, dataset: str, version: int | None = None) -> int:
    """``version`` if it is published, else the latest published version; errors name the dataset."""
    if version is None:
        row = warehouse.fetch_one(
            "SELECT max(version) FROM dataset_versions WHERE dataset = ? AND status = 'published'",
            [dataset])
        if row[0] is None:
            raise InputError(f"dataset {dataset!r} has no published version in {warehouse.path}")
        return row[0]
    status = _status(warehouse, dataset, version)
    if status != "published":
        raise InputError(f"{dataset}@{version} is {status or 'not a version'}, not published")
    return version


def load_rows(warehouse: Warehouse, dataset: str, version: int, kind: str) -> list[dict]:
    """The rows of one kind in a version, data and lineage merged, ordered by row_id."""
    rows = warehouse.con.execute(
        "SELECT data, lineage FROM dataset_rows WHERE dataset = ? AND version = ? AND kind = ? "
        "ORDER BY row_id", [dataset, version, kind]).fetchall()
    return [{**json.loads(data), **json.loads(lineage)} for data, lineage in rows]


# Rows a read of ``row_batches`` fetches at once, in batches: each read scans the version's
# rows (row ids are hashes, so a range of them is spread over the table), so fewer, larger
# reads cost less; this many rows of listwise JSON are ~300 MB at most.
ROWS_PER_READ = 10_000


def row_batches(warehouse: Warehouse, dataset: str, version: int, kind: str, batch_rows: int = 1000,
                lineage_only: bool = False) -> Iterator[list[dict]]:
    """The rows of ``load_rows`` in batches of exactly ``batch_rows`` (the last one fewer),
    read as they are used: the whole kind is never in memory at once, in Python or in DuckDB
    (the row ids are sorted first, then ``ROWS_PER_READ`` rows at a time are read by their
    id range; sorting whole rows would hold them all). With ``lineage_only`` the rows hold
    only their lineage fields."""
    key = [dataset, version, kind]
    row_ids = [row_id for (row_id,) in warehouse.con.execute(
        "SELECT row_id FROM dataset_rows WHERE dataset = ? AND version = ? AND kind = ? ORDER BY row_id",
        key).fetchall()]
    columns = "lineage" if lineage_only else "data, lineage"
    per_read = max(ROWS_PER_READ // batch_rows, 1) * batch_rows
    for start in range(0, len(row_ids), per_read):
        first, last = row_ids[start], row_ids[min(start + per_read, len(row_ids)) - 1]
        found = warehouse.con.execute(
            f"SELECT {columns} FROM dataset_rows WHERE dataset = ? AND version = ? AND kind = ? "
            "AND row_id BETWEEN ? AND ? ORDER BY row_id", [*key, first, last]).fetchall()
        for batch in range(0, len(found), batch_rows):
            yield [{k: v for part in parts for k, v in json.loads(part).items()}
                   for parts in found[batch:batch + batch_rows]]
        del found


def row_record(warehouse: Warehouse, dataset: str, version: int, row_id: str) -> list[dict]:
    """Everything about one row id (or unique prefix) of a version, in every kind it appears:
    ``kind``, ``row_id``, ``status`` (accepted | rejected), ``rejections`` [(stage, reason,
    score)], ``data``, ``lineage``, and ``calls``: the stored teacher calls named by its
    ``call_keys`` (request messages, reasoning, answer, tokens)."""
    found = warehouse.con.execute(
        "SELECT kind, row_id, 'accepted', NULL, NULL, NULL, data, lineage FROM dataset_rows "
        "WHERE dataset = ? AND version = ? AND starts_with(row_id, ?) "
        "UNION ALL SELECT kind, row_id, 'rejected', stage, reason, score, data, lineage FROM rejections "
        "WHERE dataset = ? AND version = ? AND starts_with(row_id, ?) ORDER BY 1, 2, 4",
        [dataset, version, row_id] * 2).fetchall()
    ids = {r[1] for r in found}
    if row_id in ids:
        found = [r for r in found if r[1] == row_id]
    elif len(ids) > 1:
        raise InputError(f"row id prefix {row_id!r} matches {len(ids)} rows of {dataset}@{version}, "
                         f"e.g. {sorted(ids)[:3]}; give more of it")
    records: dict[tuple[str, str], dict] = {}
    for kind, rid, status, stage, reason, score, data, lineage in found:
        record = records.setdefault((kind, rid), {
            "kind": kind, "row_id": rid, "status": status, "rejections": [],
            "data": json.loads(data), "lineage": json.loads(lineage)})
        if stage is not None:
            record["rejections"].append((stage, reason, score))
    for record in records.values():
        record["calls"] = stored_calls(warehouse, record["lineage"].get("call_keys") or [])
    return list(records.values())


def stored_calls(warehouse: Warehouse, keys: list[str]) -> list[dict]:
    """The teacher_calls records of ``keys``, in that order, request parsed (missing keys skipped)."""
    if not keys:
        return []
    rows = warehouse.con.execute(
        f"SELECT {', '.join(_CALL_COLUMNS)} FROM teacher_calls WHERE call_key IN (SELECT unnest(?))",
        [list(keys)]).fetchall()
    by_key = {row[0]: {**dict(zip(_CALL_COLUMNS, row)), "request": json.loads(row[4])} for row in rows}
    return [by_key[key] for key in keys if key in by_key]
