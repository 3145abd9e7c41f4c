"""The audit's "Against people" section: teacher-vs-human agreement from ``synthrank review``
(kept apart from flows/report.py, which only inserts it)."""

from __future__ import annotations

from flows.report import Section, Table
from warehouse.db import Warehouse
from warehouse.review_audit import human_agreement


def human_review_section(warehouse: Warehouse, dataset: str, version: int) -> Section:
    """Agreement per kind with sample sizes and 95% Wilson intervals, and sample error rates."""
    section = Section("human_review", "Against people (Label Studio review)")
    figures = human_agreement(warehouse, dataset, version)
    if not figures:
        section.available = False
        section.notes.append("no human judgments of this version: see `synthrank review push` and `pull`")
        return section
    section.notes.append("error rate (sample): items pushed with a random sample:N selection whose label "
                         "people changed; it estimates the share of wrong labels in the whole kind")
    section.tables.append(Table("teacher vs. human", ["kind", "figure", "value", "95% interval", "n"],
                                [[f.kind, f.name, f.value_text, f.interval_text, f"{f.n} {f.unit}"]
                                 for f in figures], key="human_review"))
    return section
