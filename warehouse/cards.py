"""The ``README.md`` dataset card of an export folder, written from its manifest.

A YAML header the Hugging Face hub and ``datasets`` read (``configs``: one per export,
named ``<kind>-<format>``: the Parquet ones, or the JSONL ones in a folder without Parquet,
as ``datasets`` reads one file format per folder (``load_dataset("json", data_files=…)``
reads the others); an ``hf`` export is a ``save_to_disk`` folder for ``load_from_disk``; ``license``, ``task_categories``, ``size_categories``,
``tags``), then a body that says how the data was made: lineage, teachers, prompt versions,
filters, counts and rejections, prompt token lengths, and the audit headline when the export
was given one. ``datasets.load_dataset(FOLDER, "<kind>-<format>")`` loads an export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

CARD_NAME = "README.md"
TASKS = {"listwise": ["text-ranking"], "pointwise": ["text-ranking", "text-classification"],
         "negatives": ["sentence-similarity", "text-retrieval"], "mixed_cot": ["text-generation", "question-answering"]}
DATA_SUFFIXES = (".parquet", ".jsonl")  # hf exports are save_to_disk folders: load_from_disk reads them


def write_card(out_dir: Path, manifest: dict) -> Path:
    """Write ``out_dir/README.md`` for the folder's manifest (replaced whole)."""
    path = Path(out_dir) / CARD_NAME
    partial = path.with_name(path.name + ".partial")
    partial.write_text(dataset_card(manifest), encoding="utf-8")
    os.replace(partial, path)
    return path


def dataset_card(manifest: dict) -> str:
    header = yaml.safe_dump(card_metadata(manifest), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{header}---\n\n" + "\n".join(_body(manifest)) + "\n"


def card_metadata(manifest: dict) -> dict:
    """The card's YAML header."""
    kinds = sorted({e["kind"] for e in manifest["exports"]})
    configs = [config for config in map(_config, manifest["exports"]) if config]
    if any(_is_parquet(c) for c in configs):  # datasets loads one file format per folder
        configs = [c for c in configs if _is_parquet(c)]
    if len(configs) > 1:
        configs[0]["default"] = True
    largest = max((e.get("written_rows", e["rows"]) for e in manifest["exports"]), default=0)
    return {
        "pretty_name": f"{manifest['dataset']} v{manifest['version']}",
        "license": "other",  # the teachers' terms of use decide: see the card's Teachers
        "task_categories": sorted({task for kind in kinds for task in TASKS.get(kind, [])}),
        "size_categories": [size_category(largest)],
        "tags": ["synthrank", "synthetic", *kinds],
        "configs": configs,
    }


def _config(entry: dict) -> dict | None:
    files = [name for name in entry["files"] if name.endswith(DATA_SUFFIXES)]
    if not files:
        return None
    return {"config_name": f"{entry['kind']}-{entry['format']}",
            "data_files": [{"split": "train", "path": files if len(files) > 1 else files[0]}]}


def _is_parquet(config: dict) -> bool:
    path = config["data_files"][0]["path"]
    return (path if isinstance(path, str) else path[0]).endswith(".parquet")


def size_category(rows: int) -> str:
    """The hub's size bucket for a row count."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if rows < bound), "n>1T" if rows >= 10**12 else "1B<n<10B")


def _body(manifest: dict) -> list[str]:
    build = manifest.get("build") or {}
    lines = [f"# {manifest['dataset']} v{manifest['version']}", "",
             "Made by synthrank with teacher LLMs: read the lineage and the audit before you train. "
             "The license is `other`: the terms of the teachers below and of the source collections apply.", "",
             "## Exports", "", "| config | kind | format | rows | files | prompt tokens (max / p95) |",
             "|---|---|---|---|---|---|"]
    for entry in manifest["exports"]:
        tokens = entry.get("prompt_tokens") or {}
        shown = f"{tokens['max']} / {tokens['p95']} ({tokens['tokenizer']})" if tokens.get("max") else "—"
        rows = entry.get("written_rows", entry["rows"])
        lines.append(f"| {entry['kind']}-{entry['format']} | {entry['kind']} | {entry['format']} | {rows} | "
                     f"{', '.join(f'`{f}`' for f in entry['files'])} | {shown} |")
    for entry in manifest["exports"]:
        for warning in entry.get("warnings", []):
            lines.append(f"\n**Warning ({entry['kind']}-{entry['format']}):** {warning}")
    lines += ["", "## Lineage", "",
              f"- version {manifest['version']} (parent: {manifest.get('parent_version') or 'none'}), "
              f"published {manifest.get('published_at')}",
              f"- build spec hash `{manifest.get('spec_hash')}`, code version `{manifest.get('code_version')}`",
              f"- source snapshots: {', '.join(f'`{s}`' for s in manifest.get('snapshot_ids', [])) or 'none'}"]
    lines += ["", "## Teachers", ""] + _teachers(manifest)
    lines += ["", "## Prompt versions", ""] + _prompts(manifest)
    lines += ["", "## Filters", ""] + _filters(build)
    lines += ["", "## Counts and rejections", ""] + _counts(build)
    lines += ["", "## Audit", ""] + _audit(manifest)
    return lines


def _teachers(manifest: dict) -> list[str]:
    lines = []
    for kind, summary in sorted(manifest.get("lineage", {}).items()):
        for teacher in summary.get("teachers", []):
            lines.append(f"- {kind}: `{teacher['model']}` ({teacher['backend']}), {teacher['rows']} rows")
    return lines or ["- none recorded"]


def _prompts(manifest: dict) -> list[str]:
    """``name@version`` of the prompts behind each kind's rows, with their row counts."""
    return [f"- {kind}: `{prompt}`, {n} rows" for kind, summary in sorted(manifest.get("lineage", {}).items())
            for prompt, n in summary.get("prompts", {}).items()] or ["- none recorded"]


def _filters(build: dict) -> list[str]:
    filters = build.get("filters") or {}
    if not filters:
        return ["- none"]
    return [f"- {kind}: `{json.dumps(steps, sort_keys=True, ensure_ascii=False)}`" for kind, steps in sorted(filters.items())]


def _counts(build: dict) -> list[str]:
    lines = [f"- {kind}: {n} accepted of {build.get('attempted', {}).get(kind, '?')} attempted"
             for kind, n in sorted((build.get("counts") or {}).items())]
    lines += [f"- rejected `{reason}`: {n}" for reason, n in sorted((build.get("rejections") or {}).items())]
    return lines or ["- not recorded"]


def _audit(manifest: dict) -> list[str]:
    headline = manifest.get("audit_headline")
    if not headline:
        return [f"Not computed for this export: `synthrank audit {manifest['dataset']}@{manifest['version']} "
                "--out audit/` writes it."]
    columns = list(headline[0])
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in headline]
