"""The vLLM in-process backend, driven by a STAND-IN ``vllm`` module injected into sys.modules.

vLLM needs a GPU, which this machine has not: these tests check the code around it (batching
by shard, sampling parameters and seeds, grammars as structured outputs, the reasoning
parser, token counts, truncation, refused prompts) against a stand-in that records what it
is given and answers like ``vllm.LLM.chat``. The real engine has not been run here.
"""

from __future__ import annotations

import asyncio
import sys
import types
from types import SimpleNamespace

import pytest

import generators.teachers.vllm_inprocess as vllm_inprocess
from generators.teachers import Call, Sampling, TeacherConfig, TeacherRunner, make_backend
from warehouse.calls import CallStore
from warehouse.db import Warehouse

TOO_LONG = "this prompt is longer than the context"


class StandInLLM:
    """Stand-in for ``vllm.LLM``: answers ``<think>`` + an answer naming the seed."""

    instances: list["StandInLLM"] = []

    def __init__(self, model: str, **engine_args):
        self.model, self.engine_args, self.batches = model, engine_args, []
        StandInLLM.instances.append(self)

    def chat(self, messages, sampling_params, use_tqdm=True):
        if any(TOO_LONG in m[-1]["content"] for m in messages):
            raise ValueError("The decoder prompt is longer than the maximum model length")
        self.batches.append((messages, sampling_params))
        return [self._output(m, p) for m, p in zip(messages, sampling_params)]

    def get_tokenizer(self):
        return "stand-in tokenizer"

    @staticmethod
    def _output(messages, params):
        text = f"<think>seed {params.seed}</think><answer>{messages[-1]['content']}</answer>"
        finish = "stop"
        if params.max_tokens < 5:
            text, finish = text[: params.max_tokens], "length"
        return SimpleNamespace(prompt_token_ids=[0] * 11,
                               outputs=[SimpleNamespace(text=text, finish_reason=finish, token_ids=[0] * 7)])


class StandInSamplingParams:
    def __init__(self, **fields):
        self.__dict__.update(fields)


class StandInReasoningParser:
    """Stand-in for a vLLM reasoning parser (DeepSeek-R1 style: reasoning ends at ``</think>``)."""

    def __init__(self, tokenizer):
        assert tokenizer == "stand-in tokenizer"

    def extract_reasoning(self, text, request):
        reasoning, _, answer = text.removeprefix("<think>").partition("</think>")
        return "parsed: " + reasoning, answer


@pytest.fixture
def stand_in_vllm(monkeypatch):
    """Inject the stand-in ``vllm`` package (vllm, vllm.sampling_params, vllm.reasoning)."""
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = StandInLLM, StandInSamplingParams
    sampling_params = types.ModuleType("vllm.sampling_params")
    sampling_params.StructuredOutputsParams = lambda grammar: ("structured", grammar)
    reasoning = types.ModuleType("vllm.reasoning")
    reasoning.ReasoningParserManager = SimpleNamespace(
        get_reasoning_parser=lambda name: {"deepseek_r1": StandInReasoningParser}[name])
    for name, module in (("vllm", vllm), ("vllm.sampling_params", sampling_params), ("vllm.reasoning", reasoning)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(vllm_inprocess, "_ENGINES", {})
    StandInLLM.instances = []
    yield


def calls(count: int, max_tokens: int = 64, grammar: str | None = None, samples: int = 1) -> list[Call]:
    return [Call.of("org/model", [{"role": "user", "content": f"question {q}"}],
                    Sampling(max_tokens=max_tokens, seed=10), index, grammar)
            for q in range(count) for index in range(samples)]


def run_all(backend, todo):
    async def collect():
        return [pair async for pair in backend.run(todo)]

    return asyncio.run(collect())


def test_backend_is_made_without_importing_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # importing vllm now fails
    backend = make_backend(TeacherConfig(backend="vllm", model="org/model"))
    assert backend.name == "vllm" and backend.model == "org/model"
    with pytest.raises(RuntimeError, match=r"pip install 'synthrank\[vllm\]'"):
        run_all(backend, calls(1))


def test_shards_are_generated_whole_with_one_seed_per_sample(stand_in_vllm):
    config = TeacherConfig(backend="vllm", model="org/model", shard_size=4,
                           engine_args={"tensor_parallel_size": 2, "max_model_len": 4096})
    backend = make_backend(config)
    todo = calls(3, samples=2)
    answered = run_all(backend, todo)
    [llm] = StandInLLM.instances
    assert (llm.model, llm.engine_args) == ("org/model", {"tensor_parallel_size": 2, "max_model_len": 4096})
    assert [len(messages) for messages, _ in llm.batches] == [4, 2]
    params = [p for _, batch in llm.batches for p in batch]
    assert [(p.n, p.seed, p.temperature, p.top_p, p.max_tokens) for p in params] == \
        [(1, call.seed, 0.6, 0.95, 64) for call in todo]
    assert [p.seed for p in params] == [10, 11] * 3  # sample i gets seed + i
    assert [call for call, _ in answered] == todo
    first = answered[0][1]
    assert (first.reasoning, first.content) == ("seed 10", "<answer>question 0</answer>")
    assert (first.prompt_tokens, first.completion_tokens, first.finish_reason) == (11, 7, "stop")


def test_grammar_goes_as_structured_outputs_and_truncation_is_marked(stand_in_vllm):
    backend = make_backend(TeacherConfig(backend="vllm", model="org/model"))
    [(_, cut)] = run_all(backend, calls(1, max_tokens=3, grammar='root ::= "x"'))
    [(_, [params])] = StandInLLM.instances[0].batches
    assert params.structured_outputs == ("structured", 'root ::= "x"')
    assert cut.ok and cut.finish_reason == "length"


def test_reasoning_parser_splits_the_answer(stand_in_vllm):
    backend = make_backend(TeacherConfig(backend="vllm", model="org/model", reasoning_parser="deepseek_r1"))
    [(_, answer)] = run_all(backend, calls(1))
    assert (answer.reasoning, answer.content) == ("parsed: seed 10", "<answer>question 0</answer>")


def test_a_refused_prompt_fails_alone_and_is_recorded(stand_in_vllm, tmp_path):
    todo = calls(5)
    todo[3] = Call.of("org/model", [{"role": "user", "content": TOO_LONG}], Sampling(seed=10))
    backend = make_backend(TeacherConfig(backend="vllm", model="org/model", shard_size=8))
    with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
        answers, stats = TeacherRunner(backend, CallStore(warehouse), show_progress=False).run(todo)
        stored = dict(warehouse.con.execute("SELECT call_key, status FROM teacher_calls").fetchall())
    assert [answers[c.key].status for c in todo] == ["ok", "ok", "ok", "failed", "ok"]
    assert "longer than the maximum model length" in answers[todo[3].key].error
    assert stats.calls_failed == 1 and stored == {c.key: answers[c.key].status for c in todo}


def test_vllm_only_settings_are_refused_elsewhere():
    with pytest.raises(ValueError, match="apply to backend 'vllm' only"):
        TeacherConfig(backend="embedded", reasoning_parser="qwen3")
