"""Shuffled presentations: k distinct seeded orders per list, each mapped back to passage ids."""

from __future__ import annotations

from generators.candidates import CandidateList
from generators.listwise import ListwiseConfig, build_row, plan_samples, presentation_orders, rank_samples
from generators.teachers import Sampling, TeacherRunner
from generators.teachers.openai_compat import OpenAIBackend
from prompts import load_prompt
from tests.fake_teacher import FakeTeacher
from warehouse.calls import CallStore
from warehouse.db import Warehouse

DOCIDS = tuple(f"p{i}" for i in range(8))
SCORES = {d: s for d, s in zip(DOCIDS, (5, 80, 12, 44, 3, 61, 27, 90))}
TRUTH = sorted(DOCIDS, key=lambda d: -SCORES[d])


def test_orders_are_distinct_seeded_and_sample_zero_is_retriever_order():
    orders = presentation_orders(DOCIDS, 5, seed=0, list_id="L")
    assert orders[0] == DOCIDS and len(set(orders)) == 5
    assert all(sorted(order) == sorted(DOCIDS) for order in orders)
    assert orders == presentation_orders(DOCIDS, 5, seed=0, list_id="L")
    assert orders[1:] != presentation_orders(DOCIDS, 5, seed=1, list_id="L")[1:]
    # Two passages have two orders: a third sample has to repeat one.
    assert presentation_orders(("a", "b"), 3, seed=0, list_id="L")[:2] == [("a", "b"), ("b", "a")]


def test_each_sample_maps_back_to_the_same_passages(tmp_path):
    passages = {d: ("", f"text of {d} score={SCORES[d]}") for d in DOCIDS}
    lists = [CandidateList("snap", "dom", "q1", "which passage?", DOCIDS)]
    prompt = load_prompt("listwise_reasonrank")
    # Samples ranked in one window, and samples ranked with sliding windows (5 wide, stride 2).
    for config in (ListwiseConfig(window=8, samples=4), ListwiseConfig(window=5, stride=2, depth=8,
                                                                        passes="full", samples=4)):
        with FakeTeacher(mode="score", latency_ms=0) as teacher, \
                Warehouse.open(tmp_path / f"wh{config.window}.duckdb") as wh:
            backend = OpenAIBackend(teacher.base_url, "fake-scorer", max_in_flight=4)
            planned = plan_samples(lists, passages, prompt, config, backend.model, Sampling(), seed=3)
            rankings, _ = rank_samples(planned, TeacherRunner(backend, CallStore(wh), show_progress=False))
        rows = [build_row(r, prompt, backend.name) for r in rankings]
        assert [row["sample_index"] for row in rows] == [0, 1, 2, 3]
        assert len({row["list_id"] for row in rows}) == 1 and len({row["row_id"] for row in rows}) == 4
        assert rows[0]["initial_list"] == list(DOCIDS)
        assert len({tuple(row["initial_list"]) for row in rows}) == 4
        for row in rows:
            assert row["reason"] is None and row["candidates"] == list(DOCIDS)
            assert row["final_list"] == TRUTH
            assert [row["initial_list"][p - 1] for p in row["permutation"]] == TRUTH
            # The first window the teacher saw is the shuffled presentation, not retriever order.
            first = row["windows"][0]
            assert first["presented"] == row["initial_list"][first["start"]:first["end"]]
