"""The record of build runs, and the fingerprint that tells whether a build's inputs changed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from warehouse.db import Warehouse
from warehouse.versions import code_fingerprint


def inputs_fingerprint(snapshot_ids: list[str], spec_hash: str, prompt_versions: dict[str, str]) -> str:
    """What a build's output depends on: source snapshots, the spec, the prompt versions."""
    payload = json.dumps([sorted(snapshot_ids), spec_hash, sorted(prompt_versions.items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def record_run(warehouse: Warehouse, dataset: str, started_at: datetime, outcome: str,
               version: int | None, inputs: str, detail: str = "") -> None:
    """Record a build run's outcome, with the fingerprint of the code that ran it."""
    warehouse.con.execute(
        "INSERT INTO build_runs (dataset, started_at, outcome, version, inputs, detail, code) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", [dataset, started_at, outcome, version, inputs, detail, code_fingerprint()])


def rebuilt_unchanged(warehouse: Warehouse, dataset: str, version: int, inputs: str) -> bool:
    """Whether this code already rebuilt ``dataset@version`` from ``inputs`` and changed no row."""
    return warehouse.fetch_one(
        "SELECT count(*) FROM build_runs WHERE dataset = ? AND version = ? AND inputs = ? AND code = ? "
        "AND outcome = 'unchanged'", [dataset, version, inputs, code_fingerprint()])[0] > 0


def list_runs(warehouse: Warehouse, dataset: str | None = None) -> list[dict]:
    rows = warehouse.con.execute(
        "SELECT dataset, started_at, finished_at, outcome, version, inputs, detail FROM build_runs "
        "WHERE ? IS NULL OR dataset = ? ORDER BY started_at", [dataset, dataset]).fetchall()
    names = ("dataset", "started_at", "finished_at", "outcome", "version", "inputs", "detail")
    return [dict(zip(names, row)) for row in rows]
