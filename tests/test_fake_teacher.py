"""The loopback fake teacher answers like an OpenAI server, with the ranking, limits and faults it promises."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import openai
import pytest

from tests.fake_teacher import FakeTeacher

REPO = Path(__file__).resolve().parents[1]
ANSWER = re.compile(r"^<think>(.+)</think> <answer>(.*)</answer>$", re.DOTALL)


def listwise_messages(scores: list[int]) -> list[dict]:
    """A listwise prompt whose passage i carries score=scores[i-1]; an answer example precedes it."""
    passages = "\n".join(f"[{i}] Passage {i} says score={s} about the topic." for i, s in enumerate(scores, 1))
    prompt = (
        "Rank the passages below. Answer like this example:\n[2] > [1]\n\n"
        f"{passages}\n\nSearch Query: which passage scores highest?"
    )
    return [{"role": "system", "content": "You are a ranker."}, {"role": "user", "content": prompt}]


def post(url: str, payload: dict | bytes, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """POST JSON with the standard library; returns (status, headers, body) for errors too."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def chat(teacher: FakeTeacher, **body) -> tuple[int, dict, bytes]:
    body.setdefault("model", "fake-teacher")
    body.setdefault("messages", listwise_messages([1, 2]))
    return post(f"{teacher.base_url}/chat/completions", body)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_score_mode_ranks_by_score_through_the_openai_client(serve):
    teacher = serve(mode="score")
    client = openai.OpenAI(base_url=teacher.base_url, api_key="unused", max_retries=0)

    completion = client.chat.completions.create(
        model="fake-teacher", messages=listwise_messages([3, 9, 1, 9, 5]), temperature=0.7
    )

    choice = completion.choices[0]
    reasoning, ranking = ANSWER.match(choice.message.content).groups()
    assert ranking == "[2] > [4] > [5] > [1] > [3]"
    assert "[2]" in reasoning
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_reasoning_field_moves_reasoning_out_of_the_content(serve):
    teacher = serve(mode="identity", reasoning_field=True)

    status, _, body = chat(teacher, messages=listwise_messages([5, 5, 5]))

    message = json.loads(body)["choices"][0]["message"]
    assert status == 200
    assert message["content"] == "<answer>[1] > [2] > [3]</answer>"
    assert message["reasoning_content"] and "<think>" not in message["reasoning_content"]


def test_passages_given_one_per_user_turn_are_found(serve):
    teacher = serve(mode="score")
    messages = [{"role": "user", "content": f"[{i}] Passage with score={s}."} for i, s in ((1, 2), (2, 7))]
    messages.append({"role": "user", "content": "Search Query: q. Rank the 2 passages above."})

    _, _, body = chat(teacher, messages=messages)

    assert json.loads(body)["choices"][0]["message"]["content"].endswith("<answer>[2] > [1]</answer>")


def test_n_returns_n_choices_and_seed_makes_random_answers_repeatable(serve):
    teacher = serve(mode="random")
    messages = listwise_messages(list(range(8)))

    first = json.loads(chat(teacher, messages=messages, n=4, seed=11)[2])
    again = json.loads(chat(teacher, messages=messages, n=4, seed=11)[2])

    rankings = [ANSWER.match(c["message"]["content"]).group(2) for c in first["choices"]]
    assert [c["index"] for c in first["choices"]] == [0, 1, 2, 3]
    assert all(sorted(re.findall(r"\d+", r), key=int) == [str(i) for i in range(1, 9)] for r in rankings)
    assert len(set(rankings)) > 1, "the samples of one request should differ"
    assert again["choices"] == first["choices"]


def test_ignoring_n_answers_one_choice(serve):
    teacher = serve(honour_n=False)

    _, _, body = chat(teacher, n=3)

    assert len(json.loads(body)["choices"]) == 1


def test_max_tokens_truncates_with_finish_reason_length(serve):
    teacher = serve(mode="score")
    full = json.loads(chat(teacher, messages=listwise_messages(list(range(20))))[2])["choices"][0]

    cut = json.loads(chat(teacher, messages=listwise_messages(list(range(20))), max_tokens=10)[2])["choices"][0]

    assert full["finish_reason"] == "stop"
    assert cut["finish_reason"] == "length"
    assert full["message"]["content"].startswith(cut["message"]["content"])
    assert len(cut["message"]["content"]) < len(full["message"]["content"])


def test_fixed_and_echo_modes(serve):
    fixed = serve(mode="fixed", fixed_content="<answer>[9] > [9]</answer>")
    echo = serve(mode="echo")

    fixed_content = json.loads(chat(fixed)[2])["choices"][0]["message"]["content"]
    echoed = json.loads(chat(echo, messages=[{"role": "user", "content": "hello (1)"}])[2])

    assert fixed_content == "<answer>[9] > [9]</answer>"
    assert echoed["choices"][0]["message"]["content"] == "hello (1)"


def test_429_bursts_carry_retry_after(serve):
    teacher = serve(burst_429_every=4, burst_429_len=2)

    replies = [chat(teacher) for _ in range(8)]

    assert [status for status, _, _ in replies] == [200, 200, 429, 429] * 2
    assert all(headers.get("Retry-After") == "1" for status, headers, _ in replies if status == 429)
    stats = teacher.stats()
    assert (stats["received"], stats["ok"], stats["fault_429"]) == (8, 4, 4)


def test_capacity_bounds_the_requests_processed_at_once(serve):
    teacher = serve(capacity=2, latency_ms=300)

    async def four_at_once() -> list[int]:
        async with aiohttp.ClientSession() as session:
            async def one() -> int:
                body = {"model": "m", "messages": listwise_messages([1, 2])}
                async with session.post(f"{teacher.base_url}/chat/completions", json=body) as response:
                    await response.read()
                    return response.status

            return await asyncio.gather(*(one() for _ in range(4)))

    statuses = asyncio.run(four_at_once())

    stats = get_json(f"http://127.0.0.1:{teacher.port}/stats")
    assert statuses == [200] * 4
    assert stats["max_open"] == 4, "all four requests should have been waiting or processed together"
    assert stats["max_in_flight"] == 2
    assert (stats["ok"], stats["in_flight"], stats["open"]) == (4, 0, 0)


def test_api_key_is_required_when_set(serve):
    teacher = serve(api_key="secret-key")
    body = {"model": "m", "messages": listwise_messages([1])}
    url = f"{teacher.base_url}/chat/completions"

    statuses = [
        post(url, body)[0],
        post(url, body, {"Authorization": "Bearer wrong"})[0],
        post(url, body, {"Authorization": "Bearer secret-key"})[0],
    ]

    assert statuses == [401, 401, 200]
    assert teacher.stats()["unauthorized"] == 2


def test_faults_are_seeded_counted_and_can_be_turned_off(serve):
    teacher = serve(seed=7, p_5xx=0.3, p_garbage=0.2)
    stats_url = f"http://127.0.0.1:{teacher.port}/stats"

    def outcomes() -> list[str]:
        found = []
        for _ in range(30):
            status, _, body = chat(teacher)
            try:
                json.loads(body)
                found.append(str(status))
            except ValueError:
                found.append(f"{status}-garbage")
        return found

    first = outcomes()
    stats = get_json(stats_url)
    post(f"{stats_url}/reset", b"")
    second = outcomes()
    post(f"http://127.0.0.1:{teacher.port}/faults", {"p_5xx": 0, "p_garbage": 0})
    clean = outcomes()

    assert first == second
    assert {"500", "502", "503"} & set(first) and "200-garbage" in first and "200" in first
    assert stats["fault_5xx"] == sum(o in ("500", "502", "503") for o in first)
    assert stats["fault_garbage"] == first.count("200-garbage")
    assert stats["ok"] == first.count("200")
    assert clean == ["200"] * 30


def test_hung_request_outlasts_the_client_timeout_and_does_not_block_stop(serve):
    teacher = serve(p_hang=1.0, hang_s=60)

    async def call_with_short_timeout() -> None:
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            body = {"model": "m", "messages": listwise_messages([1])}
            async with session.post(f"{teacher.base_url}/chat/completions", json=body) as response:
                await response.read()

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(call_with_short_timeout())
    stats = teacher.stats()
    teacher.stop()

    assert (stats["fault_hang"], stats["ok"], stats["open"]) == (1, 0, 1)


def test_bad_request_is_a_400(serve):
    teacher = serve()

    status, _, body = post(f"{teacher.base_url}/chat/completions", b"{not json")

    assert status == 400 and "error" in json.loads(body)
    assert teacher.stats()["bad_request"] == 1


def test_subprocess_prints_ready_and_stops_on_sigterm():
    command = [sys.executable, "-m", "tests.fake_teacher", "--port", "0", "--mode", "fixed", "--fixed-content", "hi"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as process:
        try:
            ready = process.stdout.readline().split()
            assert ready[0] == "READY"
            base_url = f"http://127.0.0.1:{ready[1]}/v1"
            models = get_json(f"{base_url}/models")
            status, _, body = post(f"{base_url}/chat/completions", {"model": "m", "messages": listwise_messages([1])})
        finally:
            process.terminate()
            returncode = process.wait(timeout=10)

    assert models["data"][0]["id"] == "fake-teacher"
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "hi"
    assert returncode == 0
