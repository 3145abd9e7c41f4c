"""Teachers: one interface (``TeacherBackend``), several backends, one recording runner."""

from __future__ import annotations

import os
from typing import Any, Literal

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
    base_urls: list[str] | None = Field(None, min_length=1,
                                        description="several endpoints serving the same model")
    api_key_env: str | None = None
    max_in_flight: int = Field(16, ge=1, description="requests in flight at once, over all endpoints")
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0, description="one call, answer included; default 120 s, "
                                    "embedded 600 s (a call that takes longer counts as a hung model)")
    max_retries: int = Field(5, ge=0)
    retry_backoff_s: float = Field(0.5, gt=0, description="first backoff; doubles per attempt")
    endpoint_failures: int = Field(5, ge=1, description="failures in a row that set an endpoint aside")
    endpoint_cooldown_s: float = Field(30.0, ge=0)
    n_ctx: int = Field(8192, ge=512)
    max_restarts: int = Field(3, ge=0, description="embedded: restarts of a crashed or hung model server per run")
    embedded_server: str = Field(
        "llama_cpp.server", description="embedded: module run as the model server (llama_cpp.server's arguments)")
    grammar_style: Literal["llama_cpp", "vllm"] = Field(
        "llama_cpp", description="openai backend: how a grammar is sent (llama.cpp server or vLLM)")
    reasoning_parser: str | None = Field(None, description="vLLM reasoning parser, e.g. deepseek_r1")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of vllm.LLM")
    shard_size: int = Field(1024, ge=1, description="vLLM: calls generated (and recorded) per batch")

    @model_validator(mode="after")
    def _backend_needs(self) -> "TeacherConfig":
        if self.base_url and self.base_urls:
            raise ValueError("give teacher.base_url or teacher.base_urls, not both")
        if self.backend == "openai" and not (self.endpoints and self.model):
            raise ValueError("teacher.backend 'openai' needs teacher.base_url (or base_urls) and teacher.model")
        if self.backend == "vllm" and not self.model:
            raise ValueError("teacher.backend 'vllm' needs teacher.model")
        if self.backend != "vllm" and (self.reasoning_parser or self.engine_args):
            raise ValueError("teacher.reasoning_parser and teacher.engine_args apply to backend 'vllm' only")
        return self

    @property
    def endpoints(self) -> list[str]:
        return self.base_urls or ([self.base_url] if self.base_url else [])

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

        return EmbeddedBackend(model_path=config.model, n_ctx=config.n_ctx, max_restarts=config.max_restarts,
                               call_timeout_s=config.timeout_s or 600.0, server_module=config.embedded_server)
    if config.backend == "openai":
        from generators.teachers.openai_compat import OpenAIBackend

        return OpenAIBackend(
            config.endpoints, config.model, config.api_key(), max_in_flight=config.max_in_flight,
            timeout_s=config.timeout_s or 120.0, max_retries=config.max_retries, backoff_s=config.retry_backoff_s,
            requests_per_minute=config.requests_per_minute, tokens_per_minute=config.tokens_per_minute,
            endpoint_failures=config.endpoint_failures, endpoint_cooldown_s=config.endpoint_cooldown_s,
            grammar_style=config.grammar_style)
    from generators.teachers.vllm_inprocess import VLLMBackend

    return VLLMBackend(config.model, engine_args=config.engine_args,
                       reasoning_parser=config.reasoning_parser, shard_size=config.shard_size)
