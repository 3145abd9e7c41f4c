"""A loopback fake OpenAI-compatible teacher for tests and benchmarks.

`FakeTeacher` serves `POST /v1/chat/completions` and `GET /v1/models` in the OpenAI format,
with a known ranking policy, a latency, a capacity and seeded faults:

- modes: ``score`` ranks the passages of a listwise prompt (lines starting ``[i] ``) by the
  integer written in each as ``score=<int>``, highest first, ties by position, passages
  without one last; ``identity`` answers ``[1] > [2] > …``; ``random`` a permutation
  drawn from the request ``seed`` and the choice index (same seed, same answer); ``fixed``
  answers ``fixed_content``; ``echo`` answers the last user message.
- query writing: a prompt that asks for ``<query>…</query>`` (prompts/queries_*.yaml) gets,
  in every mode but ``fixed`` and ``echo``, the k queries it asks for made from the passage
  between ``<<<`` and ``>>>``: its first six words, the same words again with a question mark
  (a near duplicate), then ``unrelated zebra violin harbour`` and numbered variants.
- capacity and latency: at most ``capacity`` requests are processed at once, each for
  ``latency_ms``, so the throughput ceiling is capacity / latency.
- faults, drawn per request in arrival order from ``random.Random(seed)``: ``p_5xx`` (500,
  502 or 503 after the usual latency), ``p_hang`` (no answer for ``hang_s`` seconds, outside
  the capacity, then an answer nobody waits for), ``p_garbage`` (200 with a body that is not
  JSON), and ``burst_429_every``/``burst_429_len`` (the last ``len`` requests of every window
  of ``every`` requests get 429 with ``Retry-After: 1``, at once).
- ``api_key``: requests without ``Authorization: Bearer <api_key>`` get 401.

Counters of chat requests are served by ``GET /stats`` (reset by ``POST /stats/reset``,
which also reseeds the fault draws); ``POST /faults`` changes the fault settings while the
server runs.

In process::

    with FakeTeacher(latency_ms=200, capacity=16) as teacher:
        client = openai.OpenAI(base_url=teacher.base_url, api_key="unused")

As a subprocess (prints ``READY <port>`` once listening, stops on SIGTERM or SIGINT)::

    python -m tests.fake_teacher --port 0 --latency-ms 200 --capacity 64
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import zlib
from typing import Any, Callable

from aiohttp import web

try:
    import orjson

    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover - orjson comes with prefect
    import json

    _loads = json.loads

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


MODES = ("score", "identity", "random", "fixed", "echo")
FAULT_OPTIONS = ("p_5xx", "p_hang", "hang_s", "p_garbage", "burst_429_every", "burst_429_len")
COUNTERS = (
    "received", "ok", "fault_5xx", "fault_hang", "fault_garbage", "fault_429",
    "unauthorized", "bad_request",
)

_PASSAGE_START = re.compile(r"^\[(\d+)\] (?!>)", re.MULTILINE)
_SCORE = re.compile(r"score=(-?\d+)")
_GARBAGE_BODY = b'{"id": "chatcmpl-garbage", "object": "chat.completion", "choices": [{"ind'
_SERVER_ERRORS = (500, 502, 503)
_CHARS_PER_TOKEN = 4


class FakeTeacher:
    """An OpenAI-compatible chat server on loopback whose answers, speed and faults are known.

    Args:
        mode: "score" (default), "identity", "random", "fixed" or "echo"; see the module doc.
        latency_ms: time each request spends being processed, holding a capacity slot.
        capacity: how many requests are processed at once; more wait their turn.
        reasoning_field: put the reasoning in `message.reasoning_content` (as vLLM reasoning
            parsers do) instead of `<think>…</think>` in the content.
        fixed_content: the content that mode "fixed" answers.
        honour_n: return `n` choices; False answers one choice whatever `n` is (llama.cpp).
        p_5xx, p_hang, p_garbage: probability of each fault per request (summing to ≤ 1).
        hang_s: how long a hung request stays unanswered.
        burst_429_every, burst_429_len: in every window of `every` requests the last `len`
            get 429 with Retry-After: 1; 0 turns bursts off.
        api_key: the bearer token required on /v1/*, or None for none.
        seed: seed of the fault draws and of unseeded "random" answers.
        model: the model id served by /v1/models and echoed in answers.
        host, port: where to listen; port 0 picks a free port (see `port` after `start`).
    """

    def __init__(
        self,
        *,
        mode: str = "score",
        latency_ms: float = 0.0,
        capacity: int = 64,
        reasoning_field: bool = False,
        fixed_content: str = "",
        honour_n: bool = True,
        p_5xx: float = 0.0,
        p_hang: float = 0.0,
        hang_s: float = 60.0,
        p_garbage: float = 0.0,
        burst_429_every: int = 0,
        burst_429_len: int = 0,
        api_key: str | None = None,
        seed: int = 0,
        model: str = "fake-teacher",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.mode = mode
        self.latency_ms = latency_ms
        self.capacity = capacity
        self.reasoning_field = reasoning_field
        self.fixed_content = fixed_content
        self.honour_n = honour_n
        self.api_key = api_key
        self.seed = seed
        self.model = model
        self.host = host
        self.port = port
        self.p_5xx = self.p_hang = self.p_garbage = self.hang_s = 0.0
        self.burst_429_every = self.burst_429_len = 0
        self._apply_faults(
            p_5xx=p_5xx, p_hang=p_hang, hang_s=hang_s, p_garbage=p_garbage,
            burst_429_every=burst_429_every, burst_429_len=burst_429_len,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._capacity_slots: asyncio.Semaphore | None = None
        self._in_flight = self._open = 0
        self._reset_counters()

    # ----------------------------------------------------------------- public API

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> int:
        """Serve from a background thread with its own event loop; returns the port."""
        if self._thread is not None:
            raise RuntimeError("FakeTeacher is already running")
        sock = self.bind()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(sock, on_ready=ready.set))
            except BaseException as error:  # reported to start() or lost after stop()
                failure.append(error)
                ready.set()

        self._thread = threading.Thread(target=run, name=f"fake-teacher-{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise RuntimeError("FakeTeacher failed to start") from failure[0]
        return self.port

    def stop(self) -> None:
        """Stop the background server; hung requests are abandoned, not waited for."""
        if self._thread is None:
            return
        self.request_stop()
        self._thread.join()
        self._thread = None

    def __enter__(self) -> FakeTeacher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (same as GET /stats)."""
        return self._in_server_loop(self._stats_snapshot)

    def reset_stats(self) -> None:
        """Zero the counters, restart the 429 windows and reseed the fault draws."""
        self._in_server_loop(self._reset_counters)

    def set_faults(self, **faults: float) -> None:
        """Change fault settings (names in FAULT_OPTIONS) while serving; counters are kept."""
        self._in_server_loop(self._apply_faults, **faults)

    def bind(self) -> socket.socket:
        """Bind the listening socket on host:port and record the port actually bound."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        return sock

    async def serve(self, sock: socket.socket, on_ready: Callable[[], None] = lambda: None) -> None:
        """Serve on a bound socket in the running loop until `request_stop` is called."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._capacity_slots = asyncio.Semaphore(self.capacity)
        runner = web.AppRunner(
            self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock, backlog=4096).start()
            on_ready()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
            self._loop = None

    def request_stop(self) -> None:
        """Ask `serve` to return; safe from any thread."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)

    def make_app(self) -> web.Application:
        """The aiohttp application with all routes."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_post("/stats/reset", self._handle_stats_reset)
        app.router.add_post("/faults", self._handle_faults)
        return app

    # ------------------------------------------------------------------ handlers

    async def _handle_chat(self, request: web.Request) -> web.Response:
        counts = self._counts
        counts["received"] += 1
        if not self._authorized(request):
            counts["unauthorized"] += 1
            return _error(401, "invalid_api_key", "Incorrect API key provided.")
        number = self._requests_numbered
        self._requests_numbered += 1
        if self._in_429_burst(number):
            counts["fault_429"] += 1
            return _error(429, "rate_limit_exceeded", "Rate limit reached.", {"Retry-After": "1"})
        fault = self._draw_fault()
        try:
            body = _loads(await request.read())
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, TypeError, KeyError) as problem:
            counts["bad_request"] += 1
            return _error(400, "invalid_request_error", f"Bad request: {problem}")
        if body.get("stream"):
            counts["bad_request"] += 1
            return _error(400, "invalid_request_error", "Streaming is not supported.")
        self._open += 1
        self._max_open = max(self._max_open, self._open)
        try:
            if fault == "hang":
                counts["fault_hang"] += 1
                await self._sleep_unless_stopping(self.hang_s)
                return _json(self._completion(body, number))
            await self._process()
            if fault in _SERVER_ERRORS:
                counts["fault_5xx"] += 1
                return _error(fault, "server_error", "The server had an error.")
            if fault == "garbage":
                counts["fault_garbage"] += 1
                return web.Response(body=_GARBAGE_BODY, content_type="application/json")
            response = _json(self._completion(body, number))
            counts["ok"] += 1
            return response
        finally:
            self._open -= 1

    async def _handle_models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid_api_key", "Incorrect API key provided.")
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "synthrank-tests"}
        return _json({"object": "list", "data": [model]})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json(self._stats_snapshot())

    async def _handle_stats_reset(self, request: web.Request) -> web.Response:
        self._reset_counters()
        return _json(self._stats_snapshot())

    async def _handle_faults(self, request: web.Request) -> web.Response:
        try:
            self._apply_faults(**_loads(await request.read()))
        except (ValueError, TypeError) as problem:
            return _error(400, "invalid_request_error", str(problem))
        return _json({name: getattr(self, name) for name in FAULT_OPTIONS})

    # ------------------------------------------------------------ request logic

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _in_429_burst(self, number: int) -> bool:
        every = self.burst_429_every
        return every > 0 and number % every >= every - self.burst_429_len

    def _draw_fault(self) -> str | int | None:
        """One draw per request, in arrival order, so a seed reproduces the fault sequence."""
        draw = self._fault_rng.random()
        if draw < self.p_5xx:
            return self._fault_rng.choice(_SERVER_ERRORS)
        if draw < self.p_5xx + self.p_hang:
            return "hang"
        if draw < self.p_5xx + self.p_hang + self.p_garbage:
            return "garbage"
        return None

    async def _process(self) -> None:
        """Hold one capacity slot for the latency."""
        async with self._capacity_slots:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                if self.latency_ms > 0:
                    await asyncio.sleep(self.latency_ms / 1000)
            finally:
                self._in_flight -= 1

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _completion(self, body: dict, number: int) -> dict:
        messages = body["messages"]
        n = max(1, int(body.get("n") or 1)) if self.honour_n else 1
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        prompt = _last_user_text(messages)
        choices = []
        completion_tokens = 0
        for index in range(n):
            reasoning, content = self._answer(messages, prompt, body.get("seed"), index)
            reasoning, content, finish_reason = _truncate(reasoning, content, max_tokens)
            completion_tokens += _count_tokens(reasoning) + _count_tokens(content)
            message = {"role": "assistant", "content": content}
            if reasoning is not None:
                message["reasoning_content"] = reasoning
            choices.append(
                {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}
            )
        prompt_tokens = sum(_count_tokens(_text_of(m.get("content"))) for m in messages)
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _answer(self, messages: list, prompt: str, seed: int | None, index: int) -> tuple[str | None, str]:
        """(reasoning or None, content) of one choice."""
        if self.mode == "fixed":
            return None, self.fixed_content
        if self.mode == "echo":
            return None, prompt
        if _QUERY_REQUEST.search(prompt):
            return None, _written_queries(prompt)
        passages = _passages(prompt) or _passages(_all_user_text(messages))
        ranking = self._rank(passages, prompt, seed, index)
        answer = "<answer>" + " > ".join(f"[{pid}]" for pid in ranking) + "</answer>"
        reasoning = _reasoning(passages, ranking, self.mode)
        if self.reasoning_field:
            return reasoning, answer
        return None, f"<think>{reasoning}</think> {answer}"

    def _rank(self, passages: list[tuple[int, int | None]], prompt: str, seed: int | None, index: int) -> list[int]:
        ids = [pid for pid, _ in passages]
        if self.mode == "identity":
            return ids
        if self.mode == "random":
            rng = self._answer_rng if seed is None else random.Random(
                f"{seed}:{index}:{zlib.crc32(prompt.encode())}"
            )
            return rng.sample(ids, len(ids))
        scores = [float("-inf") if score is None else score for _, score in passages]
        order = sorted(range(len(ids)), key=lambda position: -scores[position])  # stable: ties by position
        return [ids[position] for position in order]

    # ------------------------------------------------------------ state

    def _apply_faults(self, **faults: float) -> None:
        unknown = set(faults) - set(FAULT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown fault options {sorted(unknown)}; known: {FAULT_OPTIONS}")
        merged = {name: getattr(self, name) for name in FAULT_OPTIONS} | faults
        if not all(0 <= merged[name] <= 1 for name in ("p_5xx", "p_hang", "p_garbage")):
            raise ValueError("fault probabilities must be within [0, 1]")
        if merged["p_5xx"] + merged["p_hang"] + merged["p_garbage"] > 1:
            raise ValueError("p_5xx + p_hang + p_garbage must not exceed 1")
        if not 0 <= merged["burst_429_len"] <= merged["burst_429_every"]:
            raise ValueError("need 0 <= burst_429_len <= burst_429_every")
        for name, value in merged.items():
            setattr(self, name, int(value) if name.startswith("burst_") else float(value))

    def _reset_counters(self) -> None:
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._requests_numbered = 0
        self._fault_rng = random.Random(self.seed)
        self._answer_rng = random.Random(self.seed + 1)
        self._max_in_flight = self._in_flight
        self._max_open = self._open

    def _stats_snapshot(self) -> dict[str, int]:
        return {
            **self._counts,
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "open": self._open,
            "max_open": self._max_open,
        }

    def _in_server_loop(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `function` on the server's loop thread when it runs in another thread."""
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            return function(*args, **kwargs)
        result: concurrent.futures.Future = concurrent.futures.Future()

        def call() -> None:
            try:
                result.set_result(function(*args, **kwargs))
            except Exception as error:
                result.set_exception(error)

        loop.call_soon_threadsafe(call)
        return result.result(timeout=10)


# ------------------------------------------------------------------- helpers


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_dumps(payload), status=status, headers=headers, content_type="application/json")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    error = {"message": message, "type": code, "param": None, "code": code}
    return _json({"error": error}, status=status, headers=headers)


def _text_of(content: Any) -> str:
    """Text of a message content: a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


_QUERY_REQUEST = re.compile(r"Write (\d+) different \w+ for this passage")
_QUOTED_PASSAGE = re.compile(r"<<<\n(.*?)\n>>>", re.S)


def _written_queries(prompt: str) -> str:
    """k queries for the passage of a query-writing prompt (see the module doc)."""
    count = int(_QUERY_REQUEST.search(prompt).group(1))
    found = _QUOTED_PASSAGE.search(prompt)
    words = " ".join((found.group(1) if found else "").split()[:6]).lower()
    queries = [words, words + " ?"] + [f"unrelated zebra violin harbour {i}" for i in range(count)]
    return "\n".join(f"<query>{query}</query>" for query in queries[:count])


def _all_user_text(messages: list) -> str:
    """All user turns, for prompts that give one passage per turn (RankGPT style)."""
    return "\n".join(
        _text_of(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"
    )


def _passages(text: str) -> list[tuple[int, int | None]]:
    """(id, score or None) of each `[i] ` line start, first occurrence of an id kept."""
    starts = list(_PASSAGE_START.finditer(text))
    found: dict[int, int | None] = {}
    for position, match in enumerate(starts):
        pid = int(match.group(1))
        if pid in found:
            continue
        end = starts[position + 1].start() if position + 1 < len(starts) else len(text)
        score = _SCORE.search(text, match.end(), end)
        found[pid] = int(score.group(1)) if score else None
    return list(found.items())


def _reasoning(passages: list[tuple[int, int | None]], ranking: list[int], mode: str) -> str:
    if not ranking:
        return "I found no passages to rank."
    if mode == "score":
        scores = dict(passages)
        best = ranking[0]
        return (
            f"There are {len(ranking)} passages. Passage [{best}] is the most relevant "
            f"(score {scores[best]}); the others follow by decreasing score."
        )
    return f"There are {len(ranking)} passages; passage [{ranking[0]}] comes first."


def _count_tokens(text: str | None) -> int:
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN if text else 0


def _truncate(reasoning: str | None, content: str, max_tokens: Any) -> tuple[str | None, str, str]:
    """Cut the output to about max_tokens tokens, reasoning first; finish_reason 'length' if cut."""
    if not max_tokens:
        return reasoning, content, "stop"
    budget = int(max_tokens) * _CHARS_PER_TOKEN
    if len(reasoning or "") + len(content) <= budget:
        return reasoning, content, "stop"
    if reasoning is not None:
        reasoning = reasoning[:budget]
        budget -= len(reasoning)
    return reasoning, content[:budget], "length"


# ----------------------------------------------------------------------- CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_teacher",
        description="Fake OpenAI-compatible teacher on loopback; prints READY <port> when listening.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default="score")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--capacity", type=int, default=64)
    parser.add_argument("--reasoning-field", action="store_true")
    parser.add_argument("--fixed-content", default="")
    parser.add_argument("--ignore-n", action="store_true", help="answer one choice whatever n is")
    parser.add_argument("--p-5xx", type=float, default=0.0)
    parser.add_argument("--p-hang", type=float, default=0.0)
    parser.add_argument("--hang-s", type=float, default=60.0)
    parser.add_argument("--p-garbage", type=float, default=0.0)
    parser.add_argument("--burst-429-every", type=int, default=0)
    parser.add_argument("--burst-429-len", type=int, default=0)
    parser.add_argument("--api-key-env", help="name of an environment variable holding the required key")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="fake-teacher")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run a FakeTeacher in the foreground until SIGTERM or SIGINT."""
    args = _parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            sys.exit(f"fake_teacher: environment variable {args.api_key_env} is not set")
    teacher = FakeTeacher(
        mode=args.mode, latency_ms=args.latency_ms, capacity=args.capacity,
        reasoning_field=args.reasoning_field, fixed_content=args.fixed_content,
        honour_n=not args.ignore_n, p_5xx=args.p_5xx, p_hang=args.p_hang, hang_s=args.hang_s,
        p_garbage=args.p_garbage, burst_429_every=args.burst_429_every,
        burst_429_len=args.burst_429_len, api_key=api_key, seed=args.seed, model=args.model,
        host=args.host, port=args.port,
    )
    sock = teacher.bind()

    def announce_ready() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, teacher.request_stop)
        print(f"READY {teacher.port}", flush=True)

    asyncio.run(teacher.serve(sock, on_ready=announce_ready))


if __name__ == "__main__":
    main()
