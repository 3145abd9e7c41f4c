"""Retrieval indexes kept beside the warehouse: built once per snapshot, loaded by every build.

A snapshot never changes, so its indexes never go stale. They live in a folder next to
the warehouse file, ``<warehouse>.indexes/<snapshot_id>/<index name>/``, so any process that
can read that folder (a Dask worker on this machine included) can load one without opening
the warehouse, which DuckDB lets only one process hold. An index is built in a hidden
``.partial`` folder and renamed into place whole: a crash never leaves half an index.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

META_NAME = "index.json"  # written last: its presence marks a complete index


def index_root(warehouse_path: str | Path) -> Path:
    """The folder holding every index of a warehouse's snapshots."""
    if str(warehouse_path) == ":memory:":  # an in-memory warehouse keeps its indexes for this process only
        return Path(tempfile.gettempdir()) / f"synthrank-{os.getpid()}.indexes"
    path = Path(warehouse_path)
    return path.with_name(path.name + ".indexes")


def index_dir(warehouse_path: str | Path, snapshot_id: str, name: str) -> Path:
    """Where the index ``name`` of a snapshot lives (``name`` says every setting it depends on)."""
    return index_root(warehouse_path) / snapshot_id / name


def read_meta(folder: Path) -> dict | None:
    """The metadata of a complete index, or None when there is none (or only a partial one)."""
    try:
        return json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextmanager
def building(folder: Path, meta: dict) -> Iterator[Path]:
    """Yield a fresh ``.partial`` folder to write an index into; when the block succeeds,
    write ``meta`` into it and move it onto ``folder`` (replacing any older index)."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        (partial / META_NAME).write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
