"""What stages share: the held warehouse, and the result each stage reports."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TypedDict

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
