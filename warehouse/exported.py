"""Published versions read back from their exports: a folder of Parquet that DuckDB reads.

This is what readers use while a build holds the warehouse file (DuckDB lets no other
process open it meanwhile), and the scale path: the export root may be a local folder or,
through DuckDB's ``httpfs`` extension (installed at run time; needs a network), an object
store URL such as ``s3://bucket/out``. Layout (written by ``exports.publish_exports``)::

    ROOT/DATASET/versions.json
    ROOT/DATASET/vN/manifest.json, ROOT/DATASET/vN/<kind>.parquet

:func:`open_published` gives one reader interface over either source: ``list_versions``,
``resolve_version``, ``kinds``, ``load_rows`` and ``rejected``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from warehouse import versions
from warehouse.db import Warehouse
from warehouse.errors import InputError, SynthrankError, WarehouseLocked
from warehouse.exports import INDEX_NAME, MANIFEST_NAME, verify_export

_REMOTE = ("s3://", "s3a://", "gs://", "gcs://", "r2://", "http://", "https://", "hf://", "az://", "abfss://")


class WarehouseVersions:
    """The reader interface over the warehouse file itself."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.where = str(warehouse.path)

    def list_versions(self, dataset: str | None = None) -> list[dict]:
        return versions.list_versions(self.warehouse, dataset)

    def resolve_version(self, dataset: str, version: int | None = None) -> int:
        return versions.resolve_version(self.warehouse, dataset, version)

    def kinds(self, dataset: str, version: int) -> list[str]:
        manifest = versions.version_info(self.warehouse, dataset, version)["manifest"]
        return sorted(manifest.get("counts", {}))

    def load_rows(self, dataset: str, version: int, kind: str) -> list[dict]:
        return versions.load_rows(self.warehouse, dataset, version, kind)

    def rejected(self, dataset: str, version: int, kind: str) -> dict[str, list[str]]:
        """row_id -> ['stage:reason', ...] of the rows a version rejected."""
        rows = self.warehouse.con.execute(
            "SELECT row_id, stage || ':' || reason FROM rejections WHERE dataset = ? AND version = ? "
            "AND kind = ? ORDER BY row_id, stage", [dataset, version, kind]).fetchall()
        found: dict[str, list[str]] = {}
        for row_id, reason in rows:
            found.setdefault(row_id, []).append(reason)
        return found


class ExportedVersions:
    """The reader interface over an export root (local folder or object-store URL).

    Only what the exports hold is there: published versions, their manifests and accepted
    rows; rejected rows and teacher calls stay in the warehouse.
    """

    def __init__(self, root: str | Path):
        self.root = str(root).rstrip("/")
        self.where = f"exports at {self.root}"
        self.con = duckdb.connect()
        self.note = None
        if self.root.startswith(_REMOTE):
            _load_httpfs(self.con, self.root)
            self.note = f"files read from {self.root} are not checked against the sha256 in their manifests"
        elif not Path(self.root).is_dir():
            raise InputError(f"{self.root}: no export folder here")

    def list_versions(self, dataset: str | None = None) -> list[dict]:
        found = []
        for index in self._indexes(dataset):
            for entry in index["versions"]:
                found.append({"dataset": index["dataset"], "status": "published", **entry})
        return sorted(found, key=lambda v: (v["dataset"], v["version"]))

    def _indexes(self, dataset: str | None) -> list[dict]:
        pattern = f"{self.root}/{dataset or '*'}/{INDEX_NAME}"
        rows = self.con.execute("SELECT content FROM read_text(?) ORDER BY filename", [pattern]).fetchall() \
            if self._exists(pattern) else []
        return [json.loads(content) for (content,) in rows]

    def _exists(self, pattern: str) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM glob(?)", [pattern]).fetchall()[0][0])

    def resolve_version(self, dataset: str, version: int | None = None) -> int:
        published = [v["version"] for v in self.list_versions(dataset)]
        if not published:
            raise InputError(f"dataset {dataset!r} has no published version in the {self.where}")
        if version is None:
            return max(published)
        if version not in published:
            raise InputError(f"{dataset}@{version} is not a published version in the {self.where} "
                             f"(published: {published})")
        return version

    def manifest(self, dataset: str, version: int) -> dict:
        path = f"{self.root}/{dataset}/v{version}/{MANIFEST_NAME}"
        rows = self.con.execute("SELECT content FROM read_text(?)", [path]).fetchall()
        return json.loads(rows[0][0])

    def kinds(self, dataset: str, version: int) -> list[str]:
        return sorted({e["kind"] for e in self.manifest(dataset, version)["exports"] if e["format"] == "parquet"})

    def load_rows(self, dataset: str, version: int, kind: str) -> list[dict]:
        """The kind's rows from ``vN/<kind>.parquet`` (read by DuckDB), ordered by row_id."""
        files = [name for e in self.manifest(dataset, version)["exports"]
                 if (e["kind"], e["format"]) == (kind, "parquet") for name in e["files"]]
        if not files:
            return []
        self._verify(dataset, version, files)
        result = self.con.execute("SELECT * FROM read_parquet(?) ORDER BY row_id",
                                  [[f"{self.root}/{dataset}/v{version}/{name}" for name in files]])
        names = [column[0] for column in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]

    def rejected(self, dataset: str, version: int, kind: str) -> dict[str, list[str]]:
        return {}

    def _verify(self, dataset: str, version: int, names: list[str]) -> None:
        """Local files must match the sha256 their manifest records (remote ones: see ``note``)."""
        if self.note is not None:
            return
        folder = Path(self.root) / dataset / f"v{version}"
        problems = verify_export(folder, names)
        if problems:
            raise InputError(f"{folder}: {'; '.join(problems)}: the export changed after it was written; "
                             "export the version again, or read the warehouse")


def _load_httpfs(con: duckdb.DuckDBPyConnection, root: str) -> None:
    try:
        con.execute("INSTALL httpfs")
        con.execute("LOAD httpfs")
    except duckdb.Error as exc:
        raise SynthrankError(f"{root}: reading an object store needs DuckDB's httpfs extension, "
                             f"installed at run time, which needs a network ({exc})") from None


@contextmanager
def open_published(warehouse_path: str | Path, exports_root: str | Path | None = None
                   ) -> Iterator[tuple[WarehouseVersions | ExportedVersions, str | None]]:
    """A reader of published versions and a note for the user (None when reading the warehouse).

    With ``exports_root`` given, read the exports there. Otherwise read the warehouse file;
    when a build holds it, fall back to the exports beside it (the default layout puts the
    warehouse in the build's output folder), or raise a WarehouseLocked that says why not.
    """
    if exports_root is not None:
        store = ExportedVersions(exports_root)
        yield store, store.note
        return
    try:
        warehouse = Warehouse.open(warehouse_path, read_only=True)
    except WarehouseLocked as exc:
        root = Path(warehouse_path).parent
        if not list(root.glob(f"*/{INDEX_NAME}")):
            raise WarehouseLocked(f"{warehouse_path} is being written by {exc.holder}, and no exports "
                                  f"were found beside it ({root}/*/{INDEX_NAME}) to read the last published "
                                  "state from; pass --from-exports OUT, or wait for the build to end",
                                  exc.holder) from None
        yield ExportedVersions(root), (f"{warehouse_path} is being written by {exc.holder}; showing the "
                                       f"last published state from the exports in {root}")
        return
    with warehouse:
        yield WarehouseVersions(warehouse), None
