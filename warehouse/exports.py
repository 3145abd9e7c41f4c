"""Exports of a published version to the files trainers load (formats in ``warehouse/formats``)."""

from __future__ import annotations

from pathlib import Path

from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.formats import EXPORTERS
from warehouse.versions import load_rows, resolve_version


def export_version(warehouse: Warehouse, dataset: str, version: int | None, kind: str, fmt: str,
                   out_dir: Path) -> list[Path]:
    """Write one kind of a published version in one format into ``out_dir``."""
    if (kind, fmt) not in EXPORTERS:
        known = sorted(f"{k}/{f}" for k, f in EXPORTERS)
        raise InputError(f"no export format {fmt!r} for kind {kind!r} (known: {known})")
    version = resolve_version(warehouse, dataset, version)
    rows = load_rows(warehouse, dataset, version, kind)
    return EXPORTERS[(kind, fmt)](rows, Path(out_dir), kind)
