"""Any OpenAI-compatible chat endpoint (vLLM ``serve``, SGLang, llama.cpp server, OpenAI).

The transport is plain aiohttp with orjson, not the ``openai`` package: against a loopback
stub answering in 200 ms with at most C requests at once, the ``openai`` client tops out far
below the C/0.2 limit (CPU-bound in its request and response models), while plain aiohttp
reaches it; bench/teacher_throughput.py measures both. This module is the one retry layer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Iterable, Sequence

import aiohttp
import orjson

from generators.teachers.base import Call, Completion, TeacherBackend, split_reasoning
from generators.teachers.endpoints import Endpoint, EndpointPool
from generators.teachers.pacing import RateLimiter, map_unordered, parse_retry_after, retry_delay

# Statuses worth another try besides 5xx: request timeout, conflict, too many requests.
RETRY_STATUSES = frozenset({408, 409, 429})
_CHARS_PER_TOKEN = 4  # rough prompt size for the tokens-per-minute limit, corrected on answer


class _Retryable(Exception):
    """The server was busy, broke, or the connection did: worth another try."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    """The same request would fail again (a 4xx other than 408/409/429)."""


@dataclass
class _Run:
    """What the calls of one run share: the session, the gate, the limits, the endpoints."""

    session: aiohttp.ClientSession
    gate: asyncio.Semaphore
    pool: EndpointPool
    requests: RateLimiter | None
    tokens: RateLimiter | None


class OpenAIBackend(TeacherBackend):
    """Calls one or more OpenAI-compatible endpoints serving the same model.

    Args:
        base_urls: one base URL or several (replicas), e.g. ``http://gpu:8000/v1``; each
            request goes to the endpoint with the fewest in flight (see ``EndpointPool``).
        model: the model name sent in every request.
        api_key: sent as ``Authorization: Bearer``; never recorded (errors are scrubbed of it).
        max_in_flight: requests in flight at once, over all endpoints.
        timeout_s: time a request may take, answer included, before it counts as failed.
        max_retries: further attempts after the first on 429, 408, 409, 5xx, timeouts,
            dropped connections and unreadable bodies; other 4xx fail at once.
        backoff_s, max_backoff_s: exponential backoff with full jitter between attempts
            (``Retry-After``/``retry-after-ms`` from the server take precedence).
        requests_per_minute, tokens_per_minute: optional limits (tokens: prompt estimated from
            its length plus ``max_tokens``, settled with the real usage once answered).
        endpoint_failures, endpoint_cooldown_s: failures in a row that set an endpoint aside,
            and for how long.
        grammar_style: how a call's grammar is sent: ``llama_cpp`` (``grammar``) or ``vllm``
            (``structured_outputs: {grammar}``).

    A call that still fails after its retries comes back as a failed completion with its error.
    ``latency_ms`` is the answering request's round trip (a failure's: all its attempts).
    """

    name = "openai"
    takes_calls_lazily = True  # map_unordered takes the next call as a worker frees up

    def __init__(self, base_urls: str | Sequence[str], model: str, api_key: str | None = None, *,
                 max_in_flight: int = 16, timeout_s: float = 120.0, max_retries: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 endpoint_failures: int = 5, endpoint_cooldown_s: float = 30.0,
                 grammar_style: str = "llama_cpp"):
        self.base_urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        self.model = model
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.endpoint_failures = endpoint_failures
        self.endpoint_cooldown_s = endpoint_cooldown_s
        self.grammar_style = grammar_style
        self._api_key = api_key
        self._headers = {"Content-Type": "application/json",
                         **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self.pool: EndpointPool | None = None  # the last run's endpoints, with their counts

    @property
    def in_flight(self) -> int:
        return self.pool.in_flight if self.pool else 0

    async def run(self, calls: Iterable[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        self.pool = EndpointPool(self.base_urls, self.endpoint_failures, self.endpoint_cooldown_s)
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            run = _Run(session, asyncio.Semaphore(self.max_in_flight), self.pool,
                       RateLimiter(self.requests_per_minute) if self.requests_per_minute else None,
                       RateLimiter(self.tokens_per_minute) if self.tokens_per_minute else None)

            async def complete(call: Call) -> tuple[Call, Completion]:
                return call, await self._complete(run, call)

            # Twice as many workers as requests in flight: calls waiting out a backoff do not
            # hold a slot, so the others keep the server busy meanwhile.
            async for answered in map_unordered(complete, calls, workers=2 * self.max_in_flight):
                yield answered

    async def _complete(self, run: _Run, call: Call) -> Completion:
        body = self._body(call)
        estimate = len(body) // _CHARS_PER_TOKEN + call.sampling.max_tokens
        started = time.perf_counter()
        for attempt in range(1, self.max_retries + 2):
            try:
                completion = await self._attempt(run, body, estimate)
            except _Retryable as problem:
                if attempt > self.max_retries:
                    return self._failed(problem, attempt, started)
                await asyncio.sleep(retry_delay(attempt, self.backoff_s, self.max_backoff_s,
                                                problem.retry_after))
                continue
            except _Permanent as problem:
                return self._failed(problem, attempt, started)
            completion.attempts = attempt
            return completion
        raise AssertionError("unreachable")

    async def _attempt(self, run: _Run, body: bytes, estimate: int) -> Completion:
        async with run.gate:
            if run.requests:
                await run.requests.acquire(1)
            if run.tokens:
                await run.tokens.acquire(estimate)
            endpoint = run.pool.pick()
            sent = time.perf_counter()
            status, headers, payload = await self._post(run, endpoint, body)
        if status == 200:
            try:
                completion = parse_completion(payload)
            except ValueError as problem:
                run.pool.failed(endpoint)
                raise _Retryable(f"unreadable response from {endpoint.base_url}: {problem}") from None
            completion.latency_ms = (time.perf_counter() - sent) * 1000
            run.pool.succeeded(endpoint)
            if run.tokens:
                run.tokens.refund(estimate - completion.prompt_tokens - completion.completion_tokens)
            return completion
        message = f"HTTP {status} from {endpoint.base_url}: {_error_message(payload)}"
        if status >= 500:
            run.pool.failed(endpoint)
        if status >= 500 or status in RETRY_STATUSES:
            raise _Retryable(message, parse_retry_after(headers))
        raise _Permanent(message)

    async def _post(self, run: _Run, endpoint: Endpoint, body: bytes) -> tuple[int, dict, bytes]:
        endpoint.in_flight += 1
        try:
            async with run.session.post(endpoint.chat_url, data=body, headers=self._headers) as response:
                return response.status, response.headers, await response.read()
        except asyncio.TimeoutError:
            run.pool.failed(endpoint)
            raise _Retryable(f"no answer from {endpoint.base_url} within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as problem:  # refused, reset, dropped mid-answer
            run.pool.failed(endpoint)
            raise _Retryable(f"{type(problem).__name__} talking to {endpoint.base_url}: {problem}") from None
        finally:
            endpoint.in_flight -= 1

    def _body(self, call: Call) -> bytes:
        request = {
            "model": self.model,
            "messages": call.message_dicts(),
            "temperature": call.sampling.temperature,
            "top_p": call.sampling.top_p,
            "max_tokens": call.sampling.max_tokens,
            "seed": call.seed,
        }
        if call.grammar and self.grammar_style == "vllm":
            request["structured_outputs"] = {"grammar": call.grammar}
        elif call.grammar:
            request["grammar"] = call.grammar
        return orjson.dumps(request)

    def _failed(self, problem: Exception, attempts: int, started: float) -> Completion:
        error = str(problem)
        if self._api_key:
            error = error.replace(self._api_key, "[api key]")
        return Completion(status="failed", error=error[:500], attempts=attempts,
                          latency_ms=(time.perf_counter() - started) * 1000)


def parse_completion(payload: bytes) -> Completion:
    """A chat completion body read straight from JSON (no response models): the first
    choice's answer and reasoning apart, its finish reason, and the token usage."""
    data = orjson.loads(payload)
    try:
        choice = data["choices"][0]
        message = choice["message"]
        reasoning, answer = split_reasoning(message.get("content"),
                                            message.get("reasoning_content") or message.get("reasoning"))
        usage = data.get("usage") or {}
        return Completion(status="ok", content=answer, reasoning=reasoning,
                          finish_reason=choice.get("finish_reason") or "",
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))
    except (KeyError, IndexError, TypeError, AttributeError) as problem:
        raise ValueError(f"not a chat completion ({type(problem).__name__}: {problem})") from None


def _error_message(payload: bytes) -> str:
    """The server's own error message when it sent one, else the start of the body."""
    try:
        error = orjson.loads(payload).get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    except (ValueError, AttributeError):
        pass
    return payload[:300].decode("utf-8", "replace")
