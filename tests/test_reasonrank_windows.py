"""Sliding windows: the schedule, the merge, and a real run against a teacher that ranks by score."""

from __future__ import annotations

import random

import pytest

from generators.candidates import CandidateList
from generators.listwise import (ListwiseConfig, build_row, full_passes, merge_windows, plan_samples,
                                 rank_samples, window_schedule)
from generators.teachers import Completion, Sampling, TeacherBackend, TeacherRunner
from generators.teachers.openai_compat import OpenAIBackend
from prompts import load_prompt
from tests.fake_teacher import FakeTeacher
from warehouse.calls import CallStore
from warehouse.db import Warehouse


def ranker(scores: dict[str, int]):
    """A consistent teacher: best score first (stable)."""
    def rank(window: tuple[str, ...]) -> list[int]:
        return [i + 1 for i in sorted(range(len(window)), key=lambda i: -scores[window[i]])]
    return rank


def scored_list(size: int, seed: int) -> tuple[tuple[str, ...], dict[str, int], list[str]]:
    """Docids in a shuffled retriever order, their distinct scores, and the true order."""
    rng = random.Random(seed)
    docids = [f"d{i:02d}" for i in range(size)]
    scores = dict(zip(docids, rng.sample(range(1000), size)))
    presented = tuple(rng.sample(docids, size))
    return presented, scores, sorted(docids, key=lambda d: -scores[d])


def test_schedule_sweeps_bottom_up_and_later_passes_skip_settled_positions():
    assert window_schedule(50, 20, 10, 1) == ((1, 30, 50), (1, 20, 40), (1, 10, 30), (1, 0, 20))
    full = window_schedule(50, 20, 10, "full")
    assert full_passes(50, 20, 10) == 4 and [s[0] for s in full] == [1] * 4 + [2] * 3 + [3] * 2 + [4]
    assert full[4:] == ((2, 30, 50), (2, 20, 40), (2, 10, 30), (3, 30, 50), (3, 20, 40), (4, 30, 50))
    # An uneven length still ends each pass on its top window.
    assert window_schedule(25, 20, 10, 1) == ((1, 5, 25), (1, 0, 15))
    assert window_schedule(12, 20, 10, "full") == ((1, 0, 12),)
    assert window_schedule(50, 20, 10, 99) == full


def test_one_pass_settles_the_top_window_minus_stride():
    presented, scores, truth = scored_list(50, seed=3)
    merged = merge_windows(presented, window_schedule(50, 20, 10, 1), ranker(scores))
    assert list(merged[:10]) == truth[:10]
    assert sorted(merged) == sorted(presented)


@pytest.mark.parametrize("seed", range(40))
def test_full_passes_give_the_complete_ranking(seed):
    rng = random.Random(seed)
    window = rng.randint(2, 20)
    stride = rng.randint(1, window - 1)
    size = rng.randint(1, 70)
    presented, scores, truth = scored_list(size, seed)
    schedule = window_schedule(size, window, stride, "full")
    assert all(end - start <= window for _, start, end in schedule)
    assert list(merge_windows(presented, schedule, ranker(scores))) == truth


def test_fifty_candidates_through_the_runner_against_a_score_teacher(tmp_path):
    presented, scores, truth = scored_list(50, seed=11)
    passages = {d: (f"Passage {d}", f"about libraries, score={scores[d]} and some words") for d in presented}
    lists = [CandidateList("snap", "library", "q1", "how do libraries rank?", presented)]
    config = ListwiseConfig(window=20, stride=10, depth=50, passes="full", passage_tokens=32)
    prompt = load_prompt("listwise_reasonrank")
    with FakeTeacher(mode="score", latency_ms=0) as teacher, Warehouse.open(tmp_path / "wh.duckdb") as wh:
        backend = OpenAIBackend(teacher.base_url, "fake-scorer", max_in_flight=4)
        planned = plan_samples(lists, passages, prompt, config, backend.model, Sampling(max_tokens=4096))
        runner = TeacherRunner(backend, CallStore(wh), show_progress=False)
        rankings, stats = rank_samples(planned, runner)
        row = build_row(rankings[0], prompt, backend.name)
        assert row["reason"] is None and row["final_list"] == truth
        assert [row["initial_list"][p - 1] for p in row["permutation"]] == truth
        assert stats.calls_made == len(row["windows"]) == len(row["call_keys"]) == 10
        assert [(w["pass"], w["start"], w["end"]) for w in row["windows"]] == list(
            window_schedule(50, 20, 10, "full"))
        assert "score=" in row["messages"][-1]["content"] and row["reasoning"]
        # The same plan again: every window's answer is stored, no call is made.
        _, again = rank_samples(plan_samples(lists, passages, prompt, config, backend.model,
                                             Sampling(max_tokens=4096)), runner)
        assert again.calls_made == 0 and again.calls_reused == 10


def test_samples_asking_the_same_calls_each_record_every_answer(tmp_path):
    """Two lists with the same query and candidates ask the same calls in every round: each call
    is made once and its answer, recorded as it arrives, reaches both samples."""
    presented, scores, truth = scored_list(30, seed=3)
    passages = {d: (f"Passage {d}", f"score={scores[d]}") for d in presented}
    lists = [CandidateList("snap", "library", qid, "which first?", presented) for qid in ("q1", "q2")]
    config = ListwiseConfig(window=20, stride=10, depth=30, passes="full", passage_tokens=32)
    prompt = load_prompt("listwise_reasonrank")
    with FakeTeacher(mode="score", latency_ms=0) as teacher, Warehouse.open(tmp_path / "wh.duckdb") as wh:
        backend = OpenAIBackend(teacher.base_url, "fake-scorer", max_in_flight=4)
        planned = plan_samples(lists, passages, prompt, config, backend.model, Sampling(max_tokens=4096))
        rankings, stats = rank_samples(planned, TeacherRunner(backend, CallStore(wh), show_progress=False))
    rows = [build_row(ranking, prompt, backend.name) for ranking in rankings]
    assert [row["qid"] for row in rows] == ["q1", "q2"]
    assert rows[0]["final_list"] == rows[1]["final_list"] == truth
    assert rows[0]["call_keys"] == rows[1]["call_keys"] and rows[0]["windows"] == rows[1]["windows"]
    assert stats.calls_made == len(rows[0]["call_keys"]) == len(window_schedule(30, 20, 10, "full"))


class InstantRanker(TeacherBackend):
    """Answers each call as it takes it (lazily, like the OpenAI backend), keeping the order shown."""

    name, model, takes_calls_lazily = "instant", "instant-model", True

    async def run(self, calls):
        for call in calls:
            size = call.messages[-1][1].count("\n[")
            yield call, Completion(status="ok", content="<answer>" + " > ".join(f"[{i}]" for i in range(1, size + 1))
                                   + "</answer>")


def test_a_call_answered_before_a_later_sample_asks_it_is_not_asked_again(tmp_path):
    """The runner takes a round's calls in chunks: a sample asking a call answered in an
    earlier chunk gets that answer."""
    docids = tuple(f"d{i}" for i in range(8))
    passages = {d: ("", f"passage {d}") for d in docids}
    lists = [CandidateList("snap", "dom", f"q{i}", f"query {i % 99}", docids) for i in range(100)]
    prompt = load_prompt("listwise_reasonrank")
    config = ListwiseConfig(window=8, passage_tokens=16)
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        planned = plan_samples(lists, passages, prompt, config, "instant-model", Sampling())
        rankings, stats = rank_samples(planned, TeacherRunner(InstantRanker(), CallStore(wh), show_progress=False))
    rows = [build_row(ranking, prompt, "instant") for ranking in rankings]
    assert all(row["reason"] is None for row in rows) and (stats.calls_made, stats.calls_reused) == (99, 0)
    assert rows[99]["call_keys"] == rows[0]["call_keys"] and rows[99]["final_list"] == list(docids)
