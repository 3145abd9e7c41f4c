"""Domain mixtures: N queries in total, split over domains (or sources) by weight.

Each weighted key (a domain, or a source name, which wins) is asked for its share of N by the
largest-remainder method; a key's share is split over its sources in proportion to the
queries each can give, and no source gives more than it has. Which queries a source gives is
the build's seeded choice (``generators.candidates.select_queries``), so the same spec and
seed draw the same queries. The manifest reports asked vs got per key.
"""

from __future__ import annotations

from dataclasses import dataclass

from warehouse.db import Warehouse


@dataclass(frozen=True)
class MixtureSource:
    name: str
    domain: str
    available: int  # queries the source can give (its judged queries, or all of them)


def largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``total`` (ties to the earlier entry)."""
    whole = sum(weights)
    if total <= 0 or whole <= 0:
        return [0] * len(weights)
    exact = [total * w / whole for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def allocate(total: int, weights: dict[str, float], sources: list[MixtureSource]) -> tuple[list[int], dict]:
    """(queries per source, report key -> {weight, asked, got, sources})."""
    keys = list(weights)
    asked = dict(zip(keys, largest_remainder(total, [weights[k] for k in keys])))
    members: dict[str, list[int]] = {k: [] for k in keys}
    for index, source in enumerate(sources):
        key = source.name if source.name in weights else source.domain if source.domain in weights else None
        if key is not None:
            members[key].append(index)
    counts = [0] * len(sources)
    for key, indices in members.items():
        shares = largest_remainder(asked[key], [sources[i].available for i in indices])
        for i, share in zip(indices, shares):
            counts[i] = min(share, sources[i].available)
    report = {key: {"weight": weights[key], "asked": asked[key], "got": sum(counts[i] for i in members[key]),
                    "sources": [sources[i].name for i in members[key]]} for key in keys}
    return counts, report


def available_queries(warehouse: Warehouse, snapshot_id: str) -> int:
    """How many queries a snapshot can give a build: its judged ones when it has qrels, else all
    (as ``select_queries`` chooses)."""
    judged, total = warehouse.fetch_one(
        "SELECT (SELECT count(DISTINCT qid) FROM qrels WHERE snapshot_id = $s),"
        " (SELECT count(*) FROM queries WHERE snapshot_id = $s)", {"s": snapshot_id})
    return judged or total
