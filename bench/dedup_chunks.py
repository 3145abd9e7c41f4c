"""Benchmark: staging listwise rows with a dedup chain, chunk by chunk against all at once.

Rows are shaped as the listwise stage stages them (query, 20 candidate docids, ranking,
reasoning; `--samples` rows per list) with queries resampled from the CISI and CACM
queries (each takes the length of a real query and random words of their vocabulary; a
tenth are copies of an earlier query with one word changed). The chain is
`minhash_dedup` on the query with `group_field: list_id` and `against_published: true`.

Two runs in the same process, each on its own warehouse file:
  - chunked: `RowStager.add` per chunk of `--chunk` lists, made as they are staged (what the
    listwise stage does, `LIST_CHUNK` = 2,000);
  - whole set: every row made first, then one `stage_rows` call (what the stage did before
    issue 17 when the chain had a dedup filter, and the baseline here).
For each: peak Python memory (tracemalloc: Python objects and numpy arrays, not DuckDB's
own memory), wall time, and a check that both staged the same rows and rejections.

Last, what a streaming dedup filter carries per kept row (tracemalloc, after `--kept`
distinct texts went through it in chunks of 2,000): exact, MinHash and semantic (the
default model, on a fifth as many texts).

    .venv/bin/python bench/dedup_chunks.py                 # 20,000 lists x 2 samples
    .venv/bin/python bench/dedup_chunks.py --lists 5000 --kept 5000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Iterator

import yaml

from filters.dedup import ExactDedupFilter, MinHashDedupFilter, SemanticDedupFilter
from flows.spec import load_spec
from flows.stages.filtering import RowStager, stage_rows
from warehouse.db import Warehouse
from warehouse.versions import begin_version, load_rows


def data_dir() -> Path:
    return Path(os.environ.get("SYNTHRANK_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def real_queries() -> list[str]:
    texts = []
    for name in ("cisi", "cacm"):
        path = data_dir() / name / "queries.jsonl"
        if not path.exists():
            sys.exit(f"{path} not found: the benchmark needs ../shared/data (or SYNTHRANK_DATA)")
        with path.open(encoding="utf-8") as lines:
            texts += [json.loads(line)["text"] for line in lines]
    return texts


def synthetic_queries(count: int, seed: int) -> Iterator[str]:
    """Queries of real lengths from the real vocabulary; a tenth near copies of earlier ones."""
    rng = random.Random(seed)
    real = real_queries()
    vocabulary = sorted({w for text in real for w in text.split()})
    made: list[str] = []
    for _ in range(count):
        if made and rng.random() < 0.1:
            words = rng.choice(made).split()
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        else:
            words = rng.choices(vocabulary, k=max(3, len(rng.choice(real).split())))
        made.append(" ".join(words))
        yield made[-1]


def list_rows(index: int, query: str, samples: int, rng: random.Random) -> list[dict]:
    """The samples of one list, shaped as generators.listwise.build_row makes them."""
    docids = [f"d{rng.randrange(1_000_000)}" for _ in range(20)]
    rows = []
    for sample in range(samples):
        order = rng.sample(range(1, 21), 20)
        rows.append({
            "row_id": f"l{index:07d}-{sample}", "list_id": f"l{index:07d}", "qid": f"q{index}",
            "domain": "bench", "query": query, "initial_list": docids,
            "final_list": [docids[i - 1] for i in order], "permutation": order,
            "answer": " > ".join(f"[{i}]" for i in order),
            "reasoning": " ".join(rng.choices(query.split(), k=80)), "sample_index": sample,
            "finish_reason": "stop", "reason": None, "call_keys": [f"{index:032x}{sample}"],
        })
    return rows


def chunks_of_rows(args: argparse.Namespace) -> Iterator[list[dict]]:
    rng = random.Random(args.seed)
    chunk: list[dict] = []
    for index, query in enumerate(synthetic_queries(args.lists, args.seed)):
        chunk += list_rows(index, query, args.samples, rng)
        if (index + 1) % args.chunk == 0:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_spec(folder: Path) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "dataset": "bench", "output": str(folder / "out"),
        "sources": [{"name": "cisi", "domain": "library-science", "path": str(data_dir() / "cisi")}],
        "listwise": {"samples": 2},
        "filters": {"listwise": [{"name": "minhash_dedup", "key": "query", "group_field": "list_id",
                                  "against_published": True}]},
    }))
    return spec


def measured(run) -> tuple[dict, float, float]:
    """(what run returned, peak MiB of Python memory during it, seconds)."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result, peak, seconds


def stage(folder: Path, args: argparse.Namespace, chunked: bool) -> tuple[dict, float, float, dict]:
    spec = load_spec(write_spec(folder))
    with Warehouse.open(folder / "wh.duckdb") as wh:
        version = begin_version(wh, "bench", {"dataset": "bench"}, ["snap-1"])

        def chunk_by_chunk() -> dict:
            stager = RowStager(spec, wh, version, "listwise", ["snap-1"])
            for rows in chunks_of_rows(args):
                stager.add(rows, [])
            return stager.result()

        def all_at_once() -> dict:
            rows = [row for chunk in chunks_of_rows(args) for row in chunk]
            return stage_rows(spec, wh, version, "listwise", ["snap-1"], rows, [])

        counts, peak, seconds = measured(chunk_by_chunk if chunked else all_at_once)
        rejections = wh.con.execute("SELECT row_id, stage, reason, score FROM rejections ORDER BY row_id").fetchall()
        staged = {"rows": [row["row_id"] for row in load_rows(wh, "bench", version, "listwise")],
                  "rejections": rejections, "counts": counts}
    return counts, peak, seconds, staged


def kept_bytes_per_row(flt, texts: list[str]) -> tuple[float, int]:
    """(bytes of Python memory a streaming `flt` holds per kept row, rows kept) after judging
    `texts` in chunks of 2,000 made and dropped in turn (so the labels it keeps count). The
    grown matrices' spare capacity (up to a third) counts too."""
    list(flt.apply([{"text": texts[0]}]))  # load the model, if any, before measuring
    streaming = flt.streaming()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = 0
    for start in range(0, len(texts), 2000):
        rows = [{"row_id": f"r{i:07d}", "text": texts[i]} for i in range(start, min(start + 2000, len(texts)))]
        kept += sum(verdict.keep for _, verdict in streaming.apply(rows))
    del rows
    if hasattr(streaming.kept, "kept_matrix"):
        streaming.kept.kept_matrix()  # adds the last chunk's kept rows, as the next chunk would
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / kept, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2000, help="lists per chunk (LIST_CHUNK)")
    parser.add_argument("--kept", type=int, default=20_000, help="texts for the bytes-per-kept-row figures")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.lists:,} lists x {args.samples} samples, "
          f"chunks of {args.chunk:,} lists; chain: minhash_dedup(query, group_field=list_id)")
    with tempfile.TemporaryDirectory() as folder:  # imports and first-use caches, not measured
        stage(Path(folder), argparse.Namespace(**{**vars(args), "lists": 10, "chunk": 5}), True)
    results = {}
    for name, chunked in (("whole set", False), ("chunked", True)):
        with tempfile.TemporaryDirectory() as folder:
            counts, peak, seconds, staged = stage(Path(folder), args, chunked)
        results[name] = staged
        step = counts["filters"][0]
        print(f"{name:>10}: peak Python memory {peak:8.1f} MiB, {seconds:6.1f} s; "
              f"staged {counts['accepted']:,} rows, {step['name']} rejected {step['rejected']:,}")
    same = results["whole set"] == results["chunked"]
    print(f"same rows, rejections (reason, score) and counts: {same}")

    texts = list(synthetic_queries(args.kept, args.seed + 1))
    for flt, count in ((ExactDedupFilter(key="text"), args.kept), (MinHashDedupFilter(key="text"), args.kept),
                       (SemanticDedupFilter(key="text"), max(1, args.kept // 5))):
        per_row, kept = kept_bytes_per_row(flt, texts[:count])
        print(f"{flt.name:>15}: {per_row:7.0f} bytes per kept row ({kept:,} of {count:,} rows kept)")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
