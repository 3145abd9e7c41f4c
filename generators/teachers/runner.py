"""Run calls through a backend: reuse stored answers, record new ones as they arrive."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from generators.teachers.base import Call, Completion, TeacherBackend
from warehouse.calls import CallStore


@dataclass
class TeacherStats:
    """What a run of calls cost: calls made and reused, failures, tokens, time."""

    calls_made: int = 0
    calls_reused: int = 0
    calls_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: "TeacherStats") -> None:
        for name in ("calls_made", "calls_reused", "calls_failed", "prompt_tokens",
                     "completion_tokens", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)

    def as_dict(self) -> dict:
        return {"calls_made": self.calls_made, "calls_reused": self.calls_reused,
                "calls_failed": self.calls_failed, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "errors": self.errors[:20]}


class TeacherRunner:
    """The one way generators call a teacher.

    A call whose answer is stored is not made again; every new answer (or failure) is
    committed to the warehouse the moment it arrives, so a crash loses only calls in flight.
    """

    def __init__(self, backend: TeacherBackend, store: CallStore, show_progress: bool | None = None):
        self.backend = backend
        self.store = store
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress

    def run(self, calls: Sequence[Call], label: str = "teacher") -> tuple[dict[str, Completion], TeacherStats]:
        """Answer every call; returns key -> completion (failed ones included) and the stats."""
        unique = list({call.key: call for call in calls}.values())
        stored = self.store.stored_answers(call.key for call in unique)
        answers = {key: Completion(**record) for key, record in stored.items()}
        todo = [call for call in unique if call.key not in answers]
        stats = TeacherStats(calls_reused=len(unique) - len(todo))
        started = time.perf_counter()
        if todo:
            _run_coroutine(self._run_new(todo, answers, stats, label))
        stats.seconds = time.perf_counter() - started
        return answers, stats

    async def _run_new(self, todo: list[Call], answers: dict[str, Completion], stats: TeacherStats,
                       label: str) -> None:
        with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), disable=not self.show_progress, transient=True) as bar:
            task = bar.add_task(label, total=len(todo))
            async for call, completion in self.backend.run(todo):
                self._record(call, completion, stats)
                answers[call.key] = completion
                bar.advance(task)

    def _record(self, call: Call, completion: Completion, stats: TeacherStats) -> None:
        self.store.record(call.key, self.backend.model, self.backend.name, call.sample_index,
                          call.request_record(), completion.as_record())
        stats.calls_made += 1
        stats.prompt_tokens += completion.prompt_tokens
        stats.completion_tokens += completion.completion_tokens
        if not completion.ok:
            stats.calls_failed += 1
            stats.errors.append(completion.error)


def _run_coroutine(coroutine) -> None:
    """asyncio.run, also from code that already runs inside an event loop (a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
