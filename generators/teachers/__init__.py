"""Teachers: one interface (``TeacherBackend``), several backends, one recording runner."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generators.teachers.base import Call, Completion, Sampling, TeacherBackend, split_reasoning
from generators.teachers.runner import TeacherRunner, TeacherStats
from warehouse.errors import InputError

__all__ = ["Call", "Completion", "Sampling", "TeacherBackend", "TeacherConfig", "TeacherRunner",
           "TeacherStats", "make_backend", "split_reasoning"]


class TeacherConfig(BaseModel):
    """Which teacher to call and how hard to push it.

    ``api_key_env`` names an environment variable holding the key; the key itself is never
    written in a spec, the warehouse, a log or an export.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["embedded", "openai", "vllm"] = "embedded"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_in_flight: int = Field(16, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0)
    n_ctx: int = Field(8192, ge=512)

    @model_validator(mode="after")
    def _backend_needs(self) -> "TeacherConfig":
        if self.backend == "openai" and not (self.base_url and self.model):
            raise ValueError("teacher.backend 'openai' needs teacher.base_url and teacher.model")
        if self.backend == "vllm" and not self.model:
            raise ValueError("teacher.backend 'vllm' needs teacher.model")
        return self

    def api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise InputError(f"teacher.api_key_env: environment variable {self.api_key_env} is not set")
        return key


def make_backend(config: TeacherConfig) -> TeacherBackend:
    """The backend a teacher config asks for."""
    if config.backend == "embedded":
        from generators.teachers.embedded import EmbeddedBackend

        return EmbeddedBackend(model_path=config.model, n_ctx=config.n_ctx)
    if config.backend == "openai":
        from generators.teachers.openai_compat import OpenAIBackend

        return OpenAIBackend(config.base_url, config.model, config.api_key(),
                             max_in_flight=config.max_in_flight, timeout_s=config.timeout_s,
                             max_retries=config.max_retries)
    from generators.teachers.vllm_inprocess import VLLMBackend

    return VLLMBackend(config.model)
