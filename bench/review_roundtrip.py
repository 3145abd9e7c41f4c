"""How long a human-review round trip takes against a real Label Studio: push N listwise items
(one batched import per project, as synthrank does), annotate them through the API, pull them
back, pull again (nothing new). Baseline in the same run: importing the same N tasks one
request each into a second project.

    PYTHONPATH=. /work/main/.venv/bin/python bench/review_roundtrip.py --items 300

Needs Label Studio in .venv-review (``make .venv-review/.installed``); starts and stops its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from generators.labelstudio import LABEL_CONFIGS, LabelStudio, task_data
from generators.review import pull_review, push_review
from tests.label_studio import label_studio_executable, running_label_studio
from tests.warehouse_support import listwise_row
from warehouse.db import Warehouse
from warehouse.versions import add_rows, begin_version, publish_version


def publish_rows(path: Path, count: int) -> list[dict]:
    rows = [{**listwise_row(i, size=10), "candidates": listwise_row(i, size=10)["initial_list"]}
            for i in range(count)]
    with Warehouse.open(path) as warehouse:
        version = begin_version(warehouse, "bench", {"dataset": "bench"}, ["snap-1"])
        add_rows(warehouse, "bench", version, "listwise", rows)
        publish_version(warehouse, "bench", version, {})
    return rows


def timed(label: str, work) -> object:
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"{label:<48} {seconds:8.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=300)
    args = parser.parse_args()
    executable = label_studio_executable()
    if executable is None:
        raise SystemExit("Label Studio is not installed: make .venv-review/.installed")
    with tempfile.TemporaryDirectory() as folder, running_label_studio(executable, Path(folder)) as server:
        warehouse = Path(folder) / "wh.duckdb"
        rows = publish_rows(warehouse, args.items)
        client = LabelStudio(server.url, server.token)
        print(f"{args.items} listwise items of 10 passages, Label Studio at {server.url}")
        baseline = client.create_project("baseline one by one", "bench", LABEL_CONFIGS["listwise"])
        timed(f"baseline: import {args.items} tasks, one request each",
              lambda: [client.import_tasks(baseline["id"], [{"data": task_data("listwise", row, None, {})}])
                       for row in rows])
        timed(f"push {args.items} items (review push, batched)",
              lambda: push_review(warehouse, "bench", 1, "sample:100000", client))
        timed("push again (nothing new)", lambda: push_review(warehouse, "bench", 1, "sample:100000", client))
        project = next(p for p in client.projects() if p["description"].startswith("synthrank review of bench@1"))
        tasks = client.tasks(project["id"])

        def annotate() -> None:
            for task in tasks:
                ids = [p["id"] for p in task["data"]["passages"]]
                client.annotate(task["id"], [{"from_name": "relevant", "value": {"choices": ids[:2]}},
                                             {"from_name": "ranking", "value": {"ranker": {"top": ids[:3]}}}])

        timed(f"annotate {len(tasks)} tasks through the API", annotate)
        first = timed(f"pull {len(tasks)} annotations", lambda: pull_review(warehouse, "bench", 1, client))
        second = timed("pull again (nothing new)", lambda: pull_review(warehouse, "bench", 1, client))
        print(f"first pull {first.counts}; second pull {second.counts}")


if __name__ == "__main__":
    main()
