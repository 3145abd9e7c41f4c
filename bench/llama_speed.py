"""Tokens/s of llama.cpp builds on the demo's own prompts: portable against native.

Reads the requests `make demo` sent (the `teacher_calls` table of out/demo/synthrank.duckdb),
then, for each interpreter given with --python (each with its own llama-cpp-python build),
answers them with the embedded model in a child process, greedy and with the demo's max_tokens,
and prints tokens per second (prompt and generated tokens over the wall time of the calls). The first interpreter is the baseline of
the ratio column.

    make demo
    .venv/bin/python bench/llama_speed.py --python .venv/bin/python --python /tmp/native/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from generators.teachers.embedded import embedded_model_path  # noqa: E402

# Runs in each interpreter: only llama_cpp and the standard library.
CHILD = r"""
import json, sys, time
import llama_cpp
requests = json.load(open(sys.argv[2]))
llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=8192, verbose=False)
features = llama_cpp.llama_print_system_info().decode()
prompt = generated = 0
seconds = 0.0
for request in requests * int(sys.argv[3]):
    grammar = request["grammar"] and llama_cpp.LlamaGrammar.from_string(request["grammar"], verbose=False)
    started = time.perf_counter()
    answer = llama.create_chat_completion(messages=request["messages"], temperature=0.0, seed=0,
                                          max_tokens=request["max_tokens"], grammar=grammar or None)
    seconds += time.perf_counter() - started
    prompt += answer["usage"]["prompt_tokens"]
    generated += answer["usage"]["completion_tokens"]
print(json.dumps({"prompt_tokens": prompt, "generated": generated, "seconds": seconds,
                  "amx": "AMX_INT8 = 1" in features, "avx512": "AVX512 = 1" in features}))
"""


def demo_requests(warehouse: Path) -> list[dict]:
    """The messages and max_tokens of every call the demo build recorded."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute("SELECT request FROM teacher_calls ORDER BY call_key").fetchall()
    finally:
        con.close()
    requests = [json.loads(request) if isinstance(request, str) else request for (request,) in rows]
    return [{"messages": r["messages"], "max_tokens": r["sampling"]["max_tokens"], "grammar": r.get("grammar")}
            for r in requests]


def measure(python: str, requests_file: Path, repeats: int) -> dict:
    done = subprocess.run([python, "-c", CHILD, str(embedded_model_path()), str(requests_file), str(repeats)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, help="interpreter with a llama-cpp-python build")
    parser.add_argument("--warehouse", default="out/demo/synthrank.duckdb")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="only the first N demo requests")
    args = parser.parse_args()
    requests = demo_requests(Path(args.warehouse))[:args.limit]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(requests, handle)
    results = [(python, measure(python, Path(handle.name), args.repeats)) for python in args.python]
    base = results[0][1]
    print(f"{len(requests)} demo requests x {args.repeats}")
    print(f"{'interpreter':<40} {'prompt+gen tok/s':>17} {'gen tok/s':>10} {'speed vs first':>15} amx avx512")
    for python, r in results:
        total_rate = (r["prompt_tokens"] + r["generated"]) / r["seconds"]
        speed = base["seconds"] / r["seconds"]
        print(f"{python:<40} {total_rate:>17.0f} {r['generated'] / r['seconds']:>10.1f} {speed:>15.2f} "
              f"{r['amx']!s:>3} {r['avx512']!s:>6}")
    Path(handle.name).unlink()


if __name__ == "__main__":
    main()
