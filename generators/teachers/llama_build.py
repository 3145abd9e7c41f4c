"""What the installed llama.cpp was compiled with, read in a child process.

Run as a script by the Makefile right after llama-cpp-python is compiled (before the rest of
the project is installed, so it imports nothing but the standard library):

    python generators/teachers/llama_build.py --expect portable

A portable build has AVX2 and no AMX or AVX-512 code paths; a native build on an Intel CPU
with AMX segfaults in ggml's AMX matrix multiply (llama.cpp issue 20824).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

# Features whose code paths only some x86-64 CPUs can run; a portable build compiles none in.
NON_PORTABLE = ("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8")
_PROBE = "import llama_cpp, sys; sys.stdout.write(llama_cpp.llama_print_system_info().decode())"


def compiled_features(python: str = sys.executable, timeout_s: float = 60.0) -> dict[str, bool]:
    """The CPU features llama.cpp reports as compiled in, e.g. ``{"AVX2": True, "AMX_INT8": False}``.

    Raises RuntimeError (with the child's error) when llama_cpp does not import.
    """
    done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise RuntimeError(f"llama_cpp does not import: {tail}")
    return {name: value == "1" for name, value in re.findall(r"([A-Z0-9_]+) = ([01])", done.stdout)}


def portability_problems(features: dict[str, bool]) -> list[str]:
    """Why a build with these features would not run on every x86-64 CPU with AVX2."""
    problems = [f"{name} code paths are compiled in" for name in NON_PORTABLE if features.get(name)]
    if "AVX2" in features and not features["AVX2"]:
        problems.append("AVX2 is not compiled in (slow)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect", choices=["portable", "native"], default="portable")
    args = parser.parse_args(argv)
    features = compiled_features()
    problems = portability_problems(features)
    compiled = " ".join(name for name, on in features.items() if on)
    print(f"llama.cpp compiled with: {compiled}")
    if args.expect == "portable" and problems:
        print("not a portable build: " + "; ".join(problems) + "\nrebuild with `make install`"
              " (it compiles with GGML_NATIVE=OFF and pip's cache off)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
