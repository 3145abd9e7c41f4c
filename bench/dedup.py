"""Benchmark: MinHash LSH dedup of 100k passages (`MinHashDedupFilter.apply`, key title + text).

Passages are resampled from CISI and CACM: each synthetic passage takes the title and the
sentence count of a random real passage and fills it with random sentences of the pooled
collections, so lengths follow the real ones (a title-only CACM passage gets one sentence,
or the 100k would repeat its 3,204 titles as exact duplicates). A share
of the passages (default 10%) are planted near-duplicates: copies of an earlier passage of
at least 80 words with one word in 40 replaced by a random vocabulary word.

Prints, for the parallel run (all cores) and a single-process baseline in the same run:
passages/s (wall clock), passages per CPU-second (user + system time of this process and
its workers: the figure to trust when other jobs share the machine; the load average is
printed too), peak memory (ru_maxrss of this process and of the largest worker), recall of
the planted pairs, and how many reported pairs have a brute-force Jaccard within 0.1 of
the threshold or above. Last, signatures alone on one process: ours against plain
datasketch `MinHash.bulk`, whose values they equal.

    .venv/bin/python bench/dedup.py                  # 100k passages, both cores + baseline
    .venv/bin/python bench/dedup.py --passages 20000 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import time
from pathlib import Path

import xxhash
from datasketch import MinHash

from filters.dedup import MinHashDedupFilter, minhash_signature_matrix, word_shingles

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def data_dir() -> Path:
    return Path(os.environ.get("SYNTHRANK_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def read_corpus(collection: str) -> list[dict]:
    path = data_dir() / collection / "corpus.jsonl"
    if not path.exists():
        sys.exit(f"{path} not found: the benchmark needs ../shared/data (or SYNTHRANK_DATA)")
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def synthesize(n: int, dup_rate: float, seed: int) -> tuple[list[dict], dict[str, str]]:
    """n passage rows and the planted pairs {duplicate docid: source docid}."""
    rng = random.Random(seed)
    real = read_corpus("cisi") + read_corpus("cacm")
    sentences = [s for p in real for s in _SENTENCE_END.split(p["text"]) if s]
    vocabulary = sorted({w for s in sentences for w in s.split() if w.isalpha()})
    rows: list[dict] = []
    planted: dict[str, str] = {}
    long_sources: list[int] = []
    for i in range(n):
        docid = f"p{i}"
        if long_sources and rng.random() < dup_rate:
            source = rows[rng.choice(long_sources)]
            rows.append({"docid": docid, "title": source["title"], "text": _mutate(source["text"], rng, vocabulary)})
            planted[docid] = source["docid"]
            continue
        model = rng.choice(real)
        count = len(_SENTENCE_END.split(model["text"])) if model["text"] else 1
        text = " ".join(rng.choice(sentences) for _ in range(count))
        rows.append({"docid": docid, "title": model["title"], "text": text})
        if len(text.split()) >= 80:
            long_sources.append(i)
    return rows, planted


def _mutate(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    for position in rng.sample(range(len(words)), max(1, len(words) // 40)):
        words[position] = rng.choice(vocabulary)
    return " ".join(words)


def jaccard(a: str, b: str, shingle_size: int) -> float:
    x, y = word_shingles(a, shingle_size), word_shingles(b, shingle_size)
    return len(x & y) / len(x | y) if x | y else 1.0


def run(rows: list[dict], planted: dict[str, str], processes: int, args: argparse.Namespace) -> dict:
    flt = MinHashDedupFilter(
        key=("title", "text"), threshold=args.threshold, num_perm=args.num_perm, processes=processes
    )
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    verdicts = list(flt.apply(rows))
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_before
    reported = {row["docid"]: v.reason.removeprefix("duplicate_of:") for row, v in verdicts if not v.keep}
    by_id = {row["docid"]: row for row in rows}
    text = {docid: f"{row['title']}\n{row['text']}" for docid, row in by_id.items()}
    found = sum(reported.get(dup) == source for dup, source in planted.items())
    close = sum(
        jaccard(text[dup], text[kept], flt.shingle_size) >= args.threshold - 0.1 for dup, kept in reported.items()
    )
    return {
        "processes": processes,
        "seconds": seconds,
        "passages_per_s": len(rows) / seconds,
        "passages_per_cpu_s": len(rows) / cpu,
        "reported_pairs": len(reported),
        "planted_recall": found / len(planted),
        "reported_close": close / len(reported) if reported else 1.0,
    }


def bulk_signatures_per_s(texts: list[str], num_perm: int) -> float:
    """Texts/s of plain datasketch `MinHash.bulk` (signatures only, one process): the reference
    that `minhash_signature_matrix` reproduces value for value in batches."""
    start = time.perf_counter()
    shingles = [word_shingles(text, 3) for text in texts]
    MinHash.bulk(shingles, num_perm=num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest, scheme="affine32")
    return len(texts) / (time.perf_counter() - start)


def signatures_per_s(texts: list[str], num_perm: int) -> float:
    start = time.perf_counter()
    minhash_signature_matrix(texts, num_perm=num_perm, processes=1)
    return len(texts) / (time.perf_counter() - start)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished worker processes."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def peak_memory_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    rows, planted = synthesize(args.passages, args.dup_rate, args.seed)
    words = sum(len(r["text"].split()) + len(r["title"].split()) for r in rows) / len(rows)
    rss_before, _ = peak_memory_mb()
    print(
        f"{len(rows)} passages ({words:.0f} words on average), {len(planted)} planted near-duplicates; "
        f"threshold {args.threshold}, num_perm {args.num_perm}, shingles of 3 words; load {os.getloadavg()[0]:.2f}"
    )
    print(f"peak RSS after building the data: {rss_before:.0f} MB")
    for processes in (args.processes, 1):
        figures = run(rows, planted, processes, args)
        own, workers = peak_memory_mb()
        label = "parallel" if processes > 1 else "baseline (1 process)"
        print(
            f"{label:>22}: {figures['passages_per_s']:>8,.0f} passages/s ({figures['seconds']:.2f} s wall, "
            f"{figures['passages_per_cpu_s']:,.0f} passages per CPU-second), "
            f"recall of planted pairs {figures['planted_recall']:.4f}, "
            f"reported pairs {figures['reported_pairs']} "
            f"({figures['reported_close']:.4f} with Jaccard >= threshold - 0.1), "
            f"peak RSS main {own:.0f} MB / worker {workers:.0f} MB"
        )
    sample = [f"{row['title']}\n{row['text']}" for row in rows[:20_000]]
    print(
        f"signatures only, 1 process, first {len(sample)} passages: "
        f"minhash_signature_matrix {signatures_per_s(sample, args.num_perm):,.0f}/s, "
        f"datasketch MinHash.bulk {bulk_signatures_per_s(sample, args.num_perm):,.0f}/s"
    )


if __name__ == "__main__":
    main()
