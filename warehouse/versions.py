"""Dataset versions: staged while a build runs, published in one transaction, then frozen."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import pyarrow as pa

from warehouse.db import Warehouse
from warehouse.errors import InputError

# Row fields that say how a row was made; stored apart from the row's data.
LINEAGE_FIELDS = ("snapshot_id", "teacher_model", "teacher_backend", "prompt_name",
                  "prompt_version", "sampling", "call_keys", "filter_verdicts")


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout."""
    try:
        version = metadata.version("synthrank")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


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
            con.execute("UPDATE dataset_versions SET status = 'failed' WHERE dataset = ? AND version = ?",
                        [dataset, version])
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
    for table in ("dataset_rows", "rejections"):
        warehouse.con.execute(f"DELETE FROM {table} WHERE dataset = ? AND version = ?", [dataset, version])


def _split_row(row: dict) -> tuple[dict, dict]:
    data = {k: v for k, v in row.items() if k not in LINEAGE_FIELDS}
    lineage = {k: row[k] for k in LINEAGE_FIELDS if k in row}
    return data, lineage


def add_rows(warehouse: Warehouse, dataset: str, version: int, kind: str, rows: list[dict]) -> None:
    """Stage accepted rows (each needs ``row_id``, ``qid``, ``domain``)."""
    _assert_staging(warehouse, dataset, version)
    split = [_split_row(row) for row in rows]
    warehouse.insert_arrow("dataset_rows", pa.table({
        "dataset": [dataset] * len(rows),
        "version": pa.array([version] * len(rows), pa.int32()),
        "kind": [kind] * len(rows),
        "row_id": [row["row_id"] for row in rows],
        "qid": [row["qid"] for row in rows],
        "domain": [row["domain"] for row in rows],
        "data": [json.dumps(data, ensure_ascii=False) for data, _ in split],
        "lineage": [json.dumps(lineage, ensure_ascii=False) for _, lineage in split],
    }))


def add_rejections(warehouse: Warehouse, dataset: str, version: int, kind: str,
                   rejections: list[tuple[dict, str, str, float | None]]) -> None:
    """Stage rejected rows as (row, stage, reason, score)."""
    _assert_staging(warehouse, dataset, version)
    split = [_split_row(row) for row, *_ in rejections]
    warehouse.insert_arrow("rejections", pa.table({
        "dataset": [dataset] * len(rejections),
        "version": pa.array([version] * len(rejections), pa.int32()),
        "kind": [kind] * len(rejections),
        "row_id": [row["row_id"] for row, *_ in rejections],
        "stage": [stage for _, stage, _, _ in rejections],
        "reason": [reason for _, _, reason, _ in rejections],
        "score": pa.array([score for *_, score in rejections], pa.float64()),
        "data": [json.dumps(data, ensure_ascii=False) for data, _ in split],
        "lineage": [json.dumps(lineage, ensure_ascii=False) for _, lineage in split],
    }))


def _assert_staging(warehouse: Warehouse, dataset: str, version: int) -> None:
    status = _status(warehouse, dataset, version)
    if status != "building":
        raise InputError(f"{dataset}@{version} is {status or 'missing'}; only a building version takes rows")


def _status(warehouse: Warehouse, dataset: str, version: int) -> str | None:
    row = warehouse.fetch_one("SELECT status FROM dataset_versions WHERE dataset = ? AND version = ?",
                                [dataset, version])
    return row[0] if row else None


def publish_version(warehouse: Warehouse, dataset: str, version: int, manifest: dict) -> None:
    """Make a staging version visible, with its manifest, in one transaction."""
    with warehouse.transaction() as con:
        _assert_staging(warehouse, dataset, version)
        con.execute(
            "UPDATE dataset_versions SET status = 'published', manifest = ?, published_at = now() "
            "WHERE dataset = ? AND version = ?", [json.dumps(manifest), dataset, version])


def fail_version(warehouse: Warehouse, dataset: str, version: int, error: str) -> None:
    """Mark a staging version failed and drop its rows; published data is untouched."""
    with warehouse.transaction() as con:
        _drop_rows(warehouse, dataset, version)
        con.execute("UPDATE dataset_versions SET status = 'failed', manifest = ? "
                    "WHERE dataset = ? AND version = ? AND status = 'building'",
                    [json.dumps({"error": error}), dataset, version])


def list_versions(warehouse: Warehouse, dataset: str | None = None) -> list[dict]:
    rows = warehouse.con.execute(
        "SELECT dataset, version, parent_version, status, spec_hash, code_version, manifest, "
        "created_at, published_at FROM dataset_versions WHERE ? IS NULL OR dataset = ? "
        "ORDER BY dataset, version", [dataset, dataset]).fetchall()
    names = ("dataset", "version", "parent_version", "status", "spec_hash", "code_version",
             "manifest", "created_at", "published_at")
    versions = [dict(zip(names, row)) for row in rows]
    for version in versions:
        version["manifest"] = json.loads(version["manifest"])
    return versions


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


def rejection_counts(warehouse: Warehouse, dataset: str, version: int) -> dict[str, int]:
    """'stage:reason' -> number of rejected rows."""
    rows = warehouse.con.execute(
        "SELECT stage || ':' || reason, count(*) FROM rejections WHERE dataset = ? AND version = ? "
        "GROUP BY 1 ORDER BY 1", [dataset, version]).fetchall()
    return dict(rows)
