"""Teacher throughput: how close synthrank keeps a teacher to its limit C/L.

A loopback stub (tests/fake_teacher.py, in a subprocess so it does not share our GIL) answers
valid listwise rankings after L ms with at most C requests at once, so no client can exceed
C/L calls/s. For each C this prints, in one run:

- baselines: a bare aiohttp loop (C coroutines posting a fixed body, parsing the JSON) and the
  ``openai`` client over aiohttp (``DefaultAioHttpClient``, max_retries=0), nothing else;
- synthrank end to end, as the listwise stage runs it: prompt build (plan_samples), calls
  through TeacherRunner with max_in_flight = C, parse and validate (rank_samples, build_row),
  record in a real DuckDB warehouse file (teacher_calls, then the staged rows). "teacher phase"
  times the calls with their parsing, validation and recording (rank_samples + build_row);
  "whole pipeline" adds opening the warehouse, the version, planning and staging the rows;
- the same pipeline run again on the finished warehouse (every answer reused, no call).

Figures (medians of interleaved runs: the machine is shared and its load drifts): calls/s and
its fraction of C/L; client CPU per call (process CPU time, all threads, DuckDB's included,
over calls): the overhead synthrank adds per call.

    .venv/bin/python bench/teacher_throughput.py                # C = 16, 64, 256; L = 200 ms
    .venv/bin/python bench/teacher_throughput.py --capacity 64 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generators.candidates import CandidateList  # noqa: E402
from generators.listwise import ListwiseConfig, build_row, plan_samples, rank_samples  # noqa: E402
from generators.teachers import Sampling, TeacherRunner  # noqa: E402
from generators.teachers.openai_compat import OpenAIBackend  # noqa: E402
from generators.teachers.runner import fewer_collections  # noqa: E402
from prompts import load_prompt  # noqa: E402
from warehouse.calls import CallStore  # noqa: E402
from warehouse.db import Warehouse  # noqa: E402
from warehouse.versions import add_rejections, add_rows, begin_version  # noqa: E402

MODEL = "fake-teacher"
WINDOW = 8
SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_tokens=256, seed=0)


def start_stub(capacity: int, latency_ms: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_teacher", "--port", "0", "--mode", "score",
         "--capacity", str(capacity), "--latency-ms", str(latency_ms)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().split()
    if line[:1] != ["READY"]:
        process.kill()
        raise RuntimeError(f"fake teacher did not start: {line}")
    return process, f"http://127.0.0.1:{line[1]}/v1"


def synthetic_lists(count: int) -> tuple[list[CandidateList], dict[str, tuple[str, str]]]:
    """``count`` candidate lists of WINDOW passages, each passage carrying a score the stub ranks by."""
    passages, lists = {}, []
    for q in range(count):
        docids = tuple(f"d{q}-{i}" for i in range(WINDOW))
        for i, docid in enumerate(docids):
            passages[docid] = (f"Title {docid}", f"Passage {docid} about topic {q}; score={(q * 7 + i * 5) % 23}. "
                               + "Some more words of the passage body. " * 6)
        lists.append(CandidateList("bench-snapshot", "bench", f"q{q}", f"what about topic {q}?", docids))
    return lists, passages


def one_request_body(lists, passages) -> bytes:
    prompt = load_prompt("listwise_reasonrank")
    planned = plan_samples(lists[:1], passages, prompt, ListwiseConfig(window=WINDOW, passage_tokens=64),
                           MODEL, SAMPLING)
    call = planned[0].first_call
    return orjson.dumps({"model": MODEL, "messages": call.message_dicts(), "temperature": 0.0,
                         "max_tokens": 256, "seed": 0})


async def bare_aiohttp(base_url: str, body: bytes, calls: int, concurrency: int) -> int:
    """C coroutines posting the same body in a loop; counts valid answers."""
    remaining, answered = calls, 0
    url = base_url + "/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def worker() -> None:
            nonlocal remaining, answered
            while remaining > 0:
                remaining -= 1
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    data = orjson.loads(await r.read())
                answered += bool(data["choices"][0]["message"]["content"])
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


async def openai_client(base_url: str, body: bytes, calls: int, concurrency: int) -> int:
    """The ``openai`` package over aiohttp, C requests at once."""
    import openai

    request = orjson.loads(body)
    remaining, answered = calls, 0
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                  http_client=openai.DefaultAioHttpClient()) as client:
        async def worker() -> None:
            nonlocal remaining, answered
            while remaining > 0:
                remaining -= 1
                response = await client.chat.completions.create(**request)
                answered += bool(response.choices[0].message.content)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


def measured(function, *args) -> tuple[object, float, float]:
    """(result, wall seconds, process CPU seconds of all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


@contextmanager
def phase(timings: dict[str, list[float]], name: str):
    """Add the block's (wall, CPU) seconds to ``timings[name]``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    timings[name] = [time.perf_counter() - wall, time.process_time() - cpu]


def listwise_pipeline(warehouse_path: Path, base_url: str, lists, passages, max_in_flight: int) -> dict:
    """What the listwise stage does, minus Prefect: plan, call, parse, validate, record.
    Returns the counts and the (wall, CPU) seconds of each phase."""
    prompt = load_prompt("listwise_reasonrank")
    config = ListwiseConfig(window=WINDOW, passage_tokens=64)
    backend = OpenAIBackend(base_url, MODEL, max_in_flight=max_in_flight, timeout_s=30)
    timings: dict[str, list[float]] = {}
    with phase(timings, "open+version"):
        warehouse = Warehouse.open(warehouse_path)
        version = begin_version(warehouse, "bench", {"bench": True}, ["bench-snapshot"])
    with phase(timings, "plan"):
        planned = plan_samples(lists, passages, prompt, config, MODEL, SAMPLING)
    with phase(timings, "teacher"), fewer_collections():  # calls, parse, validate, record the calls; the rows
        runner = TeacherRunner(backend, CallStore(warehouse), show_progress=False)
        rankings, stats = rank_samples(planned, runner, "listwise")
        rows = [build_row(ranking, prompt, backend.name) for ranking in rankings]
    with phase(timings, "stage rows"):
        accepted = [row for row in rows if row["reason"] is None]
        add_rows(warehouse, "bench", version, "listwise", accepted)
        add_rejections(warehouse, "bench", version, "listwise",
                       [(row, "validate", row["reason"], None) for row in rows if row["reason"]])
    with phase(timings, "close"):
        warehouse.close()
    return {"accepted": len(accepted), "made": stats.calls_made, "reused": stats.calls_reused,
            "timings": timings}


def bench_capacity(capacity: int, latency_ms: float, seconds: float, repeats: int, baselines: bool) -> None:
    """Each client ``repeats`` times, interleaved (the machine is shared: load drifts); medians."""
    limit = capacity / (latency_ms / 1000)
    calls = int(limit * seconds)
    lists, passages = synthetic_lists(calls)
    body = one_request_body(lists, passages)
    process, base_url = start_stub(capacity, latency_ms)
    runs: dict[str, list[tuple[float, float]]] = {}
    firsts, reruns = [], []
    print(f"\nC={capacity} L={latency_ms:g} ms: limit C/L = {limit:.0f} calls/s, {calls} calls a run, "
          f"{repeats} runs each, load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        for _ in range(repeats):
            if baselines:
                for name, client in (("bare aiohttp", bare_aiohttp), ("openai + aiohttp", openai_client)):
                    answered, wall, cpu = measured(asyncio.run, client(base_url, body, calls, capacity))
                    runs.setdefault(name, []).append((answered / wall, cpu / answered))
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "bench.duckdb"
                first = listwise_pipeline(path, base_url, lists, passages, capacity)
                assert first["made"] == calls and first["accepted"] == calls, first
                again = listwise_pipeline(path, base_url, lists, passages, capacity)
                assert again["made"] == 0 and again["reused"] == calls and again["accepted"] == calls, again
            firsts.append(first["timings"])
            reruns.append(again["timings"])
            teacher_wall, teacher_cpu = first["timings"]["teacher"]
            whole_wall, whole_cpu = (sum(t[i] for t in first["timings"].values()) for i in (0, 1))
            runs.setdefault("synthrank teacher phase", []).append((calls / teacher_wall, teacher_cpu / calls))
            runs.setdefault("synthrank whole pipeline", []).append((calls / whole_wall, whole_cpu / calls))
    finally:
        process.terminate()
        process.wait(timeout=10)
    for name, results in runs.items():
        rates = sorted(rate for rate, _ in results)
        cpu_ms = statistics.median(cpu for _, cpu in results) * 1000
        print(f"  {name:25s} {statistics.median(rates):7.1f} calls/s = {statistics.median(rates) / limit:6.1%} of C/L "
              f"(runs {rates[0] / limit:.0%}..{rates[-1] / limit:.0%}); client CPU {cpu_ms:.2f} ms/call")
    whole = statistics.median(sum(t[0] for t in r.values()) / sum(t[0] for t in f.values())
                              for f, r in zip(firsts, reruns))
    teacher = statistics.median(r["teacher"][0] / f["teacher"][0] for f, r in zip(firsts, reruns))
    print(f"  {'rerun, all reused':25s} no call made; wall time {whole:.1%} of the first run's "
          f"(teacher phase {teacher:.1%} of its first run's)")
    for label, timings in (("first run", firsts), ("rerun", reruns)):
        parts = ", ".join(f"{name} {statistics.median(t[name][0] for t in timings):.2f}"
                          for name in timings[0])
        print(f"  {label + ' wall s':25s} {parts}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run at the limit")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each client per capacity")
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    for capacity in args.capacity:
        bench_capacity(capacity, args.latency_ms, args.seconds, args.repeats, not args.no_baselines)


if __name__ == "__main__":
    main()
