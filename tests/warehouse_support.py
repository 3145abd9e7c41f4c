"""Helpers for the warehouse tests: listwise-shaped rows, one-call versions, and a writer
process (``python -m tests.warehouse_support``) that other tests run, hold and kill.

The writer prints one line per step (``OPEN pid``, ``STAGED``, ``PUBLISHING``,
``PUBLISHED n``) so a test can act at a known point.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time

from warehouse.calls import CallRecord, CallStore
from warehouse.db import Warehouse
from warehouse.versions import add_rejections, add_rows, begin_version, publish_version

SAMPLING = {"temperature": 0.3, "top_p": 0.9, "max_tokens": 160, "seed": 7}


def call_key(row_id: str, salt: str = "") -> str:
    return hashlib.sha256(f"{row_id}:{salt}".encode()).hexdigest()


def listwise_row(index: int, salt: str = "", size: int = 4) -> dict:
    """A listwise row shaped like generators.listwise.build_row's; ``salt`` varies the ranking."""
    docids = [f"d{index}-{j}" for j in range(size)]
    order = list(range(1, size + 1))
    random.Random(f"{index}:{salt}").shuffle(order)
    row_id = hashlib.sha256(f"list-{index}:0".encode()).hexdigest()[:16]
    return {
        "row_id": row_id, "list_id": f"list-{index}", "qid": f"q{index}", "domain": "test",
        "query": f"query {index}", "initial_list": docids, "final_list": [docids[i - 1] for i in order],
        "permutation": order, "reasoning": f"because {salt}", "answer": " > ".join(f"[{i}]" for i in order),
        "relevant_docids": [], "sample_index": 0, "finish_reason": "stop", "reason": None,
        "snapshot_id": "snap-1", "teacher_model": "fake-teacher", "teacher_backend": "openai",
        "prompt_name": "listwise_reasonrank", "prompt_version": "0123456789ab", "sampling": SAMPLING,
        "call_keys": [call_key(row_id, salt)],
    }


def record_calls(warehouse: Warehouse, rows: list[dict]) -> None:
    """Store a teacher call for every row's call key, as the runner would."""
    CallStore(warehouse).record_many([
        CallRecord(key, row["teacher_model"], row["teacher_backend"], 0,
                   {"messages": [{"role": "system", "content": "rank the passages"},
                                 {"role": "user", "content": f"{row['query']}\n[1] {row['initial_list'][0]}"}],
                    **row["sampling"]},
                   {"status": "ok", "content": row["answer"], "reasoning": row["reasoning"],
                    "finish_reason": "stop", "prompt_tokens": 100, "completion_tokens": 20,
                    "error": None, "attempts": 1, "latency_ms": 5.0})
        for row in rows for key in row["call_keys"]])


def publish(warehouse: Warehouse, dataset: str, rows: list[dict], rejected: list[tuple] = (),
            spec: dict | None = None, kind: str = "listwise") -> int:
    """A published version of ``rows`` (and rejections as (row, stage, reason, score))."""
    record_calls(warehouse, rows + [row for row, *_ in rejected])
    version = begin_version(warehouse, dataset, spec or {"dataset": dataset}, ["snap-1"])
    add_rows(warehouse, dataset, version, kind, rows)
    add_rejections(warehouse, dataset, version, kind, list(rejected))
    publish_version(warehouse, dataset, version, {"teachers": [], "prompts": {}})
    return version


def _say(*words: object) -> None:
    print(*words, flush=True)


def main() -> None:
    """A writer: open (waiting up to --wait), stage --rows rows, hold until told, publish."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--dataset", default="ds")
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--salt", default="")
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--hold-until", default=None, help="hold the file (staged) until this path exists")
    args = parser.parse_args()
    with Warehouse.open(args.warehouse, wait_seconds=args.wait) as warehouse:
        _say("OPEN", os.getpid())
        rows = [listwise_row(i, args.salt) for i in range(args.rows)]
        version = begin_version(warehouse, args.dataset, {"dataset": args.dataset, "salt": args.salt}, ["snap-1"])
        add_rows(warehouse, args.dataset, version, "listwise", rows)
        _say("STAGED", version)
        while args.hold_until and not os.path.exists(args.hold_until):
            time.sleep(0.1)
        _say("PUBLISHING", version)
        publish_version(warehouse, args.dataset, version, {"salt": args.salt})
        _say("PUBLISHED", version)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # the test reads the message
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
