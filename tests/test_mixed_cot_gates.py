"""mixed_cot: language statistics, answer checks and every gate on hand-written traces."""

from __future__ import annotations

import pytest

from flows.spec import spec_from_dict
from generators.language import LANGUAGES, detect_language, script_switches, target_ratio
from generators.mixed_cot import (GATES, MixedCotConfig, Trace, build_row, check_answer, check_trace,
                                  count_think_blocks, plan_traces, rejection_score)
from generators.teachers import Completion, Sampling, split_reasoning
from prompts import load_prompt
from warehouse.calls import CallRecord, CallStore
from warehouse.db import Warehouse
from warehouse.errors import InputError
from warehouse.snapshots import Snapshot

KOREAN = LANGUAGES["ko"]
NICKNAME = ("차붐",)

# A trace as Yi-Sang wants it: English reasoning that keeps the question's Korean terms
# (about 10% of its letters are Hangul), then a fluent Korean answer.
GOOD_REASONING = (
    "The question asks for 차범근's nickname (애칭) while he played in Germany, 독일. "
    "차범근 spent about ten years in the 분데스리가 with Eintracht Frankfurt and Bayer Leverkusen "
    "and scored 98 league goals. German fans found his full name hard to say, so they shortened "
    "it to \"Cha Boom\", which Korean media write as 차붐. Check: is 차붐 really the 애칭 and not a "
    "title or a position? Yes, it is what fans called him. So the answer is 차붐.")
GOOD_ANSWER = "차범근이 독일에서 활약할 당시 애칭은 '차붐'이었습니다."
ENGLISH_REASONING = (
    "The question asks for the nickname of a Korean footballer while he played in Germany. He "
    "scored 98 goals in the Bundesliga and fans shortened his name to Cha Boom. So the answer is "
    "Cha Boom.")
KOREAN_REASONING = (
    "질문은 차범근이 독일에서 활약할 때의 애칭을 묻고 있다. 차범근은 분데스리가에서 98골을 넣었고, "
    "독일 팬들은 그의 이름을 줄여 차붐이라고 불렀다. 따라서 답은 차붐이다.")


def trace(reasoning: str = GOOD_REASONING, answer: str = GOOD_ANSWER, finish_reason: str = "stop",
          completion_tokens: int = 180, references: tuple[str, ...] | None = NICKNAME) -> Trace:
    return Trace(reasoning, answer, finish_reason, completion_tokens, references)


def failures(item: Trace, config: MixedCotConfig | None = None) -> list[str]:
    return check_trace(item, config or MixedCotConfig())[1]


def test_the_good_trace_passes_every_gate():
    stats, failed = check_trace(trace(), MixedCotConfig())
    assert failed == []
    assert 0.05 <= stats["target_ratio"] <= 0.20
    assert stats["think_blocks"] == 1 and stats["answer_language"] == "ko"
    assert stats["answer_correct"] is True and stats["script_switches"] >= 10


# --- language statistics ------------------------------------------------------------------

def test_target_ratio_is_hangul_syllables_over_letters():
    # 6 Latin letters, 2 Hangul syllables; digits, spaces and punctuation are not letters;
    # jamo (ㅋㅋ) are letters but not syllables.
    assert target_ratio("Answer: 차붐, 98!", KOREAN) == pytest.approx(2 / 8)
    assert target_ratio("ㅋㅋ 차붐", KOREAN) == pytest.approx(2 / 4)
    assert target_ratio("98 + 2 = 100", KOREAN) is None


def test_script_switches_count_changes_between_letters():
    assert script_switches("The 질문 asks about 차범근") == 3
    assert script_switches("차범근 (1953) scored 98골") == 2
    assert script_switches("plain English only") == 0


@pytest.mark.parametrize("text,language", [
    (GOOD_ANSWER, "ko"),                                  # script decides: Hangul
    ("His nickname in Germany was Cha Boom.", "en"),       # Latin is shared: py3langid decides
    ("싱글 곡은 Jai Ho!", "ko"),                            # py3langid may pick any script present
    ("Sein Spitzname in Deutschland war Cha Boom.", "de"),
    ("他在德国的绰号是车轰。", "zh"),                          # Han is shared with Japanese
    ("彼のドイツでの愛称はチャブームでした。", "ja"),          # kana decide
    ("98", "und"),                                        # no letters at all
])
def test_detect_language_is_script_first_then_langid(text, language):
    assert detect_language(text)[0] == language


def test_langid_never_picks_a_language_of_a_script_the_text_lacks():
    assert detect_language("Jai Ho!")[0] not in {"ko", "ja", "zh", "und"}


# --- gates, each passing and failing on hand-written traces -------------------------------

def test_ratio_gate_uses_the_band_of_the_target_language():
    assert failures(trace()) == []
    assert failures(trace(reasoning=ENGLISH_REASONING)) == ["ratio_out_of_band"]
    assert failures(trace(reasoning=KOREAN_REASONING)) == ["ratio_out_of_band"]
    monolingual = MixedCotConfig(ratio_bands={"ko": (0.5, 1.0)})
    assert failures(trace(reasoning=KOREAN_REASONING), monolingual) == []
    assert failures(trace(), monolingual) == ["ratio_out_of_band"]


def test_ratio_is_computed_on_the_reasoning_only():
    english_reasoning = check_trace(trace(reasoning=ENGLISH_REASONING), MixedCotConfig())[0]
    assert english_reasoning["target_ratio"] == 0.0  # the Korean answer does not count
    stats, failed = check_trace(trace(answer="His nickname was Cha Boom (차붐)."), MixedCotConfig())
    assert stats["target_ratio"] == target_ratio(GOOD_REASONING, KOREAN)  # nor does an English one
    assert failed == ["answer_language"]


def test_several_think_blocks_are_rejected_also_when_reasoning_comes_apart():
    one = split_reasoning(f"<think>{GOOD_REASONING}</think>\n{GOOD_ANSWER}")
    two = split_reasoning(f"<think>{GOOD_REASONING}</think><think>Let me check again.</think>{GOOD_ANSWER}")
    unclosed = split_reasoning(f"<think>{GOOD_REASONING}</think>{GOOD_ANSWER}<think>더 생각해 보면")
    assert count_think_blocks(*one) == 1 and failures(trace(*one)) == []
    assert count_think_blocks(*two) == 2 and failures(trace(*two)) == ["several_think_blocks"]
    assert count_think_blocks(*unclosed) == 2 and "several_think_blocks" in failures(trace(*unclosed))
    # A server's reasoning parser took the first block; the second stayed in the content.
    parsed = split_reasoning(f"<think>Let me check again.</think>{GOOD_ANSWER}", GOOD_REASONING)
    assert count_think_blocks(*parsed) == 2 and failures(trace(*parsed))[0] == "several_think_blocks"


def test_think_block_count_survives_the_call_store(tmp_path):
    reasoning, answer = split_reasoning(f"<think>{GOOD_REASONING}</think><think>다시 확인.</think>{GOOD_ANSWER}")
    completion = Completion(status="ok", content=answer, reasoning=reasoning, finish_reason="stop")
    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        store = CallStore(warehouse)
        store.record_many([CallRecord("key", "model", "embedded", 0, {"messages": []}, completion.as_record())])
        stored = Completion(**store.stored_answers(["key"])["key"])
    assert count_think_blocks(stored.reasoning, stored.content) == 2


def test_repetition_loop_gate():
    looping = GOOD_REASONING + " So the answer is 차붐, the 애칭 of 차범근 in 독일." * 5
    assert failures(trace()) == []
    assert failures(trace(reasoning=looping)) == ["repetition_loop"]
    assert failures(trace(reasoning=looping), MixedCotConfig(repetition_max=10)) == []


def test_answer_language_gate():
    assert failures(trace()) == []
    assert failures(trace(answer="His nickname in Germany was 차붐 (Cha Boom).")) == ["answer_language"]
    assert failures(trace(answer="98", references=None)) == ["answer_language"]  # not fluent Korean


def test_token_cap_and_truncation_gates():
    assert failures(trace(completion_tokens=16384)) == []
    assert failures(trace(completion_tokens=16385)) == ["over_token_cap"]
    assert failures(trace(completion_tokens=500), MixedCotConfig(token_cap=400)) == ["over_token_cap"]
    assert failures(trace(finish_reason="length")) == ["truncated"]


def test_empty_reasoning_and_empty_answer_are_rejected():
    assert failures(trace(reasoning=""))[:1] == ["no_reasoning"]
    assert failures(trace(answer=""))[:1] == ["no_answer"]


def test_wrong_answer_gate_uses_the_references():
    wrong = "차범근의 애칭은 '갈색 폭격기'였습니다."
    assert failures(trace()) == []
    assert failures(trace(answer=wrong)) == ["wrong_answer"]
    stats, failed = check_trace(trace(answer=wrong, references=None), MixedCotConfig())
    assert failed == [] and stats["answer_correct"] is None  # no reference: no check


def test_failed_gates_are_all_listed_in_order_and_the_score_names_the_reason():
    config = MixedCotConfig()
    item = trace(reasoning=ENGLISH_REASONING, answer="It was Cha Boom, I think.", finish_reason="length")
    stats, failed = check_trace(item, config)
    assert failed == ["truncated", "answer_language", "ratio_out_of_band", "wrong_answer"]
    assert failed == sorted(failed, key=GATES.index)
    assert rejection_score({**stats, "reason": "ratio_out_of_band"}) == 0.0
    assert rejection_score({**stats, "reason": "truncated"}) is None


# --- answer checks ------------------------------------------------------------------------

@pytest.mark.parametrize("answer,references,exact,correct", [
    ("차붐", ("차붐",), True, True),
    ("차붐이다.", ("차붐",), True, True),                       # copula dropped
    ("「차붐」", ("차붐",), True, True),                        # punctuation dropped
    ("그의 애칭은 차붐이었습니다.", ("차붐",), False, True),       # contains the reference
    ("자녀는 2남1녀입니다", ("2남 1녀",), False, True),          # spaces ignored
    ("SV 다름슈타트 98에 입단했다", ("SV 다름슈타트 98",), False, True),
    ("차범근입니다", ("차붐",), False, False),
    ("1979년 5월에 전역했다", ("1979년 5월 31일",), False, False),  # char F1 0.67 < 0.8
    ("고려대학교", ("고려대", "고려대학교"), True, True),           # the best reference counts
])
def test_check_answer_normalises_korean(answer, references, exact, correct):
    got_exact, f1, got_correct = check_answer(answer, references, MixedCotConfig())
    assert (got_exact, got_correct) == (exact, correct)
    assert 0.0 <= f1 <= 1.0


def test_answer_f1_threshold_and_contains_match_are_configurable():
    assert check_answer("1979년 5월에 전역했다", ("1979년 5월 31일",), MixedCotConfig(answer_f1=0.6))[2]
    strict = MixedCotConfig(answer_contains=False)
    assert check_answer("그의 애칭은 차붐이었습니다.", NICKNAME, strict)[2] is False
    english = MixedCotConfig(language="en", ratio_bands={"en": (0.0, 1.0)})
    assert check_answer("The Lord of the Rings!", ("lord of the rings",), english)[:2] == (True, 1.0)
    assert check_answer("Lord of the Flies", ("lord of the rings",), english)[1] == pytest.approx(2 / 3)


# --- configuration, planning, rows --------------------------------------------------------

@pytest.mark.parametrize("settings,message", [
    ({"language": "xx"}, "mixed_cot.language 'xx' is not one of"),
    ({"language": "ja"}, "mixed_cot.ratio_bands has no band for 'ja'"),
    ({"ratio_bands": {"ko": [0.3, 0.1]}}, "mixed_cot.ratio_bands.ko: need 0 <= min <= max <= 1"),
    ({"ratio_band": [0.1, 0.2]}, "unknown field 'mixed_cot.ratio_band'"),
])
def test_bad_mixed_cot_settings_name_the_field(tmp_path, settings, message):
    raw = {"dataset": "d", "sources": [{"name": "k", "domain": "wiki"}], "kinds": ["mixed_cot"],
           "mixed_cot": settings}
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        spec_from_dict(raw, tmp_path, "spec.yaml")


SNAPSHOT = Snapshot("snap", "korquad", "wiki-ko", "src", "beir", 2, 3, 3)
QUERIES = {"q1": ("차범근의 애칭은?", ["차붐"]), "q2": ("차범근이 졸업한 대학교는?", ["고려대학교"]),
           "q3": ("판정이 없는 질문?", None)}
QRELS = {"q1": {"p1": 1}, "q2": {"p0": 0, "p2": 1}}
PASSAGES = {"p0": ("", "관련 없음"), "p1": ("차범근", "독일에서 차붐이라 불렸다."),
            "p2": ("차범근", "고려대학교를 졸업하였다.")}


def test_plan_gives_each_question_its_judged_passage_and_references():
    config = MixedCotConfig(with_passage=True, samples=2)
    prompt = load_prompt(config.prompt_name)
    planned = plan_traces(SNAPSHOT, QUERIES, QRELS, PASSAGES, prompt, config, "m", Sampling(), None, 0)
    assert [(p.qid, p.sample_index, p.passage_docid) for p in planned] == [
        ("q1", 0, "p1"), ("q1", 1, "p1"), ("q2", 0, "p2"), ("q2", 1, "p2")]
    (_, system), (_, user) = planned[2].call.messages
    assert "Korean" in system and "<think>" in system
    assert user == "차범근 고려대학교를 졸업하였다.\n\n차범근이 졸업한 대학교는?"
    assert planned[2].references == ("고려대학교",)
    assert len({p.row_id for p in planned}) == len({p.call.key for p in planned}) == 4


def test_plan_without_passage_asks_the_question_alone():
    config = MixedCotConfig()
    planned = plan_traces(SNAPSHOT, QUERIES, {}, {}, load_prompt(config.prompt_name), config, "m",
                          Sampling(), 2, seed=3)
    assert len(planned) == 2 and planned == plan_traces(
        SNAPSHOT, QUERIES, {}, {}, load_prompt(config.prompt_name), config, "m", Sampling(), 2, seed=3)
    assert [role for role, _ in planned[0].call.messages] == ["system", "user"]
    assert planned[0].call.messages[1][1] == QUERIES[planned[0].qid][0]


def test_plan_with_passage_needs_qrels():
    config = MixedCotConfig(with_passage=True)
    with pytest.raises(InputError, match="no judged passages"):
        plan_traces(SNAPSHOT, QUERIES, {}, PASSAGES, load_prompt(config.prompt_name), config, "m",
                    Sampling(), None, 0)


def test_build_row_records_statistics_lineage_and_reason():
    config = MixedCotConfig()
    prompt = load_prompt(config.prompt_name)
    planned = plan_traces(SNAPSHOT, QUERIES, QRELS, {}, prompt, config, "m", Sampling(), None, 0)[0]
    reasoning, answer = split_reasoning(f"<think>{GOOD_REASONING}</think>\n\n{GOOD_ANSWER}")
    row = build_row(planned, Completion(status="ok", content=answer, reasoning=reasoning,
                                        finish_reason="stop", completion_tokens=180), prompt, "embedded", config)
    assert row["reason"] is None and row["failed_gates"] == [] and row["references"] == ["차붐"]
    assert row["reasoning"] == GOOD_REASONING and row["answer"] == GOOD_ANSWER
    assert row["prompt_version"] == prompt.version and row["call_keys"] == [planned.call.key]
    failed = build_row(planned, Completion(status="failed", error="boom"), prompt, "embedded", config)
    assert failed["reason"] == "teacher_failed" and failed["error"] == "boom"
