"""The audit flow: write a version's audit report and publish its headline and summary as
Prefect artifacts (a table and a Markdown document), e.g. after a scheduled build."""

from __future__ import annotations

import re

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.cli import parse_target
from flows.report import write_audit


def artifact_key(dataset: str, what: str) -> str:
    """Prefect artifact keys take lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"audit-{dataset.lower()}-{what}").strip("-")


@task(name="audit-report")
def audit_report(warehouse: str, target: str, out_dir: str, against: str | None) -> dict:
    """Compute the figures and write the HTML page and Markdown summary."""
    dataset, version = parse_target(target)
    files = write_audit(warehouse, dataset, version, out_dir, parse_target(against) if against else None)
    return {"html": str(files.html), "markdown": str(files.markdown), "headline": files.headline,
            "markdown_text": files.markdown_text}


@flow(name="synthrank-audit")
def audit_flow(target: str, out_dir: str, warehouse: str, against: str | None = None) -> dict:
    """Audit ``DATASET[@N]`` (optionally against ``DATASET@M``) and publish the artifacts."""
    report = audit_report(warehouse, target, out_dir, against)
    dataset = parse_target(target)[0]
    create_table_artifact(table=report["headline"], key=artifact_key(dataset, "headline"),
                          description=f"Label-quality audit of {target}: headline figures with sample sizes")
    create_markdown_artifact(markdown=report["markdown_text"], key=artifact_key(dataset, "summary"),
                             description=f"Label-quality audit of {target}; full report: {report['html']}")
    return {"html": report["html"], "markdown": report["markdown"], "headline": report["headline"]}
