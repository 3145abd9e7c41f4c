"""Prompt token lengths of the listwise trainer exports on the real collections, against
verl's default ``data.max_prompt_length`` (1024) as the baseline, and what counting costs.

For each collection in ../shared/data (or $SYNTHRANK_DATA): BM25 top-20 lists for the
first --queries queries, the ReasonRank listwise prompt (what the ``verl`` and
``reasonrank-sft`` exports hold; passages cut to --passage-tokens words) and rank_llm's
RankZephyr prompt (the ``rankzephyr`` export), counted through the chat template with the
embedded SmolLM2 tokenizer (``warehouse.tokens``). Prints max / p95 / mean, the
``max_prompt_length`` the manifest would suggest, how many prompts verl's default 1024
would drop, and CPU seconds per 1000 prompts counted.

    .venv/bin/python bench/prompt_lengths.py --queries 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.candidates import bm25_candidates  # noqa: E402
from generators.listwise import clean_passage, render_messages  # noqa: E402
from prompts import load_prompt  # noqa: E402
from warehouse.formats.listwise import rankzephyr_messages  # noqa: E402
from warehouse.tokens import load_tokenizer, prompt_lengths, prompt_token_stats  # noqa: E402

VERL_DEFAULT = 1024


def read_beir(folder: Path, queries: int) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    passages = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            passages[record["_id"]] = (record.get("title") or "", record.get("text") or "")
    asked = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            asked[record["_id"]] = record["text"]
            if len(asked) == queries:
                break
    return passages, asked


def prompts_of(folder: Path, queries: int, passage_tokens: int) -> dict[str, list[list[dict]]]:
    passages, asked = read_beir(folder, queries)
    lists = bm25_candidates(passages, asked, k=20, stopwords="en" if folder.name != "korquad" else None)
    prompt = load_prompt("listwise_reasonrank")
    out = {"reasonrank (verl, sft)": [], "rankzephyr": []}
    for qid, ranked in lists.items():
        docids = [d for d, _ in ranked]
        out["reasonrank (verl, sft)"].append(
            render_messages(prompt, asked[qid], [clean_passage(*passages[d], passage_tokens) for d in docids]))
        out["rankzephyr"].append(rankzephyr_messages(asked[qid], [passages[d] for d in docids]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--passage-tokens", type=int, default=512)
    args = parser.parse_args()
    data = Path(os.environ.get("SYNTHRANK_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    started = time.perf_counter()
    load_tokenizer()
    print(f"tokenizer ready in {time.perf_counter() - started:.1f} s (first use converts the GGUF, then cached)")
    print("| collection | prompt | prompts | max | p95 | mean | max_prompt_length | dropped at 1024 | CPU s / 1000 counted |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("cisi", "cacm", "korquad"):
        for label, prompts in prompts_of(data / name, args.queries, args.passage_tokens).items():
            started = time.process_time()  # CPU: wall time on a shared machine measures the neighbours
            stats = prompt_token_stats(prompts)
            seconds = time.process_time() - started
            dropped = sum(length > VERL_DEFAULT for length in prompt_lengths(prompts))
            print(f"| {name} | {label} | {stats['prompts']} | {stats['max']} | {stats['p95']} | {stats['mean']} | "
                  f"{stats['max_prompt_length']} | {dropped} | {seconds / len(prompts) * 1000:.2f} |")


if __name__ == "__main__":
    main()
