"""Human review in the warehouse: which items of a version to show people, the tasks they
became, and the judgments read back (tables ``review_tasks`` and ``human_judgments``).

An *item* is what one annotator task is about: a whole ``listwise`` or ``mixed_cot`` row
(``item`` is ``''``), or one mined candidate of a ``negatives`` row (``item`` is its docid).
Selections (``select_items``):

- ``disputed``: accepted items a filter flagged, near-misses (a ``consistency_ndcg`` or
  ``consistency_agreement`` score less than ``NEAR_MISS`` above the threshold the version used),
  negatives the judge called relevant or could not judge, and mixed-CoT traces whose answer
  no reference could check;
- ``rejected``: rows a validation step or filter removed;
- ``suspected_false_negatives``: mined candidates set aside as possible positives;
- ``sample:N``: N accepted items per kind drawn at random (seeded), for an unbiased error rate;
- anything else: a SQL predicate over the items, columns ``kind, row_id, item, qid, domain,
  status`` (accepted | rejected), ``stage, reason, data, lineage`` (JSON) and ``negative``
  (the candidate's JSON, negatives only), e.g. ``kind = 'listwise' AND domain = 'law'``.
  It runs on a read-only connection.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any

import duckdb

from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.versions import add_rejections, add_rows

REVIEW_KINDS = ("listwise", "negatives", "mixed_cot")
NAMED_SELECTIONS = ("disputed", "rejected", "suspected_false_negatives", "sample:N")
NEAR_MISS = 0.1  # how far above a consistency threshold a kept score still counts as disputed
_THRESHOLDS = {"consistency_ndcg": "alpha", "consistency_agreement": "min_tau"}

# One line per item of a version: its rows (accepted and rejected), negatives unnested.
_ITEMS_SQL = """
WITH review_rows AS (
    SELECT kind, row_id, qid, domain, 'accepted' AS status, NULL AS stage, NULL AS reason, data, lineage
    FROM dataset_rows WHERE dataset = $dataset AND version = $version AND kind IN ('listwise', 'mixed_cot')
    UNION ALL
    SELECT kind, row_id, data->>'qid', data->>'domain', 'rejected', stage, reason, data, lineage
    FROM rejections WHERE dataset = $dataset AND version = $version AND kind IN ('listwise', 'mixed_cot')
), negative_rows AS (
    SELECT row_id, qid, domain, 'accepted' AS status, NULL AS stage, NULL AS reason, data, lineage
    FROM dataset_rows WHERE dataset = $dataset AND version = $version AND kind = 'negatives'
    UNION ALL
    SELECT row_id, data->>'qid', data->>'domain', 'rejected', stage, reason, data, lineage
    FROM rejections WHERE dataset = $dataset AND version = $version AND kind = 'negatives'
), review_items AS (
    SELECT kind, row_id, '' AS item, qid, domain, status, stage, reason, data, lineage, NULL::JSON AS negative
    FROM review_rows
    UNION ALL
    SELECT 'negatives', row_id, json_extract_string(negative, '$.docid'), qid, domain, status, stage, reason,
           data, lineage, negative
    FROM (SELECT *, unnest(json_extract(data, '$.negatives[*]')) AS negative FROM negative_rows)
)
SELECT kind, row_id, item, qid, domain, status, stage, reason, data, lineage, negative FROM review_items
WHERE ({predicate}) ORDER BY kind, row_id, item
"""


@dataclass
class Item:
    """One thing to review: a row of a version (and a candidate of it, for negatives)."""

    kind: str
    row_id: str
    item: str
    status: str  # accepted | rejected
    row: dict  # data and lineage merged
    negative: dict | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.row_id, self.item

    def content(self) -> str:
        """A fingerprint of what the annotator is shown (and what a judgment is about)."""
        shown = {"listwise": ("query", "initial_list"), "mixed_cot": ("question", "reasoning", "answer"),
                 "negatives": ("query",)}[self.kind]
        payload = [self.row.get(name) for name in shown] + [self.item]
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()[:16]


def select_items(warehouse: Warehouse, dataset: str, version: int, selection: str,
                 kinds: list[str] | None = None, seed: int = 0) -> list[Item]:
    """The items of ``dataset@version`` a selection names (see the module doc), in the given kinds."""
    kinds = list(kinds or REVIEW_KINDS)
    unknown = set(kinds) - set(REVIEW_KINDS)
    if unknown:
        raise InputError(f"--kind {sorted(unknown)[0]!r}: review covers {', '.join(REVIEW_KINDS)}")
    if selection.startswith("sample:"):
        return _sample(_load_items(warehouse, dataset, version, "status = 'accepted'", kinds),
                       _sample_size(selection), seed)
    if selection == "rejected":
        return _load_items(warehouse, dataset, version, "status = 'rejected'", kinds)
    if selection == "suspected_false_negatives":
        return _load_items(warehouse, dataset, version, "status = 'accepted' AND kind = 'negatives' AND "
                           "json_extract_string(negative, '$.status') = 'suspected_false_negative'", kinds)
    if selection == "disputed":
        thresholds = _thresholds(warehouse, dataset, version)
        return [item for item in _load_items(warehouse, dataset, version, "status = 'accepted'", kinds)
                if is_disputed(item, thresholds.get(item.kind, {}))]
    if ";" in selection:
        raise InputError(f"--select {selection!r}: a SQL predicate is one expression, without ';'")
    return _load_items(warehouse, dataset, version, selection, kinds)


def selection_label(selection: str) -> str:
    """How a selection is recorded on its tasks: its name, or ``sql:<predicate>``."""
    named = selection in NAMED_SELECTIONS or selection.startswith("sample:")
    return selection if named else f"sql:{selection}"


def _sample_size(selection: str) -> int:
    size = selection.partition(":")[2]
    if not size.isdigit() or int(size) < 1:
        raise InputError(f"--select {selection!r}: expected sample:N with N a positive whole number")
    return int(size)


def judged_items(warehouse: Warehouse, dataset: str, version: int, keys: set[tuple[str, str, str]]) -> dict:
    """(kind, row_id, item) -> Item of ``dataset@version`` for the given keys (missing ones left out)."""
    items = _load_items(warehouse, dataset, version, "row_id IN (SELECT unnest($row_ids))", list(REVIEW_KINDS),
                        {"row_ids": sorted({row_id for _, row_id, _ in keys})})
    return {item.key: item for item in items if item.key in keys}


def _load_items(warehouse: Warehouse, dataset: str, version: int, predicate: str, kinds: list[str],
                params: dict | None = None) -> list[Item]:
    try:
        rows = warehouse.con.execute(_ITEMS_SQL.format(predicate=predicate),
                                     {"dataset": dataset, "version": version, **(params or {})}).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"--select {predicate!r} is not a predicate over the review items "
                         f"(kind, row_id, item, qid, domain, status, stage, reason, data, lineage, negative): "
                         f"{str(exc).splitlines()[0]}") from None
    items: dict[tuple, Item] = {}
    for kind, row_id, item, _, _, status, _, _, data, lineage, negative in rows:
        if kind in kinds:  # a row rejected by several stages is one item
            items.setdefault((kind, row_id, item), Item(
                kind, row_id, item, status, {**json.loads(data), **json.loads(lineage)},
                json.loads(negative) if negative else None))
    return list(items.values())


def _sample(items: list[Item], size: int, seed: int) -> list[Item]:
    """``size`` items of each kind, drawn with ``random.Random(seed)`` (all of a smaller kind)."""
    picked = []
    for kind in REVIEW_KINDS:
        of_kind = [item for item in items if item.kind == kind]
        picked += sorted(random.Random(f"{seed}:{kind}").sample(of_kind, min(size, len(of_kind))),
                         key=lambda item: item.key)
    return picked


def _thresholds(warehouse: Warehouse, dataset: str, version: int) -> dict[str, dict[str, float]]:
    """kind -> filter name -> the threshold its kept scores were held to, from the manifest."""
    row = warehouse.fetch_one("SELECT manifest FROM dataset_versions WHERE dataset = ? AND version = ?",
                              [dataset, version])
    if row is None:
        raise InputError(f"{dataset}@{version} is not a version in {warehouse.path}")
    steps = json.loads(row[0]).get("filters", {})
    return {kind: {step["step"]: step["params"][_THRESHOLDS[step["name"]]]
                   for step in chain if step["name"] in _THRESHOLDS}
            for kind, chain in steps.items()}


def is_disputed(item: Item, thresholds: dict[str, float]) -> bool:
    """Whether an accepted item belongs to the ``disputed`` selection (see the module doc)."""
    for label, verdict in (item.row.get("filter_verdicts") or {}).items():
        if verdict.get("keep") and verdict.get("reason"):
            return True  # a flag
        score, threshold = verdict.get("score"), thresholds.get(label)
        if score is not None and threshold is not None and score < threshold + NEAR_MISS:
            return True
    if item.kind == "negatives":
        negative = item.negative or {}
        judged = negative.get("judge_model") is not None
        return negative.get("verdict") == "relevant" or (judged and negative.get("verdict") is None)
    if item.kind == "mixed_cot":
        return item.row.get("answer_correct") is None  # no reference answer checked it
    return False


# --- tasks and judgments -----------------------------------------------------------------


def record_tasks(warehouse: Warehouse, server: str, project_id: int, tasks: list[dict]) -> None:
    """Remember pushed tasks (``task_id``, ``dataset``, ``version``, ``kind``, ``row_id``,
    ``item``, ``selection``, ``content``); a task already recorded is left as it is."""
    with warehouse.transaction() as con:
        for task in tasks:
            con.execute(
                "INSERT OR IGNORE INTO review_tasks (server, project_id, task_id, dataset, version, kind, row_id,"
                " item, selection, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [server, project_id, task["task_id"], task["dataset"], task["version"], task["kind"],
                 task["row_id"], task["item"], task["selection"], task["content"]])


def pushed_tasks(warehouse: Warehouse, server: str, project_id: int) -> dict[int, dict]:
    """task id -> what was pushed as that task, for one project."""
    rows = warehouse.con.execute(
        "SELECT task_id, kind, row_id, item FROM review_tasks WHERE server = ? AND project_id = ?",
        [server, project_id]).fetchall()
    return {task_id: {"kind": kind, "row_id": row_id, "item": item} for task_id, kind, row_id, item in rows}


_JUDGMENT_COLUMNS = ("server", "project_id", "task_id", "annotation_id", "dataset", "version", "kind", "row_id",
                     "item", "selection", "content", "judgment", "annotator", "annotated_at")


def store_judgments(warehouse: Warehouse, judgments: list[dict]) -> dict[str, int]:
    """Store annotations as human judgments in one transaction: a new annotation is added, an
    annotation updated on the server since it was last read replaces its judgment, and one read
    before unchanged is left alone. Returns the counts ``added``, ``updated``, ``unchanged``."""
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    with warehouse.transaction() as con:
        for judgment in judgments:
            values = [judgment[name] if name != "judgment" else json.dumps(judgment[name], sort_keys=True)
                      for name in _JUDGMENT_COLUMNS]
            stored = con.execute(
                "SELECT judgment, annotated_at, annotator FROM human_judgments "
                "WHERE server = ? AND project_id = ? AND annotation_id = ?",
                [judgment["server"], judgment["project_id"], judgment["annotation_id"]]).fetchall()
            if stored and _same_judgment(stored[0], judgment):
                counts["unchanged"] += 1
                continue
            counts["updated" if stored else "added"] += 1
            con.execute(f"INSERT OR REPLACE INTO human_judgments ({', '.join(_JUDGMENT_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(_JUDGMENT_COLUMNS))})", values)
    return counts


def _same_judgment(stored: tuple, judgment: dict) -> bool:
    value, annotated_at, annotator = stored
    return (json.loads(value) == judgment["judgment"] and annotator == judgment["annotator"]
            and annotated_at == judgment["annotated_at"])


def latest_judgments(warehouse: Warehouse, dataset: str) -> dict[tuple[str, str, str], dict]:
    """(kind, row_id, item) -> the most recent human judgment of it over every version of
    ``dataset`` (row ids are stable across versions), with its lineage."""
    rows = warehouse.con.execute(
        f"SELECT {', '.join(_JUDGMENT_COLUMNS)} FROM human_judgments WHERE dataset = ? "
        "QUALIFY row_number() OVER (PARTITION BY kind, row_id, item "
        "ORDER BY annotated_at DESC, annotation_id DESC) = 1", [dataset]).fetchall()
    judgments = {}
    for row in rows:
        record = dict(zip(_JUDGMENT_COLUMNS, row))
        record["judgment"] = json.loads(record["judgment"])
        judgments[(record["kind"], record["row_id"], record["item"])] = record
    return judgments


def judgments_fingerprint(warehouse: Warehouse, dataset: str) -> str:
    """A fingerprint of every human judgment of ``dataset`` (a scheduled build's input)."""
    return warehouse.fetch_one(
        "SELECT coalesce(md5(string_agg(server || ':' || project_id || ':' || annotation_id || ':' || "
        "annotated_at, ',' ORDER BY server, project_id, annotation_id)), '') FROM human_judgments "
        "WHERE dataset = ?", [dataset])[0]


def judgments_of_version(warehouse: Warehouse, dataset: str, version: int) -> list[dict]:
    """Every human judgment made on ``dataset@version`` (one per annotation), oldest first (none
    in a warehouse written before review existed and opened read-only)."""
    if not warehouse.fetch_one("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'human_judgments'")[0]:
        return []
    rows = warehouse.con.execute(
        f"SELECT {', '.join(_JUDGMENT_COLUMNS)} FROM human_judgments WHERE dataset = ? AND version = ? "
        "ORDER BY annotated_at, annotation_id", [dataset, version]).fetchall()
    return [{**dict(zip(_JUDGMENT_COLUMNS, row)), "judgment": json.loads(row[_JUDGMENT_COLUMNS.index("judgment")])}
            for row in rows]


def judgment_lineage(record: dict) -> dict[str, Any]:
    """What a row's ``human_labels`` lineage says about one judgment (never a token)."""
    return {"annotator": record["annotator"], "annotated_at": str(record["annotated_at"]),
            "server": record["server"], "project_id": record["project_id"], "task_id": record["task_id"],
            "annotation_id": record["annotation_id"], "judged_version": record["version"],
            "selection": record["selection"]}


def replace_staged_rows(warehouse: Warehouse, dataset: str, version: int, kind: str, changed: list[dict],
                        dropped: list[tuple[dict, str, str, float | None]]) -> None:
    """In a building version, replace rows by their ``changed`` versions and move ``dropped``
    rows (row, stage, reason, score) to the rejections, in one transaction."""
    row_ids = [row["row_id"] for row in changed] + [row["row_id"] for row, *_ in dropped]
    if not row_ids:
        return
    with warehouse.transaction() as con:
        con.execute("DELETE FROM dataset_rows WHERE dataset = ? AND version = ? AND kind = ? "
                    "AND row_id IN (SELECT unnest(?))", [dataset, version, kind, row_ids])
        add_rows(warehouse, dataset, version, kind, changed)
        add_rejections(warehouse, dataset, version, kind, dropped)
