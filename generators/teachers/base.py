"""What every teacher backend shares: requests, their keys, completions, reasoning split."""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import AsyncIterator, Sequence

import orjson
from pydantic import BaseModel, ConfigDict, Field

_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_OPEN_THINK = re.compile(r"<think>(.*)\Z", re.S)
# Several <think> blocks are joined with their boundaries kept, so how many there were survives
# the call store (mixed_cot rejects traces with more than one).
THINK_BLOCK_SEPARATOR = "\n</think>\n<think>\n"


class Sampling(BaseModel):
    """Sampling parameters; part of every call key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.6, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    seed: int = 0


# Serialises the non-string parts of call keys exactly as json.dumps(value, sort_keys=True,
# ensure_ascii=False), without building a new encoder for every key.
_KEY_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def _json_string(text: str) -> str:
    """``text`` as a JSON string, the same characters as ``_KEY_ENCODER`` writes (orjson escapes
    every code point as json does with ensure_ascii=False) at a twentieth of its cost on long prompts."""
    return orjson.dumps(text).decode()


@lru_cache(maxsize=64)
def _sampling_json(sampling: Sampling) -> str:
    """The sampling part of a call key (the calls of a run share one ``Sampling``)."""
    return _KEY_ENCODER.encode(sampling.model_dump())


@dataclass(frozen=True)
class Call:
    """One teacher call: the messages, the sampling and which sample of them this is.

    The key hashes (model, sampling, messages, sample_index, and the grammar when the
    answer is constrained): the same call always gets the same key, so its stored answer
    is found again on a rerun.
    """

    model: str
    messages: tuple[tuple[str, str], ...]
    sampling: Sampling
    sample_index: int = 0
    grammar: str | None = None  # GBNF constraining the answer, where the backend supports it

    @classmethod
    def of(cls, model: str, messages: Sequence[dict[str, str]], sampling: Sampling,
           sample_index: int = 0, grammar: str | None = None) -> "Call":
        return cls(model, tuple((m["role"], m["content"]) for m in messages), sampling, sample_index,
                   grammar)

    @cached_property
    def key(self) -> str:  # computed once per call: it is looked up many times
        return hashlib.sha256(self.key_text().encode()).hexdigest()

    def key_text(self) -> str:
        """What the key hashes: ``json.dumps(payload, sort_keys=True, ensure_ascii=False)`` of
        {model, sampling, messages, sample_index, grammar when set}, written field by field in
        that sorted order, because json's string escaping costs more than the rest of a call."""
        messages = ", ".join(f"[{_json_string(role)}, {_json_string(content)}]" for role, content in self.messages)
        grammar = "" if self.grammar is None else f'"grammar": {_json_string(self.grammar)}, '
        return (f'{{{grammar}"messages": [{messages}], "model": {_json_string(self.model)}, '
                f'"sample_index": {_KEY_ENCODER.encode(self.sample_index)}, '
                f'"sampling": {_sampling_json(self.sampling)}}}')

    @property
    def seed(self) -> int:
        """A distinct seed per sample, so n samples of one prompt differ."""
        return self.sampling.seed + self.sample_index

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def request_record(self) -> dict:
        """What the warehouse stores about the request: messages and sampling, nothing secret."""
        return {"messages": self.message_dicts(), "sampling": self.sampling.model_dump(),
                "sample_index": self.sample_index, "seed": self.seed, "grammar": self.grammar}


@dataclass
class Completion:
    """A teacher's answer with reasoning and answer apart, or a failure with its error."""

    status: str  # ok | failed
    content: str = ""  # the answer, reasoning removed
    reasoning: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    attempts: int = 1
    latency_ms: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_record(self) -> dict:
        """The fields the call record stores (all but ``extra``)."""
        return {name: value for name, value in self.__dict__.items() if name != "extra"}


def split_reasoning(content: str | None, reasoning_content: str | None = None) -> tuple[str, str]:
    """Return (reasoning, answer) from a raw answer.

    Reasoning comes either in a separate ``reasoning_content`` field (vLLM reasoning parsers,
    DeepSeek-R1, Qwen3) or inline as ``<think>…</think>``; an unclosed ``<think>`` (a truncated
    answer) is all reasoning and no answer.
    """
    content = content or ""
    if reasoning_content:
        return reasoning_content.strip(), content.strip()
    blocks = _THINK.findall(content)
    if blocks:
        return THINK_BLOCK_SEPARATOR.join(b.strip() for b in blocks), _THINK.sub("", content).strip()
    unclosed = _OPEN_THINK.search(content)
    if unclosed:
        return unclosed.group(1).strip(), content[: unclosed.start()].strip()
    return "", content.strip()


class TeacherBackend(ABC):
    """A way to run calls against a model. Backends yield completions as they arrive."""

    name: str
    model: str
    in_flight: int = 0  # requests sent and not yet answered (shown by the progress bar)
    # run() takes each call as it sends it (any iterable will do, built while earlier calls are
    # in flight); a backend that needs the whole list up front (len, slices) leaves this False.
    takes_calls_lazily: bool = False

    @abstractmethod
    def run(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        """Run every call, yielding (call, completion) as each finishes, failures included."""
