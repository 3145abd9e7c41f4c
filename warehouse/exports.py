"""Exports of a published version: the files trainers load, each folder with a manifest.

Every export folder holds ``manifest.json``: dataset, version, formats, row counts, the
sha256 of every file, the version's build manifest and a lineage summary per kind. The
same version exported twice gives identical bytes, manifest included. A build publishes

    OUT/DATASET/versions.json      the published versions (readers use it while a build runs)
    OUT/DATASET/vN/manifest.json   and vN/<kind>.parquet for every kind

Formats live in ``warehouse/formats`` (see its registry).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterable

from warehouse.audit import load_passage_texts
from warehouse.cards import write_card
from warehouse.db import Warehouse
from warehouse.errors import InputError, SynthrankError
from warehouse.formats import Written, find_exporter, known_formats
from warehouse.formats.registry import is_plain_parquet, write_parquet_batches
from warehouse.names import check_folder, check_name
from warehouse.testhooks import kill_point
from warehouse.tokens import EMBEDDED, prompt_token_stats
from warehouse.versions import (list_versions, load_rows, resolve_version, row_batches, verify_version,
                                version_info)

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "versions.json"
LLAMAFACTORY_INFO = "dataset_info.json"


def export_version(warehouse: Warehouse, dataset: str, version: int | None, kind: str, fmt: str,
                   out_dir: Path, options: dict | None = None, tokenizer: str = EMBEDDED,
                   audit_headline: list[dict] | None = None) -> list[Path]:
    """Write one kind of a published version in one format into ``out_dir`` and record it in
    ``out_dir/manifest.json`` (a folder holds exports of one version only), then rewrite the
    folder's ``README.md`` dataset card (and ``dataset_info.json`` for LLaMA-Factory).

    ``options`` are the format's own (see its ``options``; defaults come from the build
    spec's section of the kind where it has a field of that name). Prompt token lengths are
    counted with ``tokenizer`` (see ``warehouse.tokens``). ``audit_headline`` rows, when
    given, go into the card. The version's rows are checked against the fingerprints
    recorded at publish time first.
    """
    version = resolve_version(warehouse, dataset, version)
    info = version_info(warehouse, dataset, version)
    kinds = sorted(info["manifest"].get("counts", {}))
    if kind not in kinds:
        raise InputError(f"{dataset}@{version} has no kind {kind!r} (its kinds: {', '.join(kinds) or 'none'})")
    export = find_exporter(kind, fmt)
    if export is None:
        raise InputError(f"no export format {fmt!r} for kind {kind!r} (known: {', '.join(known_formats(kind))})")
    out_dir = Path(out_dir)
    check_folder(out_dir, "export folder")
    verify_version(warehouse, dataset, version)
    settings = format_options(export, kind, fmt, options or {}, info["spec"])
    manifest = _folder_manifest(out_dir, info)
    if is_plain_parquet(export):  # every field, so it streams: one batch of rows in memory at a time
        batches = lambda: row_batches(warehouse, dataset, version, kind)  # noqa: E731
        paths, report = [write_parquet_batches(batches, out_dir / f"{kind}.parquet", kind)], {}
        summary = lineage_summary(row for rows in row_batches(warehouse, dataset, version, kind, lineage_only=True)
                                  for row in rows)
    else:
        rows = load_rows(warehouse, dataset, version, kind)
        paths, report = _written(export, rows, warehouse, out_dir, kind, fmt, settings, tokenizer)
        summary = lineage_summary(rows)
    _record_export(manifest, out_dir, kind, fmt, summary, paths, report)
    if audit_headline is not None:
        manifest["audit_headline"] = audit_headline
    card = write_card(out_dir, manifest)
    manifest["files"] = dict(sorted({**manifest["files"], **_hash_files(out_dir, [card])}.items()))
    _write_json(out_dir / MANIFEST_NAME, manifest)
    return paths


def _written(export, rows: list[dict], warehouse: Warehouse, out_dir: Path, kind: str, fmt: str,
             settings: dict, tokenizer: str) -> tuple[list[Path], dict]:
    """Run a format's exporter: the files it wrote and its report (options, prompt token
    lengths, its own figures), with LLaMA-Factory's dataset_info.json where it applies."""
    if getattr(export, "needs_passages", False):
        rows = with_passages(warehouse, rows)
    written = export(rows, out_dir, kind, **settings)
    paths, report = (list(written.paths), dict(written.report)) if isinstance(written, Written) else (
        [Path(p) for p in written], {})
    if settings:
        report["options"] = settings
    if getattr(export, "prompt", None) is not None:
        report["prompt_tokens"] = prompt_token_stats([export.prompt(row) for row in rows], tokenizer)
    if getattr(export, "llamafactory", None) is not None:
        paths.append(register_llamafactory(out_dir, kind, fmt, export.llamafactory, paths[0]))
    return paths, report


def format_options(export, kind: str, fmt: str, given: dict, spec: dict) -> dict:
    """The options a format runs with: its defaults, then the spec's ``kind`` section, then
    ``given``. An option the format does not take is an InputError naming it."""
    declared = getattr(export, "options", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise InputError(f"export {kind}/{fmt} takes no option {', '.join(unknown)} "
                         f"(its options: {', '.join(sorted(declared)) or 'none'})")
    section = spec.get(kind) if isinstance(spec.get(kind), dict) else {}
    return {name: given.get(name, section.get(name, default)) for name, default in declared.items()}


def with_passages(warehouse: Warehouse, rows: list[dict]) -> list[dict]:
    """Rows with ``passages``: {docid: {title, text}} of their ``initial_list``. A passage
    missing from the warehouse is an InputError naming the row."""
    texts = load_passage_texts(warehouse, {(r["snapshot_id"], d) for r in rows for d in r["initial_list"]})
    enriched = []
    for row in rows:
        missing = [d for d in row["initial_list"] if (row["snapshot_id"], d) not in texts]
        if missing:
            raise InputError(f"row {row['row_id']}: passages {missing[:3]} of snapshot {row['snapshot_id']} "
                             "are not in the warehouse (the export needs their text)")
        passages = {d: dict(zip(("title", "text"), texts[(row["snapshot_id"], d)])) for d in row["initial_list"]}
        enriched.append({**row, "passages": passages})
    return enriched


def register_llamafactory(out_dir: Path, kind: str, fmt: str, entry: dict, data: Path) -> Path:
    """Add the export to the folder's LLaMA-Factory ``dataset_info.json`` as
    ``synthrank_<kind>_<format>`` (other exports' entries kept)."""
    path = out_dir / LLAMAFACTORY_INFO
    registered = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    registered[f"synthrank_{kind}_{fmt}".replace("-", "_")] = {"file_name": data.name, **entry}
    _write_json(path, registered)
    return path


def _folder_manifest(out_dir: Path, info: dict) -> dict:
    """The folder's manifest to extend, or a new one; refuses a folder of another version."""
    existing = read_manifest(out_dir) if (out_dir / MANIFEST_NAME).is_file() else None
    if existing is None:
        return {
            "dataset": info["dataset"], "version": info["version"],
            "parent_version": info["parent_version"], "spec_hash": info["spec_hash"],
            "code_version": info["code_version"], "snapshot_ids": list(info["snapshot_ids"]),
            "published_at": _iso(info["published_at"]), "build": info["manifest"],
            "formats": [], "exports": [], "files": {}, "lineage": {},
        }
    if (existing.get("dataset"), existing.get("version")) != (info["dataset"], info["version"]):
        raise InputError(f"{out_dir} holds an export of {existing.get('dataset')}@{existing.get('version')} "
                         f"({MANIFEST_NAME}); export {info['dataset']}@{info['version']} to another folder")
    return existing


def _record_export(manifest: dict, out_dir: Path, kind: str, fmt: str, summary: dict,
                   paths: list[Path], report: dict) -> None:
    replaced = [e for e in manifest["exports"] if (e["kind"], e["format"]) == (kind, fmt)]
    for entry in replaced:
        for name in entry["files"]:
            manifest["files"].pop(name, None)
    files = _hash_files(out_dir, paths)
    exports = [e for e in manifest["exports"] if e not in replaced]
    exports.append({"kind": kind, "format": fmt, "rows": summary["rows"], "files": sorted(files), **report})
    manifest["exports"] = sorted(exports, key=lambda e: (e["kind"], e["format"]))
    manifest["formats"] = sorted({e["format"] for e in exports})
    manifest["files"] = dict(sorted({**manifest["files"], **files}.items()))
    manifest["lineage"] = dict(sorted({**manifest["lineage"], kind: summary}.items()))


def _hash_files(out_dir: Path, paths: list[Path]) -> dict[str, dict]:
    """``relative/path -> {sha256, bytes}`` for every file written (folders walked)."""
    files = {}
    for path in paths:
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                files[file.relative_to(out_dir).as_posix()] = {"sha256": _sha256(file),
                                                               "bytes": file.stat().st_size}
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lineage_summary(rows: Iterable[dict]) -> dict:
    """How a kind's rows were made: snapshots, teachers, prompts, sampling, calls, filter flags
    (one pass over ``rows``, which may be a stream)."""
    count, calls, snapshots = 0, 0, set()
    teachers, prompts, sampling, flags = Counter(), Counter(), Counter(), Counter()
    for r in rows:
        count += 1
        calls += len(r.get("call_keys") or [])
        if r.get("snapshot_id"):
            snapshots.add(r["snapshot_id"])
        if r.get("teacher_model"):
            teachers[(r.get("teacher_backend"), r.get("teacher_model"))] += 1
        if r.get("prompt_name"):
            prompts[f"{r['prompt_name']}@{r.get('prompt_version')}"] += 1
        if r.get("sampling"):
            sampling[json.dumps(r["sampling"], sort_keys=True)] += 1
        flags.update(f"{label}:{verdict['reason']}" for label, verdict in (r.get("filter_verdicts") or {}).items()
                     if isinstance(verdict, dict) and verdict.get("reason"))
    return {
        "rows": count,
        "snapshot_ids": sorted(snapshots),
        "teachers": [{"backend": b, "model": m, "rows": n} for (b, m), n in sorted(teachers.items(), key=str)],
        "prompts": dict(sorted(prompts.items())),
        "sampling": [{"params": json.loads(s), "rows": n} for s, n in sorted(sampling.items())],
        "teacher_calls": calls,
        "filter_flags": dict(sorted(flags.items())),
    }


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable export manifest ({exc})") from None


def verify_export(folder: Path, names: list[str] | None = None) -> list[str]:
    """Problems with an export folder: files its manifest lists (or of ``names``, those) that
    are missing, unlisted or whose sha256 differs. An empty list means the files are exactly
    what was exported."""
    folder = Path(folder)
    listed = read_manifest(folder)["files"]
    problems = [f"{name}: not in {MANIFEST_NAME}" for name in names or [] if name not in listed]
    for name, expected in listed.items():
        path = folder / name
        if names is not None and name not in names:
            continue
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(path) != expected["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems


def publish_exports(warehouse: Warehouse, dataset: str, version: int, kinds: list[str],
                    dataset_dir: Path) -> list[Path]:
    """Export every kind of a just-published version as parquet to ``dataset_dir/vN`` (built
    in a hidden ``.vN.partial`` folder and renamed into place whole), then rewrite
    ``versions.json``. A build killed on the way is completed by :func:`complete_exports`."""
    dataset_dir = Path(dataset_dir)
    final = _export_into_place(warehouse, dataset, version, kinds, dataset_dir)
    write_versions_index(warehouse, dataset, dataset_dir)
    return export_files(final)


def complete_exports(warehouse: Warehouse, dataset: str, dataset_dir: Path) -> list[int]:
    """Finish what a build killed while publishing left undone: remove stale ``.partial``
    folders and files, export every published version that has no ``vN`` folder, and list
    every published version in ``versions.json``. Returns the versions completed (those
    ``versions.json`` did not list), so the exports agree with the warehouse again."""
    dataset_dir = Path(dataset_dir)
    for stale in dataset_dir.glob(".v*.partial"):
        shutil.rmtree(stale)
    (dataset_dir / f"{INDEX_NAME}.partial").unlink(missing_ok=True)
    published = [v for v in list_versions(warehouse, dataset) if v["status"] == "published"]
    indexed = _indexed_versions(dataset_dir)
    completed = []
    for info in published:
        folder = dataset_dir / f"v{info['version']}"
        if not (folder / MANIFEST_NAME).is_file():
            _export_into_place(warehouse, dataset, info["version"], list(info["manifest"].get("counts", {})),
                               dataset_dir)
        if info["version"] not in indexed:
            completed.append(info["version"])
    if completed or not indexed <= {v["version"] for v in published}:
        write_versions_index(warehouse, dataset, dataset_dir)
    return completed


def _indexed_versions(dataset_dir: Path) -> set[int]:
    """The versions ``dataset_dir/versions.json`` lists (none when it is missing or unreadable)."""
    try:
        index = json.loads((dataset_dir / INDEX_NAME).read_text(encoding="utf-8"))
        return {entry["version"] for entry in index["versions"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _export_into_place(warehouse: Warehouse, dataset: str, version: int, kinds: list[str],
                       dataset_dir: Path) -> Path:
    """``dataset_dir/vN`` with every kind as parquet, written aside and renamed into place."""
    check_name(dataset, "dataset")
    final = dataset_dir / f"v{version}"
    staging = dataset_dir / f".v{version}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    for kind in kinds:
        export_version(warehouse, dataset, version, kind, "parquet", staging)
    kill_point("export-staged")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    kill_point("export-moved")
    return final


def export_files(folder: Path) -> list[Path]:
    """The files an export folder's manifest lists, as paths: the data first, then the card."""
    names = read_manifest(folder)["files"]
    return [Path(folder) / name for name in sorted(names, key=lambda name: (name == "README.md", name))]


def write_versions_index(warehouse: Warehouse, dataset: str, dataset_dir: Path) -> Path:
    """``dataset_dir/versions.json``: the published versions that have an export folder there."""
    dataset_dir = Path(dataset_dir)
    versions = [{
        "version": v["version"], "parent_version": v["parent_version"], "folder": f"v{v['version']}",
        "spec_hash": v["spec_hash"], "code_version": v["code_version"],
        "snapshot_ids": list(v["snapshot_ids"]), "created_at": _iso(v["created_at"]),
        "published_at": _iso(v["published_at"]), "manifest": v["manifest"],
    } for v in list_versions(warehouse, dataset)
        if v["status"] == "published" and (dataset_dir / f"v{v['version']}" / MANIFEST_NAME).is_file()]
    path = dataset_dir / INDEX_NAME
    _write_json(path, {"dataset": dataset, "versions": versions})
    return path


def _write_json(path: Path, value: dict) -> None:
    """Deterministic JSON (sorted keys, two-space indent), replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def push_to_hub(out_dir: Path, kind: str, fmt: str, repo: str) -> None:
    """Upload the ``kind``/``fmt`` export in ``out_dir`` to the hub dataset ``repo`` through
    ``datasets``. Needs a token (HF_TOKEN or ``hf auth login``) and a network; without
    either, a SynthrankError says which (the export on disk is complete either way)."""
    from huggingface_hub import constants, get_token

    done = f"the export in {out_dir} is complete"
    if constants.HF_HUB_OFFLINE:
        raise SynthrankError(f"--push-to-hub {repo}: HF_HUB_OFFLINE is set; unset it on a machine "
                             f"with a network ({done})")
    if not get_token():
        raise SynthrankError(f"--push-to-hub {repo} needs a Hugging Face token: set HF_TOKEN or run "
                             f"`hf auth login` ({done})")
    dataset = _load_export(Path(out_dir), kind, fmt)
    manifest = read_manifest(out_dir)
    try:
        dataset.push_to_hub(repo, config_name=kind,
                            commit_message=f"synthrank {manifest['dataset']}@{manifest['version']} {kind}/{fmt}")
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise SynthrankError(f"--push-to-hub {repo} failed: {type(exc).__name__}: {exc} ({done})") from None


def _load_export(out_dir: Path, kind: str, fmt: str):
    """The files of one export as a ``datasets.Dataset``."""
    import datasets
    import pyarrow as pa
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    entries = [e for e in read_manifest(out_dir)["exports"] if (e["kind"], e["format"]) == (kind, fmt)]
    if not entries:
        raise InputError(f"{out_dir}/{MANIFEST_NAME} lists no {kind}/{fmt} export")
    files = [out_dir / name for name in entries[0]["files"]]
    saved = [f.parent for f in files if f.name == "state.json"]
    if saved:
        return datasets.load_from_disk(str(saved[0]))
    tables = [pq.read_table(f) if f.suffix == ".parquet" else pa_json.read_json(f)
              for f in files if f.suffix in (".parquet", ".jsonl", ".json")]
    if not tables:
        raise InputError(f"{kind}/{fmt} export in {out_dir} has no parquet, jsonl or datasets files to push")
    return datasets.Dataset(pa.concat_tables(tables, promote_options="default"))


def _is_network_error(exc: Exception) -> bool:
    """A transport or HTTP failure from the hub client (whichever HTTP library it uses)."""
    roots = {cls.__module__.split(".")[0] for cls in type(exc).__mro__}
    return isinstance(exc, OSError) or bool(roots & {"httpx", "httpx2", "requests", "urllib3", "huggingface_hub"})
