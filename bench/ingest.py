"""Ingest throughput and memory: synthrank's streaming ingest against DuckDB's own read_json.

Generates a seeded BEIR folder of N passages (sentences resampled from the shared CISI and
CACM collections, or a fixed vocabulary without them) and 1,000 queries, then, each in a
fresh process and a fresh warehouse file:

- ``duckdb read_json``: ``CREATE TABLE … AS SELECT * FROM read_json(corpus.jsonl)`` (the
  baseline: parsing and storing, no validation, no key);
- ``synthrank ingest``: ``warehouse.snapshots.ingest`` of the folder (parse, validate each
  record, stage in chunks, check ids in SQL, fingerprint, write the keyed tables).

Prints passages/s and peak RSS (VmHWM) of each, and the ratio. Run at two sizes to see that
peak RSS does not grow with the corpus::

    python bench/ingest.py --passages 1000000
    python bench/ingest.py --passages 250000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def sentences() -> list[str]:
    """Sentences of the shared collections (or a fixed vocabulary when they are absent)."""
    found = []
    for name in ("cisi", "cacm"):
        corpus = SHARED / name / "corpus.jsonl"
        if corpus.is_file():
            for line in corpus.open():
                text = json.loads(line)["text"]
                found += [s.strip() for s in text.split(".") if len(s.split()) > 4]
    if found:
        return found
    words = "retrieval index query passage ranking model teacher corpus token score judge".split()
    rng = random.Random(0)
    return [" ".join(rng.choice(words) for _ in range(12)) for _ in range(5000)]


def generate(folder: Path, passages: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pool, rng = sentences(), random.Random(seed)
    with (folder / "corpus.jsonl").open("w") as out:
        for i in range(passages):
            text = ". ".join(rng.choice(pool) for _ in range(rng.randint(2, 6))) + "."
            out.write(json.dumps({"_id": f"d{i}", "title": f"Passage {i}", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for i in range(1000):
            out.write(json.dumps({"_id": f"q{i}", "text": rng.choice(pool)}) + "\n")
    return folder


CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
folder, db, mode = {folder!r}, {db!r}, {mode!r}
started = time.perf_counter()
if mode == "duckdb":
    import duckdb
    con = duckdb.connect(db)
    con.execute("CREATE TABLE passages AS SELECT * FROM read_json(?, format='newline_delimited')",
                [folder + "/corpus.jsonl"])
    rows = con.execute("SELECT count(*) FROM passages").fetchone()[0]
    con.close()
else:
    from warehouse.db import Warehouse
    from warehouse.snapshots import ingest
    with Warehouse.open(db) as wh:
        snapshot, _ = ingest(wh, folder, "bench", "bench")
    rows = snapshot.n_passages
seconds = time.perf_counter() - started
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"rows": rows, "seconds": seconds, "peak_rss_mib": peak / 1024}}))
"""


def measure(folder: Path, mode: str, workdir: Path) -> dict:
    db = workdir / f"{mode}.duckdb"
    db.unlink(missing_ok=True)
    code = CHILD.format(repo=str(REPO), folder=str(folder), db=str(db), mode=mode)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["warehouse_mib"] = db.stat().st_size / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the corpus (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="synthrank-ingest-"))
    started = time.perf_counter()
    folder = generate(workdir / f"corpus-{args.passages}", args.passages)
    size = (folder / "corpus.jsonl").stat().st_size / 2**20
    print(f"corpus: {args.passages:,} passages, {size:.0f} MiB JSONL, generated in "
          f"{time.perf_counter() - started:.0f} s; load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    results = {}
    for mode in ("duckdb", "synthrank"):
        runs = [measure(folder, mode, workdir) for _ in range(args.repeat)]
        results[mode] = min(runs, key=lambda r: r["seconds"])
    print(f"{'':22} {'seconds':>8} {'passages/s':>11} {'peak RSS MiB':>13} {'file MiB':>9}")
    for mode, label in (("duckdb", "duckdb read_json"), ("synthrank", "synthrank ingest")):
        r = results[mode]
        print(f"{label:22} {r['seconds']:8.1f} {r['rows'] / r['seconds']:11,.0f} {r['peak_rss_mib']:13.0f} "
              f"{r['warehouse_mib']:9.0f}")
    ratio = results["duckdb"]["seconds"] / results["synthrank"]["seconds"]
    print(f"synthrank ingest rate = {ratio:.0%} of duckdb read_json's (target >= 50%)")


if __name__ == "__main__":
    main()
