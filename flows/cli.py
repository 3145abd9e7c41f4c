"""The ``synthrank`` command line."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from warehouse.errors import SynthrankError
from warehouse.formats import formats_by_kind
from warehouse.names import check_name

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Teacher-LLM training data for rerankers and reasoning models.")
out = Console()

DEFAULT_WAREHOUSE = os.environ.get("SYNTHRANK_WAREHOUSE", "synthrank.duckdb")
WarehouseOption = typer.Option(DEFAULT_WAREHOUSE, "--warehouse", "-w", help="DuckDB warehouse file.")


_debug = False


def _show_version(value: bool) -> None:
    if value:
        from warehouse.versions import code_version

        print(f"synthrank {code_version()}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit."),
             debug: bool = typer.Option(False, "--debug", help="Show tracebacks (Prefect's included) on errors.")
             ) -> None:
    global _debug
    _debug = debug


def _prepare_prefect() -> None:
    """Settings that let a build run on a fresh, small machine with no Prefect server."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@app.command()
def ingest(path: str = typer.Argument(..., help="BEIR folder, query-list .jsonl/.parquet, or HF dataset"),
           name: str = typer.Option(..., help="Snapshot name."),
           domain: str = typer.Option(..., help="Domain label, e.g. medicine."),
           hf: bool = typer.Option(False, "--hf", help="PATH is a Hugging Face hub dataset id."),
           skip_bad_records: bool = typer.Option(
               False, "--skip-bad-records", help="Leave out records that cannot be used (empty text, missing id, "
               "qrels on unknown ids, ...) and record them in the snapshot, instead of stopping at the first."),
           wait: float = typer.Option(0.0, help="Seconds to wait for another process holding the warehouse."),
           warehouse: str = WarehouseOption) -> None:
    """Ingest a source into an immutable, fingerprinted snapshot."""
    from warehouse.db import Warehouse, discarded_if_unused
    from warehouse.snapshots import ingest as ingest_source, skip_summary, skipped_records

    with discarded_if_unused(warehouse), Warehouse.open(warehouse, wait_seconds=wait) as wh:
        snapshot, created = ingest_source(wh, path, name, domain, hub=hf,
                                          on_bad_record="skip" if skip_bad_records else "fail")
        skipped = skip_summary(skipped_records(wh, snapshot.snapshot_id))
    state = "created" if created else "already present, nothing written"
    out.print(f"snapshot [bold]{snapshot.snapshot_id}[/] ({state}): {snapshot.n_passages} passages, "
              f"{snapshot.n_queries} queries, {snapshot.n_qrels} judged pairs")
    for reason, summary in skipped.items():
        out.print(f"skipped {summary['count']} {reason}: {escape(', '.join(summary['locations']))}"
                  + (" …" if summary["count"] > len(summary["locations"]) else ""), soft_wrap=True)


@app.command()
def build(spec: Path = typer.Argument(..., help="Build spec (YAML)."),
          wait: float = typer.Option(0.0, help="Seconds to wait for another build holding the warehouse.")) -> None:
    """Run a build spec as a Prefect flow and publish a new dataset version."""
    from flows.spec import load_spec
    from warehouse.db import discarded_if_unused

    parsed = load_spec(spec)  # fail fast, before Prefect starts, on a bad spec
    with discarded_if_unused(parsed.warehouse_path):
        _wait_for_warehouse(parsed.warehouse_path, wait)
        _prepare_prefect()
        from flows.prefect_server import start_server_early

        start_server_early()  # boots while the build's modules import
        if not _debug:  # the error reaches the user as one line; Prefect's copies stay off the console
            from flows.logs import quiet_expected_tracebacks

            quiet_expected_tracebacks()
        from flows.build import run_build

        summary = run_build(str(spec), wait_seconds=wait)
    _print_summary(summary)


@app.command()
def serve(spec: Path = typer.Argument(..., help="Build spec (YAML)."),
          cron: str = typer.Option("0 3 * * *", help="Cron schedule."),
          name: Optional[str] = typer.Option(None, help="Deployment name (default build-DATASET).")) -> None:
    """Serve the build as a scheduled Prefect deployment (runs until interrupted)."""
    from flows.spec import load_spec

    load_spec(spec)
    _prepare_prefect()
    from flows.schedule import serve_build

    serve_build(spec, cron, name)


@app.command()
def deploy(spec: Path = typer.Argument(..., help="Build spec (YAML)."),
           work_pool: str = typer.Option(..., help="Prefect work pool whose workers run the build."),
           cron: Optional[str] = typer.Option(None, help="Cron schedule."),
           name: Optional[str] = typer.Option(None, help="Deployment name (default build-DATASET).")) -> None:
    """Register the build as a deployment on a work pool."""
    from flows.spec import load_spec

    load_spec(spec)
    _prepare_prefect()
    from flows.schedule import deploy_build

    out.print(f"deployment {deploy_build(spec, work_pool, cron, name)} registered on {work_pool}")


@app.command()
def doctor(warehouse: str = WarehouseOption) -> None:
    """Check this machine before a first build: packages, CPU, llama.cpp build, embedded model,
    embedder, Chromium, Prefect API, warehouse. Exit code 1 when the default build cannot run."""
    from flows.doctor import run_checks

    _prepare_prefect()
    checks = run_checks(Path(warehouse))
    styles = {"ok": "green", "warn": "yellow", "fail": "bold red"}
    table = Table("check", "status", "found", "fix", title="synthrank doctor")
    for check in checks:
        table.add_row(check.name, f"[{styles[check.status]}]{check.status}[/]", escape(check.found),
                      escape(check.fix))
    out.print(table)
    if any(check.status == "fail" for check in checks):
        raise SystemExit(1)


def _wait_for_warehouse(path: Path, wait: float) -> None:
    """Fail fast, before Prefect starts, when another process keeps the warehouse past ``wait``."""
    from warehouse.db import Warehouse

    Warehouse.open(path, wait_seconds=wait).close()


def _print_summary(summary: dict) -> None:
    if summary["outcome"] == "unchanged":
        out.print(f"{summary['dataset']}: inputs and code unchanged since the latest published version "
                  f"v{summary['version']} ({summary['inputs']}); nothing published (`publish: always` in the "
                  "spec publishes every build)")
        _print_failed_calls(summary.get("teachers", []))
        return
    if summary["outcome"] == "resumed":
        out.print(f"{summary['dataset']} v{summary['version']} was published by a build that stopped while "
                  "exporting it; its export is now complete (nothing new published)")
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
        if teacher.get("cost_usd") is not None:
            table.add_row("  cost", f"${teacher['cost_usd']:.4f}")
    if (summary.get("cost") or {}).get("usd") is not None:
        table.add_row("teacher cost", f"${summary['cost']['usd']:.4f}")
    table.add_row("wall time", f"{summary['wall_seconds']} s")
    out.print(table)
    _print_failed_calls(summary["teachers"])
    for output in summary["outputs"]:
        out.print(f"output: {output}", soft_wrap=True)
    out.print(f"warehouse: {summary['warehouse']}", soft_wrap=True)


def _print_failed_calls(teachers: list[dict]) -> None:
    """Teacher calls that failed after their retries, with their errors: a rerun retries them."""
    failed = sum(t["calls_failed"] for t in teachers)
    if not failed:
        return
    out.print(f"[yellow]{failed} teacher calls failed after their retries; their rows are rejected "
              f"(teacher_failed). Run the build again to retry exactly those calls.[/]")
    for error in dict.fromkeys(e for t in teachers for e in t.get("errors", [])):
        out.print(f"  [dim]{escape(error)}[/]", soft_wrap=True)


FromExportsOption = typer.Option(
    None, "--from-exports", help="Read published versions from this export folder (OUT, or an object-store "
    "URL read through DuckDB httpfs) instead of the warehouse. Used by default while a build holds it.")


@app.command()
def versions(dataset: Optional[str] = typer.Argument(None), warehouse: str = WarehouseOption,
             from_exports: Optional[str] = FromExportsOption) -> None:
    """List dataset versions."""
    from warehouse.exported import open_published
    from warehouse.versions import version_status

    with open_published(warehouse, from_exports) as (store, note):
        rows = store.list_versions(check_name(dataset, "dataset") if dataset else None)
        if dataset and not rows:
            known = sorted({row["dataset"] for row in store.list_versions()})
            raise SynthrankError(f"no dataset {dataset!r} in {store.where} "
                                 f"(datasets: {', '.join(known) or 'none yet'})")
    _print_note(note)
    table = Table("dataset", "version", "status", "rows", "rejected", "spec", "published")
    for row in rows:
        manifest = row["manifest"]
        table.add_row(row["dataset"], str(row["version"]), version_status(row),
                      str(sum(manifest.get("counts", {}).values())),
                      str(sum(manifest.get("rejections", {}).values())),
                      row["spec_hash"], str(row["published_at"] or ""))
    out.print(table)


@app.command()
def show(target: str = typer.Argument(..., help="DATASET or DATASET@N"),
         limit: int = typer.Option(3, help="How many rows."),
         kind: str = typer.Option("listwise"),
         row: Optional[str] = typer.Option(None, "--row", help="Print one row's lineage and teacher calls "
                                           "(row id or a unique prefix)."),
         full: bool = typer.Option(False, "--full", help="With --row: print messages and reasoning uncut."),
         as_json: bool = typer.Option(False, "--json", help="With --row: print the record as JSON."),
         warehouse: str = WarehouseOption,
         from_exports: Optional[str] = FromExportsOption) -> None:
    """Print a few rows of a published version readably, or one row with its lineage (--row)."""
    from warehouse.exported import open_published

    dataset, version = parse_target(target)
    with open_published(warehouse, from_exports) as (store, note):
        version = store.resolve_version(dataset, version)
        if row is not None:
            _print_note(note)
            _show_row(store, dataset, version, row, full, as_json)
            return
        rows = store.load_rows(dataset, version, kind)[:limit]
    _print_note(note)
    out.print(f"[bold]{dataset}@{version}[/] · {kind} · showing {len(rows)} rows")
    for row in rows:
        _print_row_summary(row)


# Fields `show` prints first when a row has them, with how much of each to show.
_SUMMARY_FIELDS = (("query", 300), ("initial_list", 300), ("final_list", 300), ("relevant_docids", 300),
                   ("positives", 300), ("negatives", 600), ("answer", 300), ("reasoning", 400))


def _print_row_summary(row: dict) -> None:
    """A readable view of a row of any kind: its main fields clipped, then its lineage."""
    out.rule(f"{row['row_id']} · {row['domain']} · qid {row['qid']}")
    for name, limit in _SUMMARY_FIELDS:
        if name in row:
            value = row[name] if isinstance(row[name], str) else json.dumps(row[name], ensure_ascii=False)
            out.print(f"[bold]{name}:[/] {escape(_clip(value, limit))}", highlight=False)
    out.print(f"[dim]teacher {row.get('teacher_model', 'n/a')} · prompt {row.get('prompt_name', 'n/a')}"
              f"@{row.get('prompt_version', 'n/a')} · sampling {json.dumps(row.get('sampling'))}[/]")


@app.command()
def export(target: str = typer.Argument(..., help="DATASET or DATASET@N (default: latest published)"),
           format: str = typer.Option(..., "--format", "-f", help="Format; per kind: " + "; ".join(
               f"{kind}: {', '.join(formats)}" for kind, formats in formats_by_kind().items())),
           out_dir: Path = typer.Option(..., "--out", help="Folder to write into."),
           kind: str = typer.Option("listwise", help="Dataset kind."),
           push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", metavar="REPO",
                                                     help="Also upload the export to this hub dataset "
                                                          "(needs a token and a network)."),
           option: Optional[list[str]] = typer.Option(None, "--option", "-o", metavar="NAME=VALUE",
                                                      help="A format option (repeatable), e.g. num_negatives=4, "
                                                           "short_rows=drop, cleared_suspects=false."),
           tokenizer: str = typer.Option("embedded", help="Tokenizer the manifest counts prompt tokens with: "
                                         "'embedded' (SmolLM2's) or a hub id / folder of the model you train."),
           audit: bool = typer.Option(True, "--audit/--no-audit",
                                      help="Put the version's audit headline into the dataset card."),
           warehouse: str = WarehouseOption) -> None:
    """Export one kind of a published version in a trainer's format (with OUT/manifest.json
    and a README.md dataset card)."""
    from warehouse.db import Warehouse
    from warehouse.exports import MANIFEST_NAME, export_version

    dataset, version = parse_target(target)
    options = format_options(option or [])
    with Warehouse.open(warehouse, read_only=True) as wh:
        headline = audit_headline(wh, dataset, version) if audit else None
        paths = export_version(wh, dataset, version, kind, format, out_dir, options, tokenizer, headline)
    for path in paths:
        out.print(f"wrote {path}", soft_wrap=True)
    out.print(f"manifest {out_dir / MANIFEST_NAME}", soft_wrap=True)
    _print_export_report(out_dir, kind, format)
    if push_to_hub:
        from warehouse.exports import push_to_hub as push

        push(out_dir, kind, format, push_to_hub)
        out.print(f"pushed to https://huggingface.co/datasets/{push_to_hub}")


def _print_export_report(out_dir: Path, kind: str, fmt: str) -> None:
    """The export's prompt token lengths and warnings, from its manifest entry."""
    from warehouse.exports import read_manifest

    entry = next(e for e in read_manifest(out_dir)["exports"] if (e["kind"], e["format"]) == (kind, fmt))
    tokens = entry.get("prompt_tokens") or {}
    if tokens.get("max"):
        out.print(f"prompt tokens ({tokens['tokenizer']}): max {tokens['max']}, p95 {tokens['p95']}; "
                  f"a trainer needs max_prompt_length >= {tokens['max_prompt_length']}", soft_wrap=True)
    for warning in entry.get("warnings", []):
        out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


def format_options(pairs: list[str]) -> dict:
    """``NAME=VALUE`` pairs as options, values read as YAML (``4``, ``false``, ``drop``)."""
    import yaml

    from warehouse.errors import InputError

    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--option {pair!r}: expected NAME=VALUE")
        options[name.strip()] = yaml.safe_load(value)
    return options


def audit_headline(warehouse, dataset: str, version: int | None) -> list[dict[str, str]]:
    """The version's audit headline (figure, value, n, note), for the dataset card; an audit
    that cannot be computed says why there instead of stopping the export."""
    from flows.report import compute_audit, headline_table, load_for_audit

    try:
        return headline_table(compute_audit(load_for_audit(warehouse, dataset, version)))
    except Exception as exc:  # the card reports it; the export itself does not depend on the audit
        return [{"figure": "audit", "value": "n/a", "n": "", "note": f"not computed: {type(exc).__name__}: {exc}"}]


def _print_note(note: str | None) -> None:
    if note:
        out.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


def _show_row(store, dataset: str, version: int, row_id: str, full: bool, as_json: bool) -> None:
    """One row's data, lineage, verdicts and the teacher calls it came from."""
    from warehouse.exported import WarehouseVersions
    from warehouse.versions import LINEAGE_FIELDS, row_record

    if isinstance(store, WarehouseVersions):
        records = row_record(store.warehouse, dataset, version, row_id)
    else:
        records = [{"kind": kind, "row_id": r["row_id"], "status": "accepted", "rejections": [],
                    "data": {k: v for k, v in r.items() if k not in LINEAGE_FIELDS},
                    "lineage": {k: r[k] for k in LINEAGE_FIELDS if k in r}, "calls": None}
                   for kind in store.kinds(dataset, version) for r in store.load_rows(dataset, version, kind)
                   if r["row_id"].startswith(row_id)]
    if not records:
        raise SynthrankError(f"no row {row_id!r} in {dataset}@{version} ({store.where})")
    if as_json:
        print(json.dumps(records, ensure_ascii=False, indent=2, default=str))
        return
    limit = None if full else 1500
    for record in records:
        out.rule(f"{dataset}@{version} · {record['kind']} · row {record['row_id']} · {record['status']}")
        for stage, reason, score in record["rejections"]:
            out.print(f"[bold red]rejected by {escape(stage)}:[/] {escape(reason)}"
                      + (f" (score {score:g})" if score is not None else ""))
        out.print("[bold]data[/]")
        for name, value in record["data"].items():
            out.print(f"  {name}: {escape(_clip(_text(value), 400 if limit else None))}", soft_wrap=True)
        out.print("[bold]lineage[/]")
        for name, value in record["lineage"].items():
            out.print(f"  {name}: {escape(_text(value))}", soft_wrap=True)
        if record["calls"] is None:
            out.print("[dim]teacher calls: stored in the warehouse, which this reader cannot open now[/]")
            continue
        for call in record["calls"]:
            _print_call(call, limit)


def _print_call(call: dict, limit: int | None) -> None:
    out.print(f"[bold]teacher call {call['call_key'][:16]}[/] · {call['backend']} · {escape(call['model'])} · "
              f"sample {call['sample_index']} · {call['status']} · finish {call['finish_reason']} · tokens "
              f"{call['prompt_tokens']} / {call['completion_tokens']} · {call['attempts']} attempt(s)")
    request = call["request"]
    for message in request.get("messages", []):
        out.print(f"  [cyan]{message.get('role')}:[/] {escape(_clip(str(message.get('content')), limit))}",
                  soft_wrap=True)
    out.print(f"  [cyan]sampling:[/] {escape(_text({k: v for k, v in request.items() if k != 'messages'}))}",
              soft_wrap=True)
    out.print(f"  [cyan]reasoning:[/] {escape(_clip(call['reasoning'] or '', limit))}", soft_wrap=True)
    out.print(f"  [cyan]answer:[/] {escape(_clip(call['content'] or call['error'] or '', limit))}", soft_wrap=True)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


@app.command()
def diff(a: str = typer.Argument(..., help="DATASET@A (the older version)"),
         b: str = typer.Argument(..., help="DATASET@B or @B (the newer version)"),
         examples: int = typer.Option(3, help="Rows to show of each sort of change, per kind."),
         as_json: bool = typer.Option(False, "--json", help="Print the diff as JSON."),
         warehouse: str = WarehouseOption,
         from_exports: Optional[str] = FromExportsOption) -> None:
    """Rows added, removed and changed (labels, verdicts) between two versions, by kind."""
    from warehouse.diff import diff_versions
    from warehouse.exported import open_published

    dataset, version_a = parse_target(a)
    other, version_b = parse_target(b if "@" not in b or b.split("@")[0] else dataset + b)
    if other != dataset:
        raise SynthrankError(f"diff compares two versions of one dataset, got {dataset!r} and {other!r}")
    with open_published(warehouse, from_exports) as (store, note):
        result = diff_versions(store, dataset, version_a, version_b, examples)
    if as_json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2, default=str))
        return
    _print_note(note)
    _print_diff(result)


def _print_diff(result) -> None:
    table = Table("kind", f"@{result.version_a}", f"@{result.version_b}", "added", "removed", "changed",
                  "labels", "verdicts", "same", title=f"{result.dataset}@{result.version_a} → @{result.version_b}",
                  caption="labels, verdicts: changed rows whose label fields, filter verdicts differ")
    for kind in result.kinds:
        s = kind.summary()
        table.add_row(kind.kind, *(str(s[k]) for k in ("rows_a", "rows_b", "added", "removed", "changed",
                                                         "label_changed", "verdict_changed", "unchanged")))
    out.print(table)
    for kind in result.kinds:
        s = kind.summary()
        if s["now_rejected"] or s["now_accepted"]:
            out.print(f"{kind.kind}: {s['now_rejected']} removed rows were rejected in @{result.version_b}; "
                      f"{s['now_accepted']} added rows had been rejected in @{result.version_a}")
        if s["human_changed"]:
            out.print(f"{kind.kind}: {s['human_changed']} changed rows carry labels people set (human_labels)")
        if kind.fields_changed:
            out.print(f"{kind.kind}: fields changed: " + ", ".join(f"{k} {n}" for k, n in kind.fields_changed.items()))
        for example in kind.examples:
            out.print(f"  [bold]{example['change']}[/] {example['row_id']}: "
                      f"{escape(_text({k: v for k, v in example.items() if k not in ('change', 'row_id')}))}",
                      soft_wrap=True)


@app.command()
def audit(target: str = typer.Argument(..., help="DATASET or DATASET@N (default: latest published)"),
          out_dir: Path = typer.Option(..., "--out", help="Folder for the HTML report and Markdown summary."),
          against: Optional[str] = typer.Option(None, "--against", metavar="DATASET@M",
                                                help="Compare with another version or another teacher's dataset."),
          wait: float = typer.Option(0.0, help="Seconds to wait for a build holding the warehouse."),
          warehouse: str = WarehouseOption) -> None:
    """Label-quality audit: figures against qrels, consistency, rejections, cost, samples (HTML + Markdown)."""
    from flows.report import write_audit

    dataset, version = parse_target(target)
    files = write_audit(warehouse, dataset, version, out_dir, parse_target(against) if against else None, wait)
    table = Table("figure", "value", "n", title=f"audit of {target}")
    for item in files.headline:
        table.add_row(item["figure"], item["value"], item["n"] + (f" · {item['note']}" if item["note"] else ""))
    out.print(table)
    out.print(f"report: {files.html}", soft_wrap=True)
    out.print(f"summary: {files.markdown}", soft_wrap=True)


# --- human review in Label Studio (synthrank review push / pull / audit) ---------------------

review_app = typer.Typer(no_args_is_help=True, help="Human review of disputed labels in Label Studio.")
app.add_typer(review_app, name="review")

TokenEnvOption = typer.Option("LABEL_STUDIO_API_KEY", "--token-env", metavar="NAME",
                              help="Environment variable holding the Label Studio API token (the token itself "
                                   "is never stored or printed).")


def _label_studio(url: str, token_env: str):
    """A client for the server at ``url`` with the token from ``$token_env``."""
    from generators.labelstudio import LabelStudio

    token = os.environ.get(token_env, "").strip()
    if not token:
        raise SynthrankError(f"${token_env} is not set: export the API token of your Label Studio user "
                             "(Account & Settings, or LABEL_STUDIO_USER_TOKEN when the server was started) "
                             "under that name, or name another variable with --token-env")
    return LabelStudio(url, token, token_name=f"the token in ${token_env}")


@review_app.command("push")
def review_push(target: str = typer.Argument(..., help="DATASET or DATASET@N (default: latest published)"),
                select: str = typer.Option(..., "--select", help="disputed | rejected | suspected_false_negatives | "
                                           "sample:N | a SQL predicate over the review items"),
                to: str = typer.Option(..., "--to", help="Label Studio URL, e.g. http://127.0.0.1:8080"),
                kind: Optional[list[str]] = typer.Option(None, "--kind", help="Only these kinds (repeatable)."),
                seed: int = typer.Option(0, help="Seed of sample:N."),
                token_env: str = TokenEnvOption,
                warehouse: str = WarehouseOption) -> None:
    """Create or update a Label Studio project per kind with a task per selected item."""
    from generators.review import push_review

    dataset, version = parse_target(target)
    report = push_review(warehouse, dataset, version, select, _label_studio(to, token_env), kind, seed)
    if not report.projects:
        out.print(f"the selection {select!r} holds no item of {target} to review; nothing pushed")
    table = Table("kind", "project", "tasks added", "already there", title=f"review push {target} · {select}")
    for name, project in report.projects.items():
        table.add_row(name, project["url"] + (" (new)" if project["created"] else ""), str(project["added"]),
                      str(project["already_present"]))
    out.print(table)


@review_app.command("pull")
def review_pull(target: str = typer.Argument(..., help="DATASET or DATASET@N (default: latest published)"),
                source: str = typer.Option(..., "--from", help="Label Studio URL the version was pushed to."),
                token_env: str = TokenEnvOption,
                wait: float = typer.Option(0.0, help="Seconds to wait for a build holding the warehouse."),
                warehouse: str = WarehouseOption) -> None:
    """Store the annotations of the version's review projects as human judgments (idempotent)."""
    from generators.review import pull_review

    dataset, version = parse_target(target)
    report = pull_review(warehouse, dataset, version, _label_studio(source, token_env), wait)
    out.print(f"judgments of {target}: {report.counts['added']} added, {report.counts['updated']} updated, "
              f"{report.counts['unchanged']} unchanged (projects {report.projects})")
    for reason in report.skipped:
        out.print(f"[yellow]skipped:[/] {escape(reason)}", soft_wrap=True)


@review_app.command("audit")
def review_audit(target: str = typer.Argument(..., help="DATASET or DATASET@N (default: latest published)"),
                 warehouse: str = WarehouseOption) -> None:
    """Teacher-vs-human agreement per kind, and error rates from sample:N selections."""
    from warehouse.db import Warehouse
    from warehouse.review_audit import human_agreement
    from warehouse.versions import resolve_version

    dataset, version = parse_target(target)
    with Warehouse.open(warehouse, read_only=True) as wh:
        figures = human_agreement(wh, dataset, resolve_version(wh, dataset, version))
    table = Table("kind", "figure", "value", "95% interval", "n", title=f"teacher vs. human · {target}")
    for figure in figures:
        table.add_row(figure.kind, figure.name, figure.value_text, figure.interval_text, str(figure.n))
    out.print(table if figures else f"no human judgments of {target} yet: run `synthrank review pull`")


def parse_target(target: str) -> tuple[str, int | None]:
    """``name`` or ``name@N``."""
    name, _, number = target.partition("@")
    if number and not number.isdigit():
        raise SynthrankError(f"{target!r}: expected DATASET or DATASET@N")
    return check_name(name, "dataset"), int(number) if number else None


def _clip(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[:limit] + " …"


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C does, so a build cleans up (stops what it started) on the way out."""
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))


def main() -> None:
    """Entry point: a foreseeable problem (bad input, a file in the way, a locked or unreadable
    warehouse, a full disk) prints one line ``error: ...`` and exits 2, nothing half-written.
    Usage errors are click's (usage and the error, exit 2). ``--debug`` shows tracebacks."""
    _exit_on_sigterm()
    try:
        app(prog_name="synthrank")  # standalone: click prints usage errors and exits; others come here
    except Exception as exc:
        message = _expected_error(exc)
        if message is None or _debug:
            raise
        print("error: " + " ".join(message.splitlines()), file=sys.stderr)
        sys.exit(2)


def _expected_error(exc: Exception) -> str | None:
    """The one-line message for a foreseeable error, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, SynthrankError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        full = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return f"{where}{exc.strerror or exc}{full}"
    duckdb = sys.modules.get("duckdb")  # loaded if it raised
    if duckdb is not None and isinstance(exc, (duckdb.IOException, duckdb.OutOfMemoryException)):
        return f"the warehouse: {str(exc).strip().splitlines()[0]}"
    return None


if __name__ == "__main__":
    main()
