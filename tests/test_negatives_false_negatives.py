"""False negatives on real labels (CISI, CACM human qrels).

The miner is given one known positive per query and the others are hidden, as in
sparse-label sets such as MS MARCO. Hidden positives mined as hard negatives are false
negatives: positive-aware filtering must mine fewer of them, and every one it sets aside
must be on the row as a suspected false negative. The whole collection is the candidate
corpus; its embeddings are computed once per module (minutes on a busy 2-core machine).
"""

from __future__ import annotations

import random

import pytest

from generators.embeddings import snapshot_embeddings
from generators.negatives import (HARD_NEGATIVE, SUSPECTED_FALSE_NEGATIVE, NegativesConfig, mine_snapshot,
                                  positives_from_qrels)
from warehouse.db import Warehouse
from warehouse.snapshots import ingest, load_qrels

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

COLLECTIONS = ("cisi", "cacm")


@pytest.fixture(scope="module")
def collections(shared_data, tmp_path_factory):
    """name -> (warehouse, snapshot), passage embeddings stored."""
    warehouse = Warehouse.open(tmp_path_factory.mktemp("neg-fn") / "wh.duckdb")
    snapshots = {}
    for name in COLLECTIONS:
        snapshot, _ = ingest(warehouse, shared_data / name, name, name)
        snapshot_embeddings(warehouse, snapshot.snapshot_id)
        snapshots[name] = snapshot
    yield {name: (warehouse, snapshot) for name, snapshot in snapshots.items()}
    warehouse.close()


def one_known_positive(qrels: dict[str, dict[str, int]], seed: int = 0) -> tuple[dict, dict]:
    """(given: qid -> [one positive], hidden: qid -> the other positives), for queries with 2+."""
    rng = random.Random(seed)
    all_positives = {q: d for q, d in positives_from_qrels(qrels).items() if len(d) >= 2}
    given = {q: [rng.choice(docids)] for q, docids in sorted(all_positives.items())}
    hidden = {q: set(all_positives[q]) - set(given[q]) for q in given}
    return given, hidden


def docids(row: dict, status: str) -> set[str]:
    return {n["docid"] for n in row["negatives"] if n["status"] == status}


@pytest.mark.parametrize("name", COLLECTIONS)
def test_positive_aware_filtering_mines_fewer_hidden_positives_and_loses_none(collections, name):
    warehouse, snapshot = collections[name]
    given, hidden = one_known_positive(load_qrels(warehouse, snapshot.snapshot_id))
    settings = dict(retrievers=["dense"], depth=50, num_negatives=10, judge="none")
    plain = {r["qid"]: r for r in mine_snapshot(warehouse, snapshot, NegativesConfig(positive_fraction=None,
                                                                                   **settings), positives=given)}
    aware = {r["qid"]: r for r in mine_snapshot(warehouse, snapshot, NegativesConfig(positive_fraction=0.95,
                                                                                   **settings), positives=given)}
    assert set(plain) == set(aware) == set(given)

    mined_plain = sum(len(docids(plain[q], HARD_NEGATIVE) & hidden[q]) for q in given)
    mined_aware = sum(len(docids(aware[q], HARD_NEGATIVE) & hidden[q]) for q in given)
    suspected = sum(len(docids(aware[q], SUSPECTED_FALSE_NEGATIVE) & hidden[q]) for q in given)
    set_aside = sum(len(docids(aware[q], SUSPECTED_FALSE_NEGATIVE)) for q in given)
    print(f"\n{name}: {len(given)} queries, one known positive each, {sum(map(len, hidden.values()))} hidden; "
          f"hidden positives mined as hard negatives: {mined_plain} without filtering, {mined_aware} with "
          f"positive-aware filtering (0.95); suspects: {set_aside}, of which hidden positives: {suspected}")
    assert mined_aware < mined_plain
    for qid in given:
        lost = (docids(plain[qid], HARD_NEGATIVE) & hidden[qid]) - docids(aware[qid], HARD_NEGATIVE)
        assert lost <= docids(aware[qid], SUSPECTED_FALSE_NEGATIVE), f"{name} {qid}: {lost} vanished"
        assert docids(plain[qid], HARD_NEGATIVE) <= (docids(aware[qid], HARD_NEGATIVE)
                                                     | docids(aware[qid], SUSPECTED_FALSE_NEGATIVE))
        reference = aware[qid]["positives"][0]["score"]
        threshold = reference - abs(reference) * 0.05  # scores are stored to 6 decimals
        for negative in aware[qid]["negatives"]:
            if negative["status"] == SUSPECTED_FALSE_NEGATIVE:
                assert negative["set_aside_by"] == "positive_fraction" and negative["score"] > threshold - 1e-5
            else:
                assert negative["score"] <= threshold + 1e-5
