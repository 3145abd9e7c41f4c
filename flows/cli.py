"""The ``synthrank`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from warehouse.errors import SynthrankError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Teacher-LLM training data for rerankers and reasoning models.")
out = Console()

DEFAULT_WAREHOUSE = os.environ.get("SYNTHRANK_WAREHOUSE", "synthrank.duckdb")
WarehouseOption = typer.Option(DEFAULT_WAREHOUSE, "--warehouse", "-w", help="DuckDB warehouse file.")


def _prepare_prefect() -> None:
    """Settings that let a build run on a fresh, small machine with no Prefect server."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.getLogger("bm25s").setLevel(logging.WARNING)


@app.command()
def ingest(path: str = typer.Argument(..., help="BEIR folder, query-list .jsonl/.parquet, or HF dataset"),
           name: str = typer.Option(..., help="Snapshot name."),
           domain: str = typer.Option(..., help="Domain label, e.g. medicine."),
           hf: bool = typer.Option(False, "--hf", help="PATH is a Hugging Face hub dataset id."),
           warehouse: str = WarehouseOption) -> None:
    """Ingest a source into an immutable, fingerprinted snapshot."""
    from warehouse.db import Warehouse
    from warehouse.snapshots import ingest as ingest_source

    with Warehouse.open(warehouse) as wh:
        snapshot, created = ingest_source(wh, path, name, domain, hub=hf)
    state = "created" if created else "already present, nothing written"
    out.print(f"snapshot [bold]{snapshot.snapshot_id}[/] ({state}): {snapshot.n_passages} passages, "
              f"{snapshot.n_queries} queries, {snapshot.n_qrels} judged pairs")


@app.command()
def build(spec: Path = typer.Argument(..., help="Build spec (YAML)."),
          wait: float = typer.Option(0.0, help="Seconds to wait for another build holding the warehouse.")) -> None:
    """Run a build spec as a Prefect flow and publish a new dataset version."""
    from flows.spec import load_spec

    load_spec(spec)  # fail fast, before Prefect starts, on a bad spec
    _prepare_prefect()
    from flows.build import build_flow

    summary = build_flow(str(spec), wait_seconds=wait)
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['dataset']} v{summary['version']}", show_header=False)
    for kind, accepted in summary["counts"].items():
        table.add_row(f"{kind} rows accepted / attempted", f"{accepted} / {summary['attempted'][kind]}")
    for reason, count in sorted(summary["rejections"].items()):
        table.add_row(f"rejected {reason}", str(count))
    for teacher in summary["teachers"]:
        table.add_row(f"{teacher['kind']} teacher", f"{teacher['backend']} · {teacher['model']}")
        table.add_row("  calls made / reused / failed",
                      f"{teacher['calls_made']} / {teacher['calls_reused']} / {teacher['calls_failed']}")
        table.add_row("  tokens prompt / completion", f"{teacher['prompt_tokens']} / {teacher['completion_tokens']}")
    table.add_row("wall time", f"{summary['wall_seconds']} s")
    out.print(table)
    for output in summary["outputs"]:
        out.print(f"output: {output}", soft_wrap=True)
    out.print(f"warehouse: {summary['warehouse']}", soft_wrap=True)


@app.command()
def versions(dataset: Optional[str] = typer.Argument(None), warehouse: str = WarehouseOption) -> None:
    """List dataset versions."""
    from warehouse.db import Warehouse
    from warehouse.versions import list_versions

    with Warehouse.open(warehouse, read_only=True) as wh:
        rows = list_versions(wh, dataset)
    table = Table("dataset", "version", "status", "rows", "rejected", "spec", "published")
    for row in rows:
        manifest = row["manifest"]
        table.add_row(row["dataset"], str(row["version"]), row["status"],
                      str(sum(manifest.get("counts", {}).values())),
                      str(sum(manifest.get("rejections", {}).values())),
                      row["spec_hash"], str(row["published_at"] or ""))
    out.print(table)


@app.command()
def show(target: str = typer.Argument(..., help="DATASET or DATASET@N"),
         limit: int = typer.Option(3, help="How many rows."),
         kind: str = typer.Option("listwise"),
         warehouse: str = WarehouseOption) -> None:
    """Print a few rows of a published version readably."""
    from warehouse.db import Warehouse
    from warehouse.versions import load_rows, resolve_version

    dataset, version = parse_target(target)
    with Warehouse.open(warehouse, read_only=True) as wh:
        version = resolve_version(wh, dataset, version)
        rows = load_rows(wh, dataset, version, kind)[:limit]
    out.print(f"[bold]{dataset}@{version}[/] · {kind} · showing {len(rows)} rows")
    for row in rows:
        out.rule(f"{row['row_id']} · {row['domain']} · qid {row['qid']}")
        out.print(f"[bold]query:[/] {row['query']}")
        out.print(f"[bold]presented:[/] {row['initial_list']}")
        out.print(f"[bold]ranking:[/] {row['final_list']}")
        out.print(f"[bold]reasoning:[/] {_clip(row['reasoning'], 400)}")
        out.print(f"[dim]teacher {row['teacher_model']} · prompt {row['prompt_name']}@{row['prompt_version']}"
                  f" · sampling {json.dumps(row['sampling'])}[/]")


def parse_target(target: str) -> tuple[str, int | None]:
    """``name`` or ``name@N``."""
    name, _, number = target.partition("@")
    if number and not number.isdigit():
        raise SynthrankError(f"{target!r}: expected DATASET or DATASET@N")
    return name, int(number) if number else None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def main() -> None:
    """Entry point: user errors print one clear line and exit 2; nothing half-written."""
    try:
        app(standalone_mode=False)
    except (SynthrankError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
