"""The lineage fields every generated row carries: who answered, with which prompt and settings."""

from __future__ import annotations

from typing import Sequence

from generators.teachers import Call
from prompts import Prompt


def call_lineage(calls: Sequence[Call], prompt: Prompt, backend: str) -> dict:
    """Teacher model and backend, prompt name and version, sampling, and the keys of the
    calls (all of one model and sampling) that made the row."""
    return {
        "teacher_model": calls[0].model,
        "teacher_backend": backend,
        "prompt_name": prompt.name,
        "prompt_version": prompt.version,
        "sampling": calls[0].sampling.model_dump(),
        "call_keys": [call.key for call in calls],
    }
