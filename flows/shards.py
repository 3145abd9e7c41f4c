"""Work in shards on the flow's task runner (Dask workers with ``runner: dask``): teacher
calls, passage embeddings and candidate retrieval. Workers never open the warehouse: they
get their inputs with the task (retrieval: the folders of the snapshot's saved indexes and
the texts of the queries to retrieve for, never the corpus) and return results, which the
flow process stores.

Every task here takes ``cache_policy=NO_CACHE``: Prefect's default policy hashes a task's
arguments into a cache key before it runs, which for thousands of texts or calls costs
seconds of CPU (for a corpus, tens), and caching would only ever skip work the warehouse
already skips: results are stored there, not in Prefect.

``ShardedBackend`` looks like any backend to ``TeacherRunner``: it submits shards of calls as
Prefect tasks and yields each shard's answers when it finishes. Workers only call the
teacher; the flow process, the warehouse's one writer, records every answer. A crash loses
at most the shards in flight. Workers read the teacher's key from their own environment
(``teacher.api_key_env``): the key never travels with a shard.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Generic, Sequence, TypeVar

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from generators.candidates import CandidateConfig, Ranked, rank_candidates
from generators.embeddings import encode
from generators.teachers import Call, Completion, TeacherBackend, TeacherConfig, make_backend

T = TypeVar("T")


class Handoff(Generic[T]):
    """A shard's result, which the flow takes out once.

    Prefect keeps a task's result until the task that submitted it ends (the task run's
    transaction joins its parent's, whose children hold their states), so lists, answers or
    vectors returned as they are would all stay in memory for the whole stage: at 100,000
    queries, every candidate list. Returned in a ``Handoff``, only the emptied box stays."""

    def __init__(self, value: T):
        self._value: T | None = value

    def take(self) -> T:
        """The result; the box is empty afterwards (a second take is an error)."""
        if self._value is None:
            raise RuntimeError("this shard's result was already taken")
        value, self._value = self._value, None
        return value


# Texts per embedding shard: a multiple of the encoder's batch size (64), so every batch,
# and so every vector, is the same as in an unsharded run.
EMBED_SHARD = 512


@task(name="embed-shard", cache_policy=NO_CACHE)
def embed_shard(texts: list[str], model: str) -> Handoff[np.ndarray]:
    return Handoff(encode(texts, model))


def encode_in_shards(texts: list[str], model: str) -> np.ndarray:
    """``encode`` with the texts split into shards that run in parallel on the task runner."""
    futures = [embed_shard.submit(texts[i:i + EMBED_SHARD], model) for i in range(0, len(texts), EMBED_SHARD)]
    return np.vstack([future.result().take() for future in futures]) if futures else encode([], model)


@task(name="retrieve", cache_policy=NO_CACHE)
def retrieve_shard(indexes: dict[str, str], queries: dict[str, str], config: CandidateConfig) -> Handoff[Ranked]:
    """Candidate lists of some queries of one source, from its saved index folders,
    computed where the task runner puts it."""
    return Handoff(rank_candidates(indexes, queries, config))


def answer_calls(backend: TeacherBackend, calls: Sequence[Call]) -> list[tuple[Call, Completion]]:
    """Every call's completion, failures included (runs its own event loop)."""
    async def gather() -> list[tuple[Call, Completion]]:
        return [pair async for pair in backend.run(calls)]

    return asyncio.run(gather())


@task(name="teacher-shard", cache_policy=NO_CACHE)
def answer_shard(teacher: dict, calls: list[Call]) -> Handoff[list[tuple[Call, Completion]]]:
    """One shard of teacher calls, run where the task runner puts it."""
    return Handoff(answer_calls(make_backend(TeacherConfig.model_validate(teacher)), calls))


class ShardedBackend(TeacherBackend):
    """The configured teacher, called in shards of ``shard_size`` on the flow's task runner."""

    def __init__(self, config: TeacherConfig, shard_size: int):
        inner = make_backend(config)
        self.name, self.model = inner.name, inner.model
        self.config = config.model_dump()
        self.shard_size = shard_size
        self.in_flight = 0

    async def run(self, calls: Sequence[Call]) -> AsyncIterator[tuple[Call, Completion]]:
        shards = [list(calls[i:i + self.shard_size]) for i in range(0, len(calls), self.shard_size)]
        futures = await asyncio.to_thread(lambda: [answer_shard.submit(self.config, s) for s in shards])
        self.in_flight = len(calls)
        finished = as_completed(futures)
        while (future := await asyncio.to_thread(next, finished, None)) is not None:
            answers = (await asyncio.to_thread(future.result)).take()
            for call, completion in answers:
                self.in_flight -= 1
                yield call, completion
