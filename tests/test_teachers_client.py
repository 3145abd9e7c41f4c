"""The OpenAI-compatible client against the loopback fake teacher: retries, no retry on 4xx,
Retry-After, several endpoints, bounded tasks, answer parsing; pacing and endpoint units."""

from __future__ import annotations

import asyncio
import json

import pytest

import generators.teachers.openai_compat as openai_compat
from generators.teachers import Call, Sampling
from generators.teachers.endpoints import EndpointPool
from generators.teachers.openai_compat import OpenAIBackend, parse_completion
from generators.teachers.pacing import RateLimiter, map_unordered, parse_retry_after, retry_delay
from tests.conftest import free_port
from tests.fake_teacher import FakeTeacher


def ranking_calls(count: int, max_tokens: int = 200) -> list[Call]:
    """Listwise-shaped calls whose passages carry scores, so the fake teacher's answer is known."""
    calls = []
    for q in range(count):
        passages = "\n".join(f"[{i}] passage {i} score={(q + i * 3) % 7}" for i in range(1, 5))
        messages = [{"role": "user", "content": f"Rank these.\n{passages}\nquery {q}"}]
        calls.append(Call.of("fake-teacher", messages, Sampling(max_tokens=max_tokens, seed=1)))
    return calls


def run_all(backend: OpenAIBackend, calls: list[Call]) -> dict[str, object]:
    async def collect():
        return {call.key: completion async for call, completion in backend.run(calls)}

    return asyncio.run(collect())


def test_faults_are_retried_until_every_answer_equals_the_clean_one(serve):
    teacher = serve(latency_ms=5, capacity=8)
    calls = ranking_calls(40)
    backend = OpenAIBackend(teacher.base_url, "fake-teacher", max_in_flight=8, timeout_s=0.5,
                            max_retries=12, backoff_s=0.01)
    clean = run_all(backend, calls)
    teacher.set_faults(p_5xx=0.2, p_hang=0.05, hang_s=3, p_garbage=0.05, burst_429_every=10, burst_429_len=2)
    teacher.reset_stats()
    faulty = run_all(backend, calls)
    stats = teacher.stats()
    assert min(stats[k] for k in ("fault_5xx", "fault_hang", "fault_garbage", "fault_429")) > 0, stats
    assert all(c.ok for c in faulty.values())
    assert {k: (c.content, c.reasoning) for k, c in faulty.items()} == \
        {k: (c.content, c.reasoning) for k, c in clean.items()}
    assert sum(c.attempts for c in faulty.values()) == stats["received"]


def test_a_call_that_keeps_failing_comes_back_failed_with_its_error(serve):
    teacher = serve(p_5xx=1.0)
    backend = OpenAIBackend(teacher.base_url, "fake-teacher", max_retries=2, backoff_s=0.01)
    [completion] = run_all(backend, ranking_calls(1)).values()
    assert completion.status == "failed" and completion.attempts == 3
    assert completion.error.startswith("HTTP 50") and "server had an error" in completion.error
    assert teacher.stats()["received"] == 3


def test_other_4xx_is_not_retried(serve):
    teacher = serve(api_key="the-right-key")
    backend = OpenAIBackend(teacher.base_url, "fake-teacher", api_key="a-wrong-key-123", max_retries=5)
    completions = run_all(backend, ranking_calls(3)).values()
    assert [(c.status, c.attempts) for c in completions] == [("failed", 1)] * 3
    assert all(c.error.startswith("HTTP 401") for c in completions)
    assert teacher.stats()["received"] == 3


def test_retry_after_from_a_429_sets_the_wait(serve, monkeypatch):
    teacher = serve(burst_429_every=4, burst_429_len=2)
    asked = []

    def recording_delay(attempt, base_s, cap_s, retry_after=None, rng=None):
        asked.append(retry_after)
        return 0.0

    monkeypatch.setattr(openai_compat, "retry_delay", recording_delay)
    backend = OpenAIBackend(teacher.base_url, "fake-teacher", max_in_flight=1, max_retries=3)
    assert all(c.ok for c in run_all(backend, ranking_calls(6)).values())
    assert asked and set(asked) == {1.0}  # the fake answers 429 with Retry-After: 1


def test_requests_go_to_the_endpoint_with_fewest_in_flight(serve):
    first, second = serve(latency_ms=30, capacity=4), serve(latency_ms=30, capacity=4)
    backend = OpenAIBackend([first.base_url, second.base_url], "fake-teacher", max_in_flight=6)
    assert all(c.ok for c in run_all(backend, ranking_calls(30)).values())
    assert first.stats()["ok"] + second.stats()["ok"] == 30
    assert min(first.stats()["max_open"], second.stats()["max_open"]) == 3  # 6 in flight, split evenly


def test_a_failing_endpoint_is_set_aside(serve):
    live = serve(latency_ms=5)
    dead_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    backend = OpenAIBackend([dead_url, live.base_url], "fake-teacher", max_in_flight=2, max_retries=8,
                            backoff_s=0.01, endpoint_failures=3, endpoint_cooldown_s=60)
    assert all(c.ok for c in run_all(backend, ranking_calls(40)).values())
    dead, alive = backend.pool.endpoints
    assert dead.failed >= 3 and dead.resting_until > 0
    assert dead.failed <= 3 + backend.max_in_flight  # only calls already under way hit it after
    assert alive.answered == 40


def test_rate_limits_charge_every_request_and_settle_tokens_with_the_usage(serve, monkeypatch):
    charged: dict[float, list[float]] = {}

    class RecordingLimiter(RateLimiter):
        async def acquire(self, amount: float = 1.0) -> None:
            charged.setdefault(self.rate * 60, []).append(amount)
            await super().acquire(amount)

        def refund(self, amount: float) -> None:
            charged.setdefault(self.rate * 60, []).append(-amount)
            super().refund(amount)

    monkeypatch.setattr(openai_compat, "RateLimiter", RecordingLimiter)
    teacher = serve()
    backend = OpenAIBackend(teacher.base_url, "fake-teacher", max_retries=10, backoff_s=0.01,
                            requests_per_minute=6e6, tokens_per_minute=6e9)
    answers = run_all(backend, ranking_calls(12)).values()
    assert charged[6e6] == [1] * 12
    assert len(charged[6e9]) == 24  # an estimate charged before each call, settled after it
    assert sum(charged[6e9]) == sum(a.prompt_tokens + a.completion_tokens for a in answers)

    charged.clear()
    teacher.set_faults(p_5xx=0.3)
    assert all(a.ok for a in run_all(backend, ranking_calls(12)).values())
    assert charged[6e6] == [1] * (12 + teacher.stats()["fault_5xx"]) and teacher.stats()["fault_5xx"]  # retries too


def test_reasoning_field_and_truncation_are_kept(serve):
    teacher = serve(reasoning_field=True)
    backend = OpenAIBackend(teacher.base_url, "fake-teacher")
    [answer] = run_all(backend, ranking_calls(1)).values()
    assert answer.reasoning.startswith("There are 4 passages") and answer.content.startswith("<answer>[")
    assert "<think>" not in answer.content and answer.finish_reason == "stop"
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0
    [cut] = run_all(backend, ranking_calls(1, max_tokens=5)).values()
    assert cut.ok and cut.finish_reason == "length"


def test_parse_completion_reads_inline_think_and_rejects_garbage():
    body = {"choices": [{"message": {"content": "<think>why</think> <answer>[1]</answer>"},
                         "finish_reason": "stop"}], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    parsed = parse_completion(json.dumps(body).encode())
    assert (parsed.reasoning, parsed.content, parsed.prompt_tokens) == ("why", "<answer>[1]</answer>", 7)
    with pytest.raises(ValueError):
        parse_completion(b'{"choices": [{"ind')
    with pytest.raises(ValueError):
        parse_completion(b'{"error": {"message": "overloaded"}}')


def test_map_unordered_keeps_at_most_workers_items_started():
    started, finished = [], []

    def items():
        for i in range(200):
            assert len(started) - len(finished) <= 4  # never runs ahead of free workers
            yield i

    async def work(i):
        started.append(i)
        await asyncio.sleep(0)
        finished.append(i)
        return i * 2

    async def collect():
        results = [r async for r in map_unordered(work, items(), workers=4)]
        return results, len(asyncio.all_tasks())

    results, tasks_left = asyncio.run(collect())
    assert sorted(results) == [i * 2 for i in range(200)] and tasks_left == 1


def test_map_unordered_raises_a_worker_error():
    async def work(i):
        if i == 3:
            raise KeyError("boom")
        return i

    async def collect():
        return [r async for r in map_unordered(work, range(10), workers=2)]

    with pytest.raises(KeyError):
        asyncio.run(collect())


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_spreads_requests_and_carries_token_debt():
    clock = FakeClock()
    requests = RateLimiter(60, clock)  # one a second, bucket of one
    assert requests.wait_for(1) == 0
    asyncio.run(requests.acquire(1))
    assert requests.wait_for(1) == pytest.approx(1.0)
    clock.now += 0.25
    assert requests.wait_for(1) == pytest.approx(0.75)

    tokens = RateLimiter(600, clock)  # ten a second, bucket of ten
    asyncio.run(tokens.acquire(25))  # bigger than the bucket: taken when full, leaving debt
    assert tokens.wait_for(1) == pytest.approx((1 + 15) / 10)
    tokens.refund(10)  # the call used fewer tokens than estimated
    assert tokens.wait_for(1) == pytest.approx((1 + 5) / 10)


def test_retry_after_parsing_and_delay():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None
    assert 3.0 <= retry_delay(1, 0.5, 30, retry_after=3.0) <= 3.5  # never earlier than asked
    assert all(0 <= retry_delay(attempt, 0.5, 4.0) <= min(4.0, 0.5 * 2 ** (attempt - 1))
               for attempt in range(1, 10) for _ in range(20))


def test_endpoint_pool_picks_least_busy_and_rests_the_failing():
    clock = FakeClock()
    pool = EndpointPool(["http://a/v1", "http://b/v1"], failures_to_rest=2, rest_s=10, clock=clock)
    a, b = pool.endpoints
    a.in_flight = 3
    assert pool.pick() is b
    pool.failed(b)
    pool.succeeded(b)  # a success resets the count
    pool.failed(b)
    assert pool.pick() is b
    pool.failed(b)
    assert pool.pick() is a  # b rests, even though a is busier
    clock.now += 1
    pool.failed(a), pool.failed(a)
    assert pool.pick() is b  # everyone rests: the first to wake
    clock.now += 10
    a.in_flight = 0
    assert pool.pick() is a  # both awake again, equally idle
