"""Any OpenAI-compatible chat endpoint (vLLM ``serve``, SGLang, llama.cpp server, OpenAI)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import AsyncIterator, Sequence

import openai

from generators.teachers.base import Call, Completion, TeacherBackend, split_reasoning

# Worth another try: the server was busy, broke, or the connection did.
RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
             openai.APIConnectionError, openai.APIResponseValidationError)


def _http_client():
    """The aiohttp transport where installed: it sustains far more calls/s than httpx."""
    try:
        return openai.DefaultAioHttpClient()
    except (AttributeError, RuntimeError, ImportError):
        return None


class OpenAIBackend(TeacherBackend):
    """Calls an OpenAI-compatible endpoint with at most ``max_in_flight`` requests at once.

    A call's grammar goes in the request body as ``grammar`` (llama.cpp server's field).

    Retries 429, 5xx, timeouts, dropped connections and unparseable bodies with exponential
    backoff and jitter (honouring ``Retry-After``); any other 4xx fails at once. A call that
    still fails is returned as a failed completion, never raised.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 max_in_flight: int = 16, timeout_s: float = 120.0, max_retries: int = 5,
                 backoff_s: float = 0.5):
        self.model = model
        self.base_url = base_url
        self.max_in_flight = max_in_flight
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._api_key = api_key or "not-needed"
        self._timeout_s = timeout_s
        self._client: openai.AsyncOpenAI | None = None

    def _open_client(self) -> openai.AsyncOpenAI:
        """A client bound to the running event loop (each ``run`` may have its own loop)."""
        http_client = _http_client()
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self._timeout_s,
            **({"http_client": http_client} if http_client is not None else {}),
        )

    async def run(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        gate = asyncio.Semaphore(self.max_in_flight)
        self._client = self._open_client()

        async def guarded(call: Call) -> tuple[Call, Completion]:
            async with gate:
                return call, await self._complete_with_retries(call)

        pending = [asyncio.create_task(guarded(call)) for call in calls]
        try:
            for finished in asyncio.as_completed(pending):
                yield await finished
        finally:
            for task in pending:
                task.cancel()
            await self._client.close()

    async def _complete_with_retries(self, call: Call) -> Completion:
        started = time.perf_counter()
        for attempt in range(1, self.max_retries + 2):
            try:
                completion = await self._complete_once(call)
            except RETRYABLE as exc:
                if attempt > self.max_retries:
                    return self._failed(exc, attempt, started)
                await asyncio.sleep(self._delay(exc, attempt))
                continue
            except openai.APIStatusError as exc:  # other 4xx: the same request fails again
                return self._failed(exc, attempt, started)
            completion.attempts = attempt
            completion.latency_ms = (time.perf_counter() - started) * 1000
            return completion
        raise AssertionError("unreachable")

    async def _complete_once(self, call: Call) -> Completion:
        response = await self._client.chat.completions.create(
            model=self.model,
            messages=call.message_dicts(),
            temperature=call.sampling.temperature,
            top_p=call.sampling.top_p,
            max_tokens=call.sampling.max_tokens,
            seed=call.seed,
            **({"extra_body": {"grammar": call.grammar}} if call.grammar else {}),
        )
        if not response.choices:
            raise openai.APIResponseValidationError(response=None, body=None, message="no choices")
        choice = response.choices[0]
        extra = choice.message.model_extra or {}
        reasoning, answer = split_reasoning(
            choice.message.content, extra.get("reasoning_content") or extra.get("reasoning")
        )
        usage = response.usage
        return Completion(
            status="ok",
            content=answer,
            reasoning=reasoning,
            finish_reason=choice.finish_reason or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    def _delay(self, exc: Exception, attempt: int) -> float:
        """Retry-After when the server gives one, else exponential backoff with full jitter."""
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                return float(retry_after)
            except ValueError:
                pass
        return random.uniform(0, self.backoff_s * 2 ** (attempt - 1))

    def _failed(self, exc: Exception, attempts: int, started: float) -> Completion:
        return Completion(status="failed", error=f"{type(exc).__name__}: {exc}"[:500],
                          attempts=attempts, latency_ms=(time.perf_counter() - started) * 1000)
