"""Scale: does a build's cost follow the work asked of it?

Generates a seeded synthetic collection (default 1,000,000 passages and 100,000 queries)
by resampling the words of the shared CISI and CACM collections, then measures, each step
in its own process (wall time and that process's peak RSS):

- ingest (``synthrank ingest``), beside DuckDB's own ``read_json`` of the same files in the
  same run (the baseline ingestion is measured against);
- the snapshot's BM25 index, built once and saved beside the warehouse;
- listwise builds (bm25 k, one window, one sample) asking for each of ``--asks`` queries,
  against a zero-latency loopback teacher (tests/fake_teacher.py in its own process):
  wall, the flow's candidates / listwise / publish+export seconds, peak RSS, warehouse size;
- the rerun of each build (every answer stored): wall with Prefect's temporary server
  (no PREFECT_API_URL) and, with ``--prefect-server``, against a running Prefect server;
- per-query slopes of candidates + listwise, and of peak RSS, between consecutive sizes;
- with ``--dask``, the largest build again on a local Dask cluster of 2 workers, from a copy
  of the warehouse as the threads build found it, and whether its rows are the same.

A rerun is the same spec again: with ``publish: if_changed`` (the default) it builds nothing
and publishes nothing, so its time is the fixed cost of a build (README, "Cost that follows
the work").

    .venv/bin/python bench/scale.py                                   # 1M passages, 100k queries
    .venv/bin/python bench/scale.py --passages 100000 --queries 10000 --asks 1000,10000
    .venv/bin/python bench/scale.py --passages 20000 --queries 2000 --asks 200,2000 --prefect-server
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MIB = 1024 * 1024


# --------------------------------------------------------------------------- collection

def source_words(collections: list[str]) -> tuple[list[str], list[str], list[int], list[int]]:
    """Words of the shared collections' passages and queries, and their lengths in words."""
    passage_words, query_words, passage_lengths, query_lengths = [], [], [], []
    for name in collections:
        for line in (SHARED / name / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            words = f"{record.get('title', '')} {record.get('text', '')}".split()
            passage_words += words
            passage_lengths.append(max(len(words), 8))
        for line in (SHARED / name / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            words = json.loads(line)["text"].split()
            query_words += words
            query_lengths.append(max(len(words), 3))
    return passage_words, query_words, passage_lengths, query_lengths


def write_collection(folder: Path, passages: int, queries: int, seed: int) -> None:
    """A BEIR folder of ``passages`` and ``queries`` whose texts are runs of words drawn
    (seeded) from the shared collections, with those collections' length distributions."""
    rng = random.Random(seed)
    passage_words, query_words, passage_lengths, query_lengths = source_words(["cisi", "cacm"])
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for i in range(passages):
            length = rng.choice(passage_lengths)
            start = rng.randrange(len(passage_words) - length)
            words = passage_words[start:start + length]
            rng.shuffle(words)
            out.write(json.dumps({"_id": f"d{i}", "title": " ".join(words[:6]), "text": " ".join(words[6:])}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for i in range(queries):
            length = rng.choice(query_lengths)
            out.write(json.dumps({"_id": f"q{i}", "text": " ".join(rng.choices(query_words, k=length))}) + "\n")


# --------------------------------------------------------------------------- measuring

def timed(command: list[str], env: dict | None = None) -> dict:
    """Run a command: its wall seconds, CPU seconds and peak RSS in MiB (os.wait4 in a small
    wrapper process, so only the command is counted) and stdout."""
    marker = "SCALE_PEAK_KB="
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-c", _WRAPPER, marker, *command], cwd=REPO, text=True,
                             env={**os.environ, **(env or {})}, capture_output=True)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{process.stderr[-3000:]}")
    lines = process.stdout.splitlines()
    peak_kb, cpu = next(line for line in lines if line.startswith(marker))[len(marker):].split()
    return {"wall": wall, "cpu": float(cpu), "rss_mib": int(peak_kb) / 1024,
            "stdout": "\n".join(line for line in lines if not line.startswith(marker))}


# Runs the command as its child and reports that child's peak RSS (os.wait4) on stdout.
_WRAPPER = """
import os, subprocess, sys
marker, *command = sys.argv[1:]
process = subprocess.Popen(command)
_, status, usage = os.wait4(process.pid, 0)
print(f"{marker}{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def duckdb_read_json(folder: Path) -> float:
    """Seconds DuckDB takes to read the corpus and queries with read_json into a table, with
    the memory limit synthrank's warehouse connections use."""
    import duckdb

    from warehouse.db import DEFAULT_MEMORY_LIMIT, MEMORY_LIMIT_ENV

    con = duckdb.connect(str(folder.parent / "read_json.duckdb"))
    con.execute("SET memory_limit = ?", [os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT])
    started = time.perf_counter()
    for name in ("corpus", "queries"):
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_json('{folder / (name + '.jsonl')}')")
    seconds = time.perf_counter() - started
    con.close()
    (folder.parent / "read_json.duckdb").unlink()
    return seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_teacher() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(python("-m", "tests.fake_teacher", "--port", "0", "--mode", "identity",
                                      "--capacity", "256", "--latency-ms", "0"),
                               cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline().split()
    if line[:1] != ["READY"]:
        process.kill()
        raise RuntimeError(f"fake teacher did not start: {line}")
    return process, f"http://127.0.0.1:{line[1]}/v1"


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    """A Prefect server of our own (its own PREFECT_HOME), and its API URL once healthy."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    process = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start",
                                "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return process, url
        except OSError:
            time.sleep(1)
    process.kill()
    raise RuntimeError("prefect server did not become healthy in 180 s")


def write_spec(work: Path, asks: int, base_url: str, k: int, runner: dict | None = None) -> Path:
    spec = work / f"scale-{asks}.yaml"
    spec.write_text(json.dumps({
        "dataset": f"scale-{asks}", "output": "out", "warehouse": "scale.duckdb",
        "runner": runner or {"kind": "threads"},
        "sources": [{"name": "scale", "domain": "synthetic", "queries": asks}],
        "candidates": {"method": "bm25", "k": k},
        "listwise": {"window": k, "samples": 1},
        "teacher": {"backend": "openai", "base_url": base_url, "model": "fake-teacher", "max_in_flight": 256,
                    "max_retries": 2},
        "sampling": {"temperature": 0.0, "max_tokens": 256},
    }, indent=2), encoding="utf-8")
    return spec


_BUILD = """
import json, sys
from flows.cli import _prepare_prefect
_prepare_prefect()
from flows.prefect_server import start_server_early
start_server_early()  # as `synthrank build` does
from flows.build import run_build
summary = run_build(sys.argv[1])
print("SUMMARY=" + json.dumps({key: summary.get(key) for key in ("outcome", "wall_seconds", "timings", "teachers")}))
"""


def build(spec: Path, env: dict | None = None) -> dict:
    result = timed(python("-c", _BUILD, str(spec)), env)
    # DuckDB may draw a progress bar on the same line: take what follows the marker
    summary = next(json.loads(line.split("SUMMARY=", 1)[1]) for line in result["stdout"].splitlines()
                   if "SUMMARY=" in line)
    timings, teachers = summary["timings"] or {}, summary["teachers"] or []  # none when unchanged
    flow = summary["wall_seconds"] or 0.0
    return {"wall": result["wall"], "cpu": result["cpu"], "rss_mib": result["rss_mib"], "flow": flow,
            "outcome": summary["outcome"], "candidates": timings.get("candidates_seconds", 0.0),
            "listwise": timings.get("stage_seconds", {}).get("listwise", 0.0),
            "export": flow - timings.get("build_seconds", flow),
            "calls": sum(t["calls_made"] for t in teachers), "reused": sum(t["calls_reused"] for t in teachers)}


def copy_warehouse(work: Path, into: Path) -> None:
    """The warehouse file and its saved indexes, copied to ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / "scale.duckdb", into / "scale.duckdb")
    shutil.copytree(work / "scale.duckdb.indexes", into / "scale.duckdb.indexes")


def dask_build(work: Path, asks: int, base_url: str, k: int) -> dict:
    """The same build on a local Dask cluster of 2 worker processes."""
    return build(write_spec(work, asks, base_url, k, {"kind": "dask", "n_workers": 2}))


def content(work: Path, asks: int) -> dict:
    """The row fingerprints (per kind) of the dataset's first version in ``work``'s warehouse."""
    from warehouse.db import Warehouse
    from warehouse.versions import version_info

    with Warehouse.open(work / "scale.duckdb", read_only=True) as wh:
        return version_info(wh, f"scale-{asks}", 1)["manifest"]["content"]


def folder_mib(path: Path) -> float:
    files = [path] if path.is_file() else list(path.rglob("*"))
    return sum(f.stat().st_size for f in files if f.is_file()) / MIB


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--asks", default="1000,10000,100000", help="queries each build asks for")
    parser.add_argument("--k", type=int, default=20, help="candidates per query = the listwise window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="folder to work in (default: a temporary one)")
    parser.add_argument("--dask", action="store_true",
                        help="also run the largest build on a local Dask cluster of 2 workers, from a copy of the "
                             "warehouse as that build found it, and compare the rows")
    parser.add_argument("--prefect-server", action="store_true",
                        help="also time each rerun against a running Prefect server (PREFECT_API_URL)")
    args = parser.parse_args()
    asks = [int(a) for a in args.asks.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="synthrank-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load: {os.getloadavg()} | work: {work}", flush=True)

    collection = work / "collection"
    started = time.perf_counter()
    write_collection(collection, args.passages, args.queries, args.seed)
    print(f"collection: {args.passages} passages, {args.queries} queries, "
          f"{folder_mib(collection):.0f} MiB in {time.perf_counter() - started:.1f} s", flush=True)

    warehouse = work / "scale.duckdb"
    ingest = timed(python("-m", "flows.cli", "ingest", str(collection), "--name", "scale", "--domain", "synthetic",
                          "-w", str(warehouse)))
    raw = duckdb_read_json(collection)
    print(f"ingest: {ingest['wall']:.1f} s ({ingest['cpu']:.1f} s CPU), peak {ingest['rss_mib']:.0f} MiB | DuckDB read_json of the "
          f"same files: {raw:.1f} s (ingest at {raw / ingest['wall']:.0%} of its rate) | "
          f"warehouse {folder_mib(warehouse):.0f} MiB", flush=True)

    index = timed(python("-c", _INDEX, str(warehouse)))
    print(f"bm25 index (built once, saved): {index['wall']:.1f} s ({index['cpu']:.1f} s CPU), peak {index['rss_mib']:.0f} MiB, "
          f"{folder_mib(Path(str(warehouse) + '.indexes')):.0f} MiB on disk", flush=True)

    teacher, base_url = start_teacher()
    server = None
    rows = []
    try:
        if args.prefect_server:
            server, api_url = start_prefect_server(work / "prefect-home")
        for count in asks:
            spec = write_spec(work, count, base_url, args.k)
            if args.dask and count == asks[-1]:
                copy_warehouse(work, work / "dask")  # the state this build starts from
            first = build(spec)
            rerun = build(spec)
            row = {"asks": count, "first": first, "rerun": rerun, "warehouse_mib": folder_mib(warehouse),
                   "load": os.getloadavg()[0]}
            if server is not None:
                row["rerun_api"] = build(spec, {"PREFECT_API_URL": api_url})
            rows.append(row)
            print(_row_line(row), flush=True)
        if args.dask:
            dask = dask_build(work / "dask", asks[-1], base_url, args.k)
            same = content(work / "dask", asks[-1]) == content(work, asks[-1])
            print(f"dask ({asks[-1]:,} queries, local cluster of 2 workers): {dask['wall']:.1f} s, {dask['cpu']:.1f} s "
                  f"CPU, peak {dask['rss_mib']:.0f} MiB (flow process) | rows identical to the threads build: {same}",
                  flush=True)
    finally:
        teacher.terminate()
        teacher.wait()
        if server is not None:
            server.terminate()
            server.wait()
    print()
    print(table(rows, args, ingest, raw, index))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


_INDEX = """
import sys, time
from warehouse.db import Warehouse
from warehouse.snapshots import latest_snapshot
from generators.candidates import ensure_bm25_index
with Warehouse.open(sys.argv[1]) as wh:
    ensure_bm25_index(wh, latest_snapshot(wh, "scale").snapshot_id, "en")
"""


def _row_line(row: dict) -> str:
    first, rerun = row["first"], row["rerun"]
    api = f" | rerun with PREFECT_API_URL {row['rerun_api']['wall']:.1f} s" if "rerun_api" in row else ""
    return (f"asks {row['asks']}: first {first['wall']:.1f} s, {first['cpu']:.1f} s CPU (candidates {first['candidates']:.1f}, listwise "
            f"{first['listwise']:.1f}, publish+export {first['export']:.1f}; {first['calls']} calls), peak "
            f"{first['rss_mib']:.0f} MiB | rerun {rerun['wall']:.1f} s, {rerun['cpu']:.1f} s CPU ({rerun['outcome']}){api}")


def table(rows: list[dict], args, ingest: dict, raw: float, index: dict) -> str:
    lines = [f"{args.passages:,} passages, {args.queries:,} queries; bm25 k={args.k}, one window, one sample; "
             f"zero-latency loopback teacher; load {os.getloadavg()[0]:.1f} at the end",
             f"ingest {ingest['wall']:.1f} s ({ingest['cpu']:.1f} s CPU, peak {ingest['rss_mib']:.0f} MiB) vs DuckDB "
             f"read_json {raw:.1f} s; bm25 index built once {index['wall']:.1f} s ({index['cpu']:.1f} s CPU, "
             f"peak {index['rss_mib']:.0f} MiB)", "",
             "| queries asked | first build wall (CPU) | candidates | listwise | publish+export | peak RSS | "
             "warehouse | rerun wall, CPU (outcome) | rerun, API set | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        first, rerun = row["first"], row["rerun"]
        api = (f"{row['rerun_api']['wall']:.1f} s, {row['rerun_api']['cpu']:.1f} s ({row['rerun_api']['outcome']})"
               if "rerun_api" in row else "—")
        lines.append(f"| {row['asks']:,} | {first['wall']:.1f} s ({first['cpu']:.1f} s) | {first['candidates']:.1f} s | "
                     f"{first['listwise']:.1f} s | {first['export']:.1f} s | {first['rss_mib']:,.0f} MiB | "
                     f"{row['warehouse_mib']:,.0f} MiB | {rerun['wall']:.1f} s, {rerun['cpu']:.1f} s ({rerun['outcome']}) | {api} | "
                     f"{row['load']:.1f} |")
    lines.append("")
    for low, high in zip(rows, rows[1:]):
        queries = high["asks"] - low["asks"]
        work_low = low["first"]["candidates"] + low["first"]["listwise"]
        work_high = high["first"]["candidates"] + high["first"]["listwise"]
        lines.append(
            f"{low['asks']:,} -> {high['asks']:,}: candidates + listwise {1000 * work_low / low['asks']:.2f} -> "
            f"{1000 * work_high / high['asks']:.2f} ms/query (ratio "
            f"{(work_high / high['asks']) / max(work_low / low['asks'], 1e-9):.2f}); peak RSS "
            f"{1024 * (high['first']['rss_mib'] - low['first']['rss_mib']) / queries:+.1f} KiB/query")
    if rows:
        first = rows[0]["first"]
        lines.append(f"{rows[0]['asks']:,}-query build with the index saved: candidates {first['candidates']:.1f} s = "
                     f"{first['candidates'] / index['wall']:.0%} of building the index ({index['wall']:.1f} s); "
                     f"whole build {first['cpu']:.1f} s CPU = {first['cpu'] / index['cpu']:.0%} of its "
                     f"{index['cpu']:.1f} s CPU")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
