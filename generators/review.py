"""Human review: push a selection of a version to Label Studio, pull the annotations back as
human judgments, and let a new build's rows take the people's labels over the teacher's.

- :func:`push_review` makes one project per kind of ``DATASET@N`` (found again by its
  description) and adds a task per selected item that the project does not hold yet.
- :func:`pull_review` stores every annotation of those projects as a judgment with its
  lineage; annotations that cannot be used are reported and skipped, and nothing is stored
  unless every project was read.
- :func:`override_rows` applies the latest judgment of each item to a build's rows: a listwise
  row takes the people's relevant passages and top ranking, a candidate judged relevant joins
  the positives (and one judged not relevant becomes a usable hard negative), and a trace with
  an incorrect answer or unacceptable reasoning is dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from generators.labelstudio import (LABEL_CONFIGS, AnnotationProblem, LabelStudio, LabelStudioError,
                                    parse_annotation, same_config, task_data)
from warehouse.audit import load_passage_texts
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.review import (Item, judgment_lineage, latest_judgments, pushed_tasks, record_tasks,
                              replace_staged_rows, select_items, selection_label, store_judgments)
from warehouse.versions import load_rows, resolve_version

HUMAN_STAGE = "human_review"  # the rejection stage of rows people dropped


def project_marker(dataset: str, version: int, kind: str) -> str:
    """The description that identifies a project as synthrank's review of one kind of a version."""
    return f"synthrank review of {dataset}@{version}, kind {kind}"


@dataclass
class PushReport:
    projects: dict[str, dict] = field(default_factory=dict)  # kind -> id, url, created, added, present


def push_review(warehouse_path: str | Path, dataset: str, version: int | None, selection: str,
                client: LabelStudio, kinds: list[str] | None = None, seed: int = 0) -> PushReport:
    """Create or update a Label Studio project per kind with a task per selected item.

    Items already in the project (same version, kind, row and item) are not added again.
    """
    with Warehouse.open(warehouse_path, read_only=True) as warehouse:  # a SQL selection cannot write
        version = resolve_version(warehouse, dataset, version)
        items = select_items(warehouse, dataset, version, selection, kinds, seed)
        texts = _passage_texts(warehouse, [item for item in items if item.kind == "listwise"])
    client.whoami()
    report, recorded = PushReport(), {}
    label = selection_label(selection)
    for kind in sorted({item.kind for item in items}):
        project, created = _project(client, dataset, version, kind)
        present = {_task_key(task["data"]): task["id"] for task in client.tasks(project["id"])
                   if isinstance(task["data"].get("synthrank"), dict)}
        new = [item for item in items if item.kind == kind and item.key not in present]
        payloads = [{"data": {**task_data(kind, item.row, item.negative, texts.get(item.row["snapshot_id"], {})),
                              "synthrank": _task_meta(dataset, version, item, label)}} for item in new]
        ids = client.import_tasks(project["id"], payloads) if payloads else []
        recorded[project["id"]] = [{**payload["data"]["synthrank"], "task_id": task_id}
                                   for payload, task_id in zip(payloads, ids)]
        report.projects[kind] = {"project_id": project["id"], "url": f"{client.url}/projects/{project['id']}",
                                 "created": created, "added": len(ids),
                                 "already_present": sum(item.kind == kind for item in items) - len(new)}
    with Warehouse.open(warehouse_path) as warehouse:
        for project_id, tasks in recorded.items():
            record_tasks(warehouse, client.url, project_id, tasks)
    return report


def _passage_texts(warehouse: Warehouse, items: list[Item]) -> dict[str, dict[str, str]]:
    """snapshot id -> docid -> passage text, for the passages listwise items show."""
    keys = {(item.row["snapshot_id"], docid) for item in items for docid in item.row["initial_list"]}
    texts: dict[str, dict[str, str]] = {}
    for (snapshot_id, docid), (title, text) in load_passage_texts(warehouse, keys).items():
        texts.setdefault(snapshot_id, {})[docid] = f"{title}\n{text}".strip()
    return texts


def _task_meta(dataset: str, version: int, item: Item, selection: str) -> dict:
    return {"dataset": dataset, "version": version, "kind": item.kind, "row_id": item.row_id,
            "item": item.item, "selection": selection, "content": item.content()}


def _task_key(data: dict) -> tuple[str, str, str]:
    meta = data["synthrank"]
    return meta.get("kind"), meta.get("row_id"), meta.get("item")


def _project(client: LabelStudio, dataset: str, version: int, kind: str) -> tuple[dict, bool]:
    """The review project of one kind of a version (created if missing); its labeling config
    must still be synthrank's."""
    marker = project_marker(dataset, version, kind)
    found = [p for p in client.projects() if p.get("description") == marker]
    if not found:
        title = f"{dataset}@{version} {kind}"
        return client.create_project(title if len(title) <= 50 else title[:49] + "…", marker,
                                     LABEL_CONFIGS[kind]), True
    _check_config(client, found[0], kind)
    return found[0], False


def _check_config(client: LabelStudio, project: dict, kind: str) -> None:
    if not same_config(project.get("label_config") or "", LABEL_CONFIGS[kind]):
        raise LabelStudioError(
            f"project {project['id']} ({project.get('title')!r}) at {client.url} has a labeling config that is "
            f"not synthrank's {kind} config (was it edited by hand?): its annotations cannot be read safely. "
            f"Restore the config in the project's settings, or delete the project and push again")


# --- pull ------------------------------------------------------------------------------------


@dataclass
class PullReport:
    counts: dict[str, int] = field(default_factory=dict)  # added, updated, unchanged
    skipped: list[str] = field(default_factory=list)  # why each unusable annotation or task was skipped
    projects: dict[str, int] = field(default_factory=dict)  # kind -> project id


def pull_review(warehouse_path: str | Path, dataset: str, version: int | None, client: LabelStudio,
                wait_seconds: float = 0.0) -> PullReport:
    """Read every annotation of the review projects of ``dataset@version`` and store them as
    human judgments in one transaction (reading them again changes nothing)."""
    client.whoami()
    report, judgments = PullReport(), []
    with Warehouse.open(warehouse_path, wait_seconds=wait_seconds) as warehouse:
        version = resolve_version(warehouse, dataset, version)
        markers = {project_marker(dataset, version, kind): kind for kind in LABEL_CONFIGS}
        projects = [(markers[p["description"]], p) for p in client.projects() if p.get("description") in markers]
        if not projects:
            raise InputError(f"no review project of {dataset}@{version} at {client.url}: run "
                             f"`synthrank review push {dataset}@{version}` first")
        users = client.users()
        for kind, project in sorted(projects, key=lambda found: found[0]):
            _check_config(client, project, kind)
            report.projects[kind] = project["id"]
            judgments += _project_judgments(warehouse, client, dataset, version, kind, project["id"], users, report)
        report.counts = store_judgments(warehouse, judgments)
    return report


def _project_judgments(warehouse: Warehouse, client: LabelStudio, dataset: str, version: int, kind: str,
                       project_id: int, users: dict[int, str], report: PullReport) -> list[dict]:
    tasks = client.tasks(project_id)
    on_server = {task["id"] for task in tasks}
    known_rows = _version_row_ids(warehouse, dataset, version, kind)
    for task_id, pushed in sorted(pushed_tasks(warehouse, client.url, project_id).items()):
        if task_id not in on_server:
            report.skipped.append(f"{kind} task {task_id} (row {pushed['row_id']}{_item_text(pushed['item'])}) "
                                  "was deleted on the server; judgments pulled from it before are kept")
    judgments = []
    for task in tasks:
        meta = task["data"].get("synthrank")
        where = f"{kind} task {task['id']}"
        if not isinstance(meta, dict) or (meta.get("dataset"), meta.get("version"), meta.get("kind")) != (
                dataset, version, kind):
            report.skipped.append(f"{where}: not a synthrank task of {dataset}@{version} {kind}")
            continue
        if meta.get("row_id") not in known_rows:
            report.skipped.append(f"{where}: row {meta.get('row_id')} is not in {dataset}@{version}")
            continue
        for annotation in task.get("annotations") or []:
            judgment = _judgment(client, project_id, kind, task, meta, annotation, users, report)
            if judgment is not None:
                judgments.append(judgment)
    return judgments


def _judgment(client: LabelStudio, project_id: int, kind: str, task: dict, meta: dict, annotation: dict,
              users: dict[int, str], report: PullReport) -> dict | None:
    where = f"{kind} task {task['id']} annotation {annotation['id']}"
    if annotation.get("was_cancelled"):
        report.skipped.append(f"{where}: skipped by the annotator")
        return None
    try:
        judgment = parse_annotation(kind, annotation.get("result") or [], task["data"])
    except AnnotationProblem as problem:
        report.skipped.append(f"{where}: {problem}")
        return None
    user = annotation.get("completed_by")
    user_id = user.get("id") if isinstance(user, dict) else user
    return {"server": client.url, "project_id": project_id, "task_id": task["id"],
            "annotation_id": annotation["id"], "dataset": meta["dataset"], "version": meta["version"],
            "kind": kind, "row_id": meta["row_id"], "item": meta.get("item") or "",
            "selection": meta.get("selection") or "", "content": meta.get("content") or "",
            "judgment": judgment, "annotator": f"{user_id}:{users.get(user_id, '')}",
            "annotated_at": _timestamp(annotation.get("updated_at") or annotation["created_at"])}


def _version_row_ids(warehouse: Warehouse, dataset: str, version: int, kind: str) -> set[str]:
    rows = warehouse.con.execute(
        "SELECT row_id FROM dataset_rows WHERE dataset = ? AND version = ? AND kind = ? UNION "
        "SELECT row_id FROM rejections WHERE dataset = ? AND version = ? AND kind = ?",
        [dataset, version, kind] * 2).fetchall()
    return {row_id for (row_id,) in rows}


def _timestamp(text: str) -> datetime:
    """A server time (ISO 8601, UTC) as a naive UTC datetime, as DuckDB TIMESTAMP stores it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def _item_text(item: str) -> str:
    return f", candidate {item}" if item else ""


# --- override --------------------------------------------------------------------------------


@dataclass
class Override:
    """What human judgments did to one kind's rows in a build."""

    kept: list[dict]  # every row that stays, changed or not
    changed: list[dict]  # the kept rows whose labels people changed
    dropped: list[tuple[dict, str]]  # (row, reason) for rows people rejected
    skipped: Counter = field(default_factory=Counter)  # judgments not applied, by reason
    annotators: set[str] = field(default_factory=set)


def override_rows(kind: str, rows: list[dict], judgments: dict[tuple[str, str, str], dict]) -> Override:
    """Apply the latest judgment of each item (``warehouse.review.latest_judgments``) to a kind's rows.

    A judgment applies only to the content it was made on (same query and passages; for a
    trace, the same reasoning and answer); otherwise it is counted in ``skipped``.
    """
    result = Override([], [], [])
    of_kind = {key: record for key, record in judgments.items() if key[0] == kind}
    by_row: dict[str, list[dict]] = {}
    for (_, row_id, _), record in of_kind.items():
        by_row.setdefault(row_id, []).append(record)
    present = {row["row_id"] for row in rows}
    result.skipped.update("row not accepted in this build" for row_id, records in by_row.items()
                          if row_id not in present for _ in records)
    for row in rows:
        records = by_row.get(row["row_id"], [])
        applied = _apply(kind, row, records, result) if records else None
        if applied is None:
            result.kept.append(row)
        elif applied["human_labels"].get("dropped"):
            result.dropped.append((applied, applied["human_labels"]["dropped"]))
        else:
            result.kept.append(applied)
            result.changed.append(applied)
    return result


def _apply(kind: str, row: dict, records: list[dict], result: Override) -> dict | None:
    """The row with its judgments applied (``human_labels.dropped`` says why people dropped
    it), or None when none applied."""
    usable = []
    for record in records:
        item = Item(kind, row["row_id"], record["item"], "accepted", row,
                    _negative(row, record["item"]) if kind == "negatives" else None)
        if kind == "negatives" and item.negative is None:
            result.skipped["candidate not in the row"] += 1
        elif record["content"] != item.content():
            result.skipped["judged content differs from this build's row"] += 1
        else:
            usable.append(record)
    if not usable:
        return None
    result.annotators.update(record["annotator"] for record in usable)
    return {"listwise": _listwise, "negatives": _negatives, "mixed_cot": _mixed_cot}[kind](row, usable)


def _negative(row: dict, docid: str) -> dict | None:
    return next((n for n in row.get("negatives", []) if n["docid"] == docid), None)


def _listwise(row: dict, records: list[dict]) -> dict:
    record = records[0]
    judged, teacher = record["judgment"], {name: row[name] for name in ("final_list", "permutation", "relevant_docids")}
    top = judged["ranking"]
    final = top + [d for d in row["final_list"] if d not in top] if top else row["final_list"]
    relevant = set(judged["relevant"])
    position = {docid: i for i, docid in enumerate(row["initial_list"], start=1)}
    changed = {**row, "final_list": final, "permutation": [position[d] for d in final],
               "relevant_docids": [d for d in row["candidates"] if d in relevant]}
    fields = [name for name in teacher if changed[name] != teacher[name]]
    return {**changed, "human_labels": {**judgment_lineage(record), "fields": fields,
                                        "teacher": {name: teacher[name] for name in fields}}}


def _negatives(row: dict, records: list[dict]) -> dict:
    negatives = [dict(n) for n in row["negatives"]]
    positives = list(row["positives"])
    judged = {}
    for record in records:
        negative = next(n for n in negatives if n["docid"] == record["item"])
        verdict = record["judgment"]["verdict"]
        judged[negative["docid"]] = {**judgment_lineage(record), "verdict": verdict,
                                     "teacher_verdict": negative.get("verdict"), "status": negative["status"]}
        negative.update(verdict=verdict, verdict_source="human")
        positives = [p for p in positives if p["docid"] != negative["docid"] or p["label_source"] == "qrels"]
        if verdict == "relevant":
            positives.append({"docid": negative["docid"], "text": negative["text"], "score": negative["score"],
                              "label_source": "human"})
        elif negative["status"] != "hard_negative":
            negative["status"] = "hard_negative"  # a person cleared the suspicion: train on it
    return {**row, "negatives": negatives, "positives": positives,
            "human_labels": {"fields": ["negatives", "positives"], "candidates": judged}}


def _mixed_cot(row: dict, records: list[dict]) -> dict:
    record = records[0]
    judged = record["judgment"]
    labels = {**judgment_lineage(record), **judged, "teacher": {"answer_correct": row.get("answer_correct")}}
    if judged["answer"] == "incorrect" or judged["reasoning"] == "unacceptable":
        dropped = "answer_incorrect" if judged["answer"] == "incorrect" else "reasoning_unacceptable"
        return {**row, "human_labels": {**labels, "fields": [], "dropped": dropped}}
    return {**row, "answer_correct": True, "human_labels": {**labels, "fields": ["answer_correct"]}}


def apply_human_judgments(warehouse: Warehouse, dataset: str, version: int, kinds: list[str]) -> dict:
    """Let the latest human judgment of every item override the teacher's labels in the staged
    ``dataset@version``; rows people dropped move to the rejections (stage ``human_review``).

    Returns what the version's manifest records under ``human_review``: per kind the rows
    changed and dropped and the judgments not applied (by reason), and the annotators.
    """
    judgments = latest_judgments(warehouse, dataset)
    summary: dict = {"judgments": len(judgments), "kinds": {}, "annotators": set()}
    for kind in (kind for kind in kinds if kind in LABEL_CONFIGS):
        result = override_rows(kind, load_rows(warehouse, dataset, version, kind), judgments)
        replace_staged_rows(warehouse, dataset, version, kind, result.changed,
                            [(row, HUMAN_STAGE, reason, None) for row, reason in result.dropped])
        summary["kinds"][kind] = {"rows_changed": len(result.changed), "rows_dropped": len(result.dropped),
                                  "not_applied": dict(sorted(result.skipped.items()))}
        summary["annotators"] |= result.annotators
    summary["annotators"] = sorted(summary["annotators"])
    return summary
