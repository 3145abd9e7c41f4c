"""Build specs the tests write more than once."""

from __future__ import annotations

from pathlib import Path

import yaml


def cisi_listwise_spec(path: Path, cisi: Path, dataset: str, filters: list[dict], teacher_url: str | None = None,
                       queries: int | None = None, **settings) -> str:
    """A listwise build of the CISI folder ``cisi`` (bm25 k = window = 4, two samples per
    list, ``filters`` on its rows), written to ``path``; ``settings`` adds top-level keys."""
    source = {"name": "cisi", "domain": "library-science", "path": str(cisi)}
    spec = {
        "dataset": dataset, "output": str(path.parent / "out"), **settings,
        "sources": [{**source, **({"queries": queries} if queries else {})}],
        "candidates": {"method": "bm25", "k": 4}, "listwise": {"window": 4, "samples": 2},
        "filters": {"listwise": filters},
    }
    if teacher_url:
        spec["teacher"] = {"backend": "openai", "base_url": teacher_url, "model": "fake-teacher"}
    path.write_text(yaml.safe_dump(spec))
    return str(path)
