"""Load synthrank's exports with their real consumers (verl, rank_llm, FlagEmbedding,
LLaMA-Factory), each script run in the consumers venv that ``make consumers`` creates
(``.venv-consumers``, or the python ``$SYNTHRANK_CONSUMERS_PYTHON`` names): their pins clash
with synthrank's and with each other's, so they never share its environment.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def consumers_python() -> Path:
    """The consumers venv's python; skips the test (saying how to get it) when absent."""
    python = Path(os.environ.get("SYNTHRANK_CONSUMERS_PYTHON") or REPO / ".venv-consumers" / "bin" / "python")
    if not python.exists():
        pytest.skip(f"no consumers venv at {python}: run `make consumers` (or set SYNTHRANK_CONSUMERS_PYTHON)")
    return python


def require(module: str) -> Path:
    """The consumers python, after checking ``module`` is installed there (else skip)."""
    python = consumers_python()
    found = subprocess.run([str(python), "-c", f"import importlib.util, sys; "
                            f"sys.exit(0 if importlib.util.find_spec({module!r}) else 3)"], capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"{module} is not installed in the consumers venv ({python}): run `make consumers`")
    return python


def run_consumer(module: str, script: str, argument: str | dict, timeout: float = 600) -> dict:
    """Run ``tests/consumers/<script>`` with ``module`` installed; its last stdout line, as JSON."""
    python = require(module)
    argument = json.dumps(argument) if isinstance(argument, dict) else argument
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([str(python), str(HERE / script), argument], cwd=HERE, capture_output=True, text=True,
                          timeout=timeout, env={**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, f"{script} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
