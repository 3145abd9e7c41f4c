"""What stages share: the held warehouse, and the result each stage reports."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TypedDict

from generators.teachers import TeacherBackend, make_backend
from warehouse.db import Warehouse

_HELD: dict[Path, Warehouse] = {}


class StageResult(TypedDict):
    """What a stage reports to the build summary and the version manifest."""

    kind: str
    attempted: int
    accepted: int
    rejections: dict[str, int]  # "stage:reason" -> rows
    filters: list[dict]  # each filter step: name, parameters, rows seen / kept / rejected / flagged
    teachers: list[dict]  # backend, model, calls made/reused/failed, tokens
    prompts: dict[str, str]  # prompt name -> version


@contextmanager
def hold_warehouse(path: Path, wait_seconds: float = 0.0) -> Iterator[Warehouse]:
    """Open the warehouse for writing for the duration of a flow run (one writer per file)."""
    warehouse = Warehouse.open(path, wait_seconds=wait_seconds)
    _HELD[path] = warehouse
    try:
        yield warehouse
    finally:
        del _HELD[path]
        warehouse.close()


def warehouse_cursor(path: Path) -> Warehouse:
    """A cursor on the held warehouse, for use in a task (possibly on another thread)."""
    held = _HELD[path]
    return Warehouse(held.con.cursor(), held.path, read_only=False)


def stage_backend(spec) -> TeacherBackend:
    """The teacher a stage calls: directly from the flow process, or with ``runner: dask`` in
    shards on the workers (the flow process still records every answer)."""
    if spec.runner.kind == "dask":
        from flows.shards import ShardedBackend

        return ShardedBackend(spec.teacher, spec.runner.shard_size)
    return make_backend(spec.teacher)
