"""What changed between two versions of a dataset: rows added, removed and changed, by kind.

A row keeps its ``row_id`` across versions when it comes from the same candidate list and
sample, so rows are matched by id. A matched row is *changed* when any field differs; the
change is a *label* change when one of the kind's label fields differs (for listwise the
ranking and positives; for kinds not listed here every data field counts), and a *verdict*
change when its filter verdicts differ. A row accepted in one version and rejected in the
other counts as added or removed, with the rejecting ``stage:reason`` shown.

    >>> from warehouse.exported import open_published
    >>> with open_published("out/synthrank.duckdb") as (store, _):
    ...     result = diff_versions(store, "my-listwise", 1, 2)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from warehouse.versions import LINEAGE_FIELDS

# The fields that are a kind's labels; a kind not listed here: every non-lineage field.
LABEL_FIELDS: dict[str, tuple[str, ...]] = {
    "listwise": ("final_list", "permutation", "relevant_docids"),
}
VERDICT_FIELD = "filter_verdicts"
HUMAN_FIELD = "human_labels"  # lineage of labels people set (synthrank review)


class VersionStore(Protocol):
    """What a diff reads (see ``warehouse.exported``: the warehouse file or its exports)."""

    def resolve_version(self, dataset: str, version: int | None = None) -> int: ...
    def kinds(self, dataset: str, version: int) -> list[str]: ...
    def load_rows(self, dataset: str, version: int, kind: str) -> list[dict]: ...
    def rejected(self, dataset: str, version: int, kind: str) -> dict[str, list[str]]: ...


@dataclass
class KindDiff:
    """The differences in one kind; ``examples`` holds a few of each sort of change."""

    kind: str
    rows_a: int
    rows_b: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    label_changed: list[str] = field(default_factory=list)
    verdict_changed: list[str] = field(default_factory=list)
    now_rejected: list[str] = field(default_factory=list)   # removed because B rejected them
    now_accepted: list[str] = field(default_factory=list)   # added although A rejected them
    human_changed: list[str] = field(default_factory=list)  # changed rows whose new labels came from people
    fields_changed: dict[str, int] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.rows_b - len(self.added) - len(self.changed)

    def summary(self) -> dict:
        return {"kind": self.kind, "rows_a": self.rows_a, "rows_b": self.rows_b, "added": len(self.added),
                "removed": len(self.removed), "changed": len(self.changed),
                "label_changed": len(self.label_changed), "verdict_changed": len(self.verdict_changed),
                "now_rejected": len(self.now_rejected), "now_accepted": len(self.now_accepted),
                "human_changed": len(self.human_changed), "unchanged": self.unchanged, "fields_changed": self.fields_changed}


@dataclass
class VersionDiff:
    dataset: str
    version_a: int
    version_b: int
    kinds: list[KindDiff]

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "a": self.version_a, "b": self.version_b,
                "kinds": [{**k.summary(), "examples": k.examples} for k in self.kinds]}


def diff_versions(store: VersionStore, dataset: str, version_a: int | None, version_b: int | None,
                  examples: int = 3) -> VersionDiff:
    """Compare two published versions of ``dataset`` kind by kind.

    ``version_a``/``version_b`` None means the latest published version. ``examples`` is how
    many rows of each sort (added, removed, label change, other change) to show per kind.
    """
    a = store.resolve_version(dataset, version_a)
    b = store.resolve_version(dataset, version_b)
    kinds = sorted(set(store.kinds(dataset, a)) | set(store.kinds(dataset, b)))
    return VersionDiff(dataset, a, b, [
        diff_rows(kind, _by_id(store.load_rows(dataset, a, kind)), _by_id(store.load_rows(dataset, b, kind)),
                  store.rejected(dataset, a, kind), store.rejected(dataset, b, kind), examples)
        for kind in kinds])


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["row_id"]: row for row in rows}


def diff_rows(kind: str, rows_a: dict[str, dict], rows_b: dict[str, dict],
              rejected_a: dict[str, list[str]] | None = None, rejected_b: dict[str, list[str]] | None = None,
              examples: int = 3) -> KindDiff:
    """The diff of one kind given its accepted rows (by row_id) and rejected row ids in A and B."""
    rejected_a, rejected_b = rejected_a or {}, rejected_b or {}
    result = KindDiff(kind, len(rows_a), len(rows_b))
    result.added = sorted(set(rows_b) - set(rows_a))
    result.removed = sorted(set(rows_a) - set(rows_b))
    result.now_accepted = [row_id for row_id in result.added if row_id in rejected_a]
    result.now_rejected = [row_id for row_id in result.removed if row_id in rejected_b]
    fields_changed: dict[str, int] = {}
    shown = {"added": 0, "removed": 0, "label": 0, "other": 0}

    def show(sort: str, example: dict) -> None:
        if shown[sort] < examples:
            shown[sort] += 1
            result.examples.append({"change": sort, **example})

    for row_id in result.added:
        show("added", {"row_id": row_id, "before": _state(row_id, rejected_a), "row": _brief(rows_b[row_id], kind)})
    for row_id in result.removed:
        show("removed", {"row_id": row_id, "after": _state(row_id, rejected_b), "row": _brief(rows_a[row_id], kind)})
    for row_id in sorted(set(rows_a) & set(rows_b)):
        before, after = rows_a[row_id], rows_b[row_id]
        if before == after:
            continue
        changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        if not changed:
            continue
        result.changed.append(row_id)
        for name in changed:
            fields_changed[name] = fields_changed.get(name, 0) + 1
        labels = [name for name in changed if _is_label(kind, name)]
        if labels:
            result.label_changed.append(row_id)
        if VERDICT_FIELD in changed:
            result.verdict_changed.append(row_id)
        if HUMAN_FIELD in changed and after.get(HUMAN_FIELD):
            result.human_changed.append(row_id)
        show("label" if labels else "other", {
            "row_id": row_id, "fields": {name: {"a": _clip(before.get(name)), "b": _clip(after.get(name))}
                                         for name in (labels or changed)}})
    result.examples.sort(key=lambda example: list(shown).index(example["change"]))
    result.fields_changed = dict(sorted(fields_changed.items(), key=lambda item: (-item[1], item[0])))
    return result


def _is_label(kind: str, name: str) -> bool:
    if kind in LABEL_FIELDS:
        return name in LABEL_FIELDS[kind]
    return name not in LINEAGE_FIELDS and name != "row_id"


def _state(row_id: str, rejected: dict[str, list[str]]) -> str:
    return f"rejected ({', '.join(rejected[row_id])})" if row_id in rejected else "absent"


def _brief(row: dict, kind: str) -> dict:
    """The identifying fields and labels of a row, for an example."""
    names = ["qid", "domain", *LABEL_FIELDS.get(kind, ())]
    return {name: _clip(row.get(name)) for name in names if name in row}


def _clip(value: Any, limit: int = 160) -> Any:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return value
    return text[:limit] + " …"
