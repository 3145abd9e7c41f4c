"""Candidate lists from a retriever's TREC run file (Pyserini, Anserini, BRIGHT baselines, ...).

A run file has six whitespace-separated columns per line, ``qid Q0 docid rank score tag``.
Every query and passage id must belong to the snapshot; a malformed line or an unknown id is
an error naming the line. Each query's list is ordered by score (highest first, ties by the
file's rank, then docid), as trec_eval orders it, and cut to ``k``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from warehouse.db import Warehouse
from warehouse.errors import InputError

Ranked = dict[str, list[tuple[str, float]]]


@lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def run_retriever_id(path: str, k: int) -> str:
    """Stored lists are named by the run file's content, so an edited run is read again."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"candidates.path: run file {path} not found")
    stat = file.stat()
    return f"run:k={k}:sha256={_file_digest(str(file), stat.st_mtime_ns, stat.st_size)}"


def read_run(path: str | Path, qids: set[str], docids: set[str], k: int) -> Ranked:
    """qid -> [(docid, score), ...] best first, at most ``k`` each, validated against the ids."""
    path = Path(path)
    entries: dict[str, list[tuple[float, int, str]]] = {}
    seen: set[tuple[str, str]] = set()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputError(f"{where}: not valid UTF-8") from None
            if not line:
                continue
            cols = line.split()
            if len(cols) != 6:
                raise InputError(f"{where}: expected 6 columns 'qid Q0 docid rank score tag', got {len(cols)}")
            qid, _, docid, rank, score, _ = cols
            try:
                rank_value, score_value = int(rank), float(score)
            except ValueError:
                raise InputError(f"{where}: rank {rank!r} must be an integer and score {score!r} a number") from None
            if qid not in qids:
                raise InputError(f"{where}: unknown query id {qid!r} (not in the snapshot)")
            if docid not in docids:
                raise InputError(f"{where}: unknown passage id {docid!r} (not in the snapshot)")
            if (qid, docid) in seen:
                raise InputError(f"{where}: passage {docid!r} listed twice for query {qid!r}")
            seen.add((qid, docid))
            entries.setdefault(qid, []).append((-score_value, rank_value, docid))
    return {qid: [(docid, -negative) for negative, _, docid in sorted(items)[:k]]
            for qid, items in entries.items()}


def run_candidates(warehouse: Warehouse, snapshot_id: str, path: str, k: int) -> Ranked:
    """The run file's lists for a snapshot (ids checked against its queries and passages)."""
    qids = {row[0] for row in warehouse.con.execute(
        "SELECT qid FROM queries WHERE snapshot_id = ?", [snapshot_id]).fetchall()}
    docids = {row[0] for row in warehouse.con.execute(
        "SELECT docid FROM passages WHERE snapshot_id = ?", [snapshot_id]).fetchall()}
    return read_run(path, qids, docids, k)
