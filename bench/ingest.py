"""Ingest throughput and memory: synthrank's streaming ingest against DuckDB's own read_json.

Generates a seeded BEIR folder of N passages (sentences resampled from the shared CISI and
CACM collections, or a fixed vocabulary without them: the first line says which; run from a
copy of the repository, pass ``--shared``) and 1,000 queries, then, each in a fresh process
and a fresh warehouse file:

- ``duckdb read_json``: ``CREATE TABLE … AS SELECT * FROM read_json(corpus.jsonl)`` (the
  baseline: parsing and storing, no validation, no key);
- ``synthrank ingest``: ``warehouse.snapshots.ingest`` of the folder; a clean corpus is read
  by DuckDB (one checking and fingerprinting scan, one insert into the keyed table);
- ``synthrank, 1 bad record``: the same corpus with one empty passage appended, ingested with
  ``on_bad_record="skip"``: the record-by-record reader (parse and validate in Python, stage
  in chunks of 20,000, check ids in SQL, fingerprint, write the keyed table).

Prints passages/s (wall), CPU seconds (user + system, all threads: steadier than wall on a
busy machine) and peak RSS (VmHWM) of each, and the ratios; with ``--repeat`` the runs are
interleaved and the fastest of each is reported. DuckDB's buffer pool grows
with the data up to its ``memory_limit`` (default 80% of RAM); ``--memory-limit`` sets it
for every run, to see peak RSS bounded::

    python bench/ingest.py --passages 1000000
    python bench/ingest.py --passages 1000000 --memory-limit 512MB
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


def sentences(shared: Path) -> tuple[list[str], str]:
    """Sentences of the shared collections, or of a fixed vocabulary when they are absent (a
    far more compressible text, on which DuckDB's own read is ~3x faster: ratios between the
    two kinds of corpus do not compare); and which of the two it is."""
    found = []
    for name in ("cisi", "cacm"):
        corpus = shared / name / "corpus.jsonl"
        if corpus.is_file():
            for line in corpus.open():
                text = json.loads(line)["text"]
                found += [s.strip() for s in text.split(".") if len(s.split()) > 4]
    if found:
        return found, "shared"
    words = "retrieval index query passage ranking model teacher corpus token score judge".split()
    rng = random.Random(0)
    return [" ".join(rng.choice(words) for _ in range(12)) for _ in range(5000)], "vocabulary"


def generate(workdir: Path, passages: int, shared: Path, seed: int = 0) -> tuple[Path, str]:
    """The seeded corpus, in a folder named by its size and text (reused when it exists), and
    which text it is."""
    pool, kind = sentences(shared)
    folder = workdir / f"corpus-{passages}-{kind}"
    if (folder / "corpus.jsonl").is_file() and (folder / "queries.jsonl").is_file():
        return folder, kind  # made by an earlier run with the same size, text and seed
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with (folder / "corpus.jsonl").open("w") as out:
        for i in range(passages):
            text = ". ".join(rng.choice(pool) for _ in range(rng.randint(2, 6))) + "."
            out.write(json.dumps({"_id": f"d{i}", "title": f"Passage {i}", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for i in range(1000):
            out.write(json.dumps({"_id": f"q{i}", "text": rng.choice(pool)}) + "\n")
    return folder, kind


CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
folder, db, mode, limit = {folder!r}, {db!r}, {mode!r}, {limit!r}
started = time.perf_counter()
if mode == "duckdb":
    import duckdb
    con = duckdb.connect(db)
    if limit:
        con.execute(f"SET memory_limit = '{{limit}}'")
    con.execute("CREATE TABLE passages AS SELECT * FROM read_json(?, format='newline_delimited')",
                [folder + "/corpus.jsonl"])
    rows = con.execute("SELECT count(*) FROM passages").fetchone()[0]
    con.close()
else:
    from warehouse.db import Warehouse
    from warehouse.snapshots import ingest
    with Warehouse.open(db) as wh:
        if limit:
            wh.con.execute(f"SET memory_limit = '{{limit}}'")
        snapshot, _ = ingest(wh, folder, "bench", "bench", on_bad_record="skip")
    rows = snapshot.n_passages
seconds = time.perf_counter() - started
import resource
usage = resource.getrusage(resource.RUSAGE_SELF)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"rows": rows, "seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mib": peak / 1024}}))
"""


def with_bad_record(folder: Path) -> Path:
    """A copy of the folder whose corpus ends with an empty passage (hard links but the corpus)."""
    dirty = folder.with_name(folder.name + "-dirty")
    if not dirty.exists():
        dirty.mkdir()
        (dirty / "queries.jsonl").hardlink_to(folder / "queries.jsonl")
        with (dirty / "corpus.jsonl").open("wb") as out, (folder / "corpus.jsonl").open("rb") as source:
            while block := source.read(1 << 24):
                out.write(block)
            out.write(b'{"_id": "empty", "title": "", "text": ""}\n')
    return dirty


def measure(folder: Path, mode: str, workdir: Path, limit: str | None) -> dict:
    db = workdir / f"{mode}.duckdb"
    db.unlink(missing_ok=True)
    code = CHILD.format(repo=str(REPO), folder=str(folder), db=str(db), mode=mode, limit=limit)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["warehouse_mib"] = db.stat().st_size / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the corpus (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for every run, e.g. 512MB")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared collections (default: %(default)s)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="synthrank-ingest-"))
    started = time.perf_counter()
    folder, kind = generate(workdir, args.passages, args.shared)
    size = (folder / "corpus.jsonl").stat().st_size / 2**20
    text = "sentences of CISI and CACM" if kind == "shared" else \
        f"a fixed vocabulary (no CISI or CACM under {args.shared})"
    print(f"corpus: {args.passages:,} passages of {text}, {size:.0f} MiB JSONL, generated in "
          f"{time.perf_counter() - started:.0f} s; load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    runs = {"duckdb read_json": (folder, "duckdb"), "synthrank ingest": (folder, "synthrank"),
            "synthrank, 1 bad record": (with_bad_record(folder), "synthrank")}
    tries: dict[str, list[dict]] = {label: [] for label in runs}
    for _ in range(args.repeat):
        for label, (source, mode) in runs.items():
            tries[label].append(measure(source, mode, workdir, args.memory_limit))
    results = {label: min(found, key=lambda r: r["seconds"]) for label, found in tries.items()}
    print(f"memory_limit: {args.memory_limit or 'DuckDB default'}")
    print(f"{'':24} {'seconds':>8} {'passages/s':>11} {'CPU s':>7} {'peak RSS MiB':>13} {'file MiB':>9}")
    for label, r in results.items():
        print(f"{label:24} {r['seconds']:8.1f} {r['rows'] / r['seconds']:11,.0f} {r['cpu_seconds']:7.1f} "
              f"{r['peak_rss_mib']:13.0f} {r['warehouse_mib']:9.0f}")
    base = results["duckdb read_json"]
    for label in ("synthrank ingest", "synthrank, 1 bad record"):
        print(f"{label}: rate = {base['seconds'] / results[label]['seconds']:.0%} of duckdb read_json's wall rate, "
              f"{base['cpu_seconds'] / results[label]['cpu_seconds']:.0%} of its CPU rate (target >= 50%)")
    print(f"load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
