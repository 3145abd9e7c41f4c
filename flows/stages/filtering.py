"""The spec's filter chains, applied to each stage's rows before they are staged.

A spec declares a chain per kind::

    filters:
      listwise:
        - {name: consistency_ndcg, alpha: 0.4}
        - {name: injection, exclude: true}
        - {name: minhash_dedup, key: query, threshold: 0.8, against_published: true}
        - {name: contamination, eval_sets: [../evals/trec-dl]}

Parameters that are data, not settings, are filled in here: ``injection`` gets the passages
of the build's snapshots (and with ``judge: teacher`` a judge that asks the build's teacher), ``contamination`` gets its paths resolved against the spec file,
and a dedup filter with ``against_published: true`` gets the texts of the dataset's
published rows, so a new version adds no row an earlier one had.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from filters.base import Filter, build_chain, run_chain
from filters.text import key_text
from flows.spec import BuildSpec
from flows.stages.common import stage_backend
from generators.injection_judge import InjectionJudge
from generators.teachers import TeacherRunner
from prompts import load_prompt
from warehouse.calls import CallStore
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.snapshots import load_passages
from warehouse.versions import add_rejections, add_rows, list_versions, row_batches

DEDUP_FILTERS = {"exact_dedup", "minhash_dedup", "semantic_dedup"}


def filter_chain(spec: BuildSpec, warehouse: Warehouse, kind: str, snapshot_ids: list[str]) -> list[Filter]:
    """The kind's chain from the spec, with its data-valued parameters supplied."""
    specs = [_with_data(dict(item), spec, warehouse, kind, snapshot_ids)
             for item in spec.filters.get(kind, [])]
    return build_chain(specs)


def _with_data(item: dict[str, Any], spec: BuildSpec, warehouse: Warehouse, kind: str,
               snapshot_ids: list[str]) -> dict[str, Any]:
    if item["name"] == "injection" and "passages" not in item and kind != "passages":
        item["passages"] = {(sid, docid): f"{title}\n{text}".strip()
                            for sid in snapshot_ids
                            for docid, (title, text) in load_passages(warehouse, sid).items()}
    if item["name"] == "injection" and "judge" in item:
        item["judge"] = _injection_judge(spec, warehouse, item["judge"])
    if item["name"] == "contamination":
        item["eval_sets"] = [str(spec.resolve(path)) if isinstance(path, str) else path
                             for path in item.get("eval_sets", [])]
    if item["name"] in DEDUP_FILTERS and item.pop("against_published", False):
        item["seen"] = _published_texts(warehouse, spec.dataset, kind, item.get("key", "query"))
    return item


def _injection_judge(spec: BuildSpec, warehouse: Warehouse, choice: str) -> InjectionJudge:
    """``judge: teacher`` (or ``teacher-constrained``, with a yes/no grammar) asks the build's
    teacher about every passage the heuristics matched."""
    if choice not in ("teacher", "teacher-constrained"):
        raise InputError(f"filters: injection judge must be 'teacher' or 'teacher-constrained', got {choice!r}")
    runner = TeacherRunner(stage_backend(spec), CallStore(warehouse))
    return InjectionJudge(runner, load_prompt("injection_judge"), spec.sampling,
                          constrained=choice == "teacher-constrained")


def _published_texts(warehouse: Warehouse, dataset: str, kind: str, key) -> dict[str, str]:
    """row label -> compared text, over every published version of the dataset (read in
    batches: only the texts are held, not the rows)."""
    seen = {}
    for version in list_versions(warehouse, dataset):
        if version["status"] == "published":
            for rows in row_batches(warehouse, dataset, version["version"], kind):
                seen.update((f"v{version['version']}:{row['row_id']}", key_text(row, key)) for row in rows)
    return seen


def stage_rows(spec: BuildSpec, warehouse: Warehouse, version: int, kind: str, snapshot_ids: list[str],
               accepted: list[dict], rejected: list[tuple[dict, str, str, float | None]],
               extra_rows: Callable[[list[dict]], list[dict]] | None = None) -> dict:
    """Run the kind's filter chain over the accepted rows, then stage the rows it kept (and
    the rows ``extra_rows`` makes from them, e.g. consensus rows) and every rejection
    (validation's and the filters', each with its filter, reason and score).

    Returns the counts a ``StageResult`` reports: attempted, accepted, rejections, filters.
    """
    stager = RowStager(spec, warehouse, version, kind, snapshot_ids, extra_rows)
    stager.add(accepted, rejected)
    return stager.result()


class RowStager:
    """Stages a stage's rows chunk by chunk: ``add`` each chunk, then ``result``.

    Each chunk is filtered and staged as it comes, so a stage's memory follows its chunk,
    not its number of queries: every filter judges a row alone or with the other samples
    of its list, which a chunk of whole lists holds, except dedup, which compares a row
    with the rows kept before it: a dedup filter runs as ``streaming()``, carrying from
    chunk to chunk only the hashes, signatures or embeddings of the rows it kept, so the
    verdicts are those of one run over every row. ``extra_rows`` makes more rows from the
    kept rows of a chunk (consensus rows: one per list, whose samples a chunk holds whole).
    """

    def __init__(self, spec: BuildSpec, warehouse: Warehouse, version: int, kind: str, snapshot_ids: list[str],
                 extra_rows: Callable[[list[dict]], list[dict]] | None = None):
        self.spec, self.warehouse, self.version, self.kind = spec, warehouse, version, kind
        self.extra_rows = extra_rows
        self.chain = [f.streaming() if f.name in DEDUP_FILTERS else f
                      for f in filter_chain(spec, warehouse, kind, snapshot_ids)]
        self.totals = {"attempted": 0, "accepted": 0, "rejections": Counter(), "filters": None}

    def result(self) -> dict:
        """Counts over every chunk: attempted, accepted, rejections, filters (per step)."""
        if self.totals["filters"] is None:  # no chunk came: the chain's steps, counted 0
            self.add([], [])
        return {**self.totals, "rejections": dict(self.totals["rejections"])}

    def add(self, accepted: list[dict], rejected: list[tuple[dict, str, str, float | None]]) -> None:
        """Filter one chunk's accepted rows and stage them with the chunk's rejections."""
        result = run_chain(self.chain, accepted)
        for row, verdicts in zip(result.kept, result.verdicts):
            row["filter_verdicts"] = {label: {"keep": v.keep, "reason": v.reason, "score": v.score}
                                      for label, v in verdicts.items()}
        filtered = [(r.row, r.filter, r.reason, r.score) for r in result.rejected]
        staged = result.kept + (self.extra_rows(result.kept) if self.extra_rows else [])
        add_rows(self.warehouse, self.spec.dataset, self.version, self.kind, staged)
        add_rejections(self.warehouse, self.spec.dataset, self.version, self.kind, rejected + filtered)
        totals = self.totals
        totals["attempted"] += len(accepted) + len(rejected)
        totals["accepted"] += len(staged)
        totals["rejections"].update(f"{stage}:{_reason_class(reason)}"
                                    for _, stage, reason, _ in rejected + filtered)
        totals["filters"] = _add_steps(totals["filters"], result.steps)


def _add_steps(total: list[dict] | None, steps: list[dict]) -> list[dict]:
    """Per-step counts of two chunks added up (the steps are the same chain's)."""
    if total is None:
        return steps
    counts = ("seen", "kept", "rejected", "flagged")
    return [{**a, **{name: a[name] + b[name] for name in counts}} for a, b in zip(total, steps)]


def _reason_class(reason: str) -> str:
    """The reason without its per-row detail (``duplicate_of:<row>`` -> ``duplicate_of``)."""
    return reason.split(":", 1)[0]
