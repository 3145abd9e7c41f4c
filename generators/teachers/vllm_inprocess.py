"""vLLM in this process, for GPU batch jobs (``pip install 'synthrank[vllm]'``).

``vllm`` is imported only when a run starts, so everything else works without it. The tests
drive this module with a stand-in ``vllm`` module (tests/test_teachers_vllm.py): it has not
been run on a GPU in this project.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any, AsyncIterator, Sequence

from generators.teachers.base import Call, Completion, TeacherBackend, split_reasoning

_ENGINES: dict[tuple[str, str], Any] = {}  # one loaded model per (model, engine args) per process


def _vllm():
    try:
        return importlib.import_module("vllm")
    except ImportError:
        raise RuntimeError("teacher.backend 'vllm' needs vLLM and a GPU: pip install 'synthrank[vllm]'") from None


class VLLMBackend(TeacherBackend):
    """``vllm.LLM`` generating whole shards of calls at once.

    Each shard goes to ``LLM.chat`` in one batch (the model's chat template, one
    ``SamplingParams`` per call: ``n=1``, the call's own seed, temperature, top_p,
    max_tokens, and the call's grammar as structured outputs). One request per sample, not
    ``n`` per prompt: each sample keeps its own seed, so a resumed build regenerates exactly
    the missing samples; vLLM's prefix cache shares the prompt between them.

    Reasoning: with ``reasoning_parser`` (e.g. ``deepseek_r1``, ``qwen3``) vLLM's parser
    splits it from the answer; otherwise ``<think>…</think>`` is split off. A shard's answers
    are yielded (and recorded) when the shard is done; a shard that vLLM refuses (e.g. one
    prompt longer than the context) is split in halves until the refused calls stand
    alone: only they fail.
    """

    name = "vllm"

    def __init__(self, model: str, engine_args: dict[str, Any] | None = None,
                 reasoning_parser: str | None = None, shard_size: int = 1024):
        self.model = model
        self.engine_args = dict(engine_args or {})
        self.reasoning_parser = reasoning_parser
        self.shard_size = shard_size
        self._parser = None

    async def run(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        calls = list(calls)
        for start in range(0, len(calls), self.shard_size):
            shard = calls[start: start + self.shard_size]
            self.in_flight = len(shard)
            try:
                completions = await asyncio.to_thread(self._generate, shard)
            finally:
                self.in_flight = 0
            for call, completion in zip(shard, completions):
                yield call, completion

    def _engine(self):
        key = (self.model, json.dumps(self.engine_args, sort_keys=True))
        if key not in _ENGINES:
            _ENGINES[key] = _vllm().LLM(model=self.model, **self.engine_args)
        return _ENGINES[key]

    def _generate(self, shard: list[Call]) -> list[Completion]:
        llm = self._engine()
        started = time.perf_counter()
        try:
            outputs = llm.chat([call.message_dicts() for call in shard],
                               [self._sampling_params(call) for call in shard], use_tqdm=False)
        except ValueError as problem:  # vLLM validates the whole batch before generating
            if len(shard) == 1:
                return [Completion(status="failed", error=f"vLLM: {problem}"[:500],
                                   latency_ms=(time.perf_counter() - started) * 1000)]
            half = len(shard) // 2  # halve until the refused calls stand alone
            return self._generate(shard[:half]) + self._generate(shard[half:])
        latency_ms = (time.perf_counter() - started) * 1000 / len(shard)
        return [self._completion(output, latency_ms) for output in outputs]

    def _sampling_params(self, call: Call):
        vllm = _vllm()
        constraint = {}
        if call.grammar:
            from vllm.sampling_params import StructuredOutputsParams

            constraint["structured_outputs"] = StructuredOutputsParams(grammar=call.grammar)
        return vllm.SamplingParams(n=1, seed=call.seed, temperature=call.sampling.temperature,
                                   top_p=call.sampling.top_p, max_tokens=call.sampling.max_tokens,
                                   **constraint)

    def _completion(self, output, latency_ms: float) -> Completion:
        choice = output.outputs[0]
        reasoning, answer = self._split(choice.text)
        return Completion(status="ok", content=answer, reasoning=reasoning,
                          finish_reason=choice.finish_reason or "",
                          prompt_tokens=len(output.prompt_token_ids or ()),
                          completion_tokens=len(choice.token_ids or ()), latency_ms=latency_ms)

    def _split(self, text: str) -> tuple[str, str]:
        """(reasoning, answer) through vLLM's reasoning parser when one is named."""
        if self.reasoning_parser is None:
            return split_reasoning(text)
        parser = self._reasoning_parser()
        # vLLM >= 0.12 names it extract_reasoning; earlier releases extract_reasoning_content.
        extract = getattr(parser, "extract_reasoning", None) or parser.extract_reasoning_content
        reasoning, answer = extract(text, None)
        return (reasoning or "").strip(), (answer or "").strip()

    def _reasoning_parser(self):
        if self._parser is None:
            from vllm.reasoning import ReasoningParserManager

            parser_class = ReasoningParserManager.get_reasoning_parser(self.reasoning_parser)
            self._parser = parser_class(self._engine().get_tokenizer())
        return self._parser
