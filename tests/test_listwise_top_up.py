"""Top-up: a list short of valid samples gets new presentations (new sample indexes, recorded
calls, resumable); a list still short follows the documented policy."""

from __future__ import annotations

import re

from flows.stages.listwise import apply_short_list_policy
from generators.candidates import CandidateList
from generators.listwise import ListwiseConfig, build_row, plan_samples, rank_with_top_up, short_lists
from generators.teachers import Sampling, TeacherRunner
from generators.teachers.openai_compat import OpenAIBackend
from prompts import load_prompt
from tests.fake_teacher import FakeTeacher
from warehouse.calls import CallStore
from warehouse.db import Warehouse

DOCIDS = tuple(f"p{i}" for i in range(8))
PASSAGES = {d: ("", f"text of {d} score={i}") for i, d in enumerate(DOCIDS)}
_FIRST = re.compile(r"^\[1\] text of (p\d+)", re.MULTILINE)


class PickyTeacher(FakeTeacher):
    """A stub that answers in a wrong format when the first-presented passage is (or is not,
    with ``only=True``) the passage ``p0``."""

    def __init__(self, only: bool, **options) -> None:
        super().__init__(mode="score", **options)
        self.only = only

    def _answer(self, messages, prompt, seed, index):
        first_is_p0 = _FIRST.search(prompt).group(1) == "p0"
        if first_is_p0 != self.only:
            return None, "<answer>I cannot rank these</answer>"
        return super()._answer(messages, prompt, seed, index)


def rank(tmp_path, teacher: FakeTeacher, config: ListwiseConfig, name: str = "wh"):
    prompt = load_prompt("listwise_reasonrank")
    lists = [CandidateList("snap", "dom", "q1", "which passage?", DOCIDS)]
    with Warehouse.open(tmp_path / f"{name}.duckdb") as warehouse:
        backend = OpenAIBackend(teacher.base_url, "picky", max_in_flight=4)
        planned = plan_samples(lists, PASSAGES, prompt, config, backend.model, Sampling(), seed=0)
        runner = TeacherRunner(backend, CallStore(warehouse), show_progress=False)
        first, stats = rank_with_top_up(planned, runner, config)
        again, rerun_stats = rank_with_top_up(planned, runner, config)
    assert [r.sample.sample_index for r in again] == [r.sample.sample_index for r in first]
    assert rerun_stats.calls_made == 0 and rerun_stats.calls_reused == stats.calls_made
    return first, [build_row(r, prompt, backend.name) for r in first]


def test_an_invalid_sample_is_replaced_by_a_new_presentation(tmp_path):
    with PickyTeacher(only=False) as teacher:
        rankings, rows = rank(tmp_path, teacher, ListwiseConfig(window=8, samples=3))
    valid = [row for row in rows if row["reason"] is None]
    assert rows[0]["sample_index"] == 0 and rows[0]["reason"] == "wrong_format"  # retriever order: p0 first
    assert len(valid) == 3 and {row["sample_index"] for row in valid} >= {1, 2}
    assert max(row["sample_index"] for row in rows) >= 3
    assert len({tuple(row["initial_list"]) for row in rows}) == len(rows)  # every top-up is a new order
    assert short_lists(rankings, 3) == {}


def test_a_list_still_short_is_rejected_or_flagged_and_top_up_is_bounded(tmp_path):
    config = ListwiseConfig(window=8, samples=3, top_up=2)
    with PickyTeacher(only=True) as teacher:
        rankings, rows = rank(tmp_path, teacher, config)
    assert len(rows) == 5  # samples + top_up presentations, no more
    valid = [row for row in rows if row["reason"] is None]
    assert 1 <= len(valid) < 3
    short = short_lists(rankings, 3)
    assert short == {rows[0]["list_id"]: 3 - len(valid)}
    accepted, rejected = apply_short_list_policy(rows, short, config)
    assert accepted == []
    assert sorted(reason for _, _, reason, _ in rejected).count("too_few_samples") == len(valid)
    flagged, rejected = apply_short_list_policy(rows, short, config.model_copy(update={"short_lists": "flag"}))
    assert len(flagged) == len(valid) and all(row["samples_short"] == 3 - len(valid) for row in flagged)
    assert all(reason == "wrong_format" for _, _, reason, _ in rejected)


def test_single_sample_builds_are_not_topped_up(tmp_path):
    with PickyTeacher(only=False) as teacher:
        _, rows = rank(tmp_path, teacher, ListwiseConfig(window=8, samples=1))
    assert [(row["sample_index"], row["reason"]) for row in rows] == [(0, "wrong_format")]
