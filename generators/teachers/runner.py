"""Run calls through a backend: reuse stored answers, record new ones as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sized

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from generators.teachers.base import Call, Completion, TeacherBackend
from warehouse.calls import CallRecord, CallStore

MAX_ERRORS_KEPT = 20  # distinct error messages a run keeps for its report
# Calls looked up in the store at a time: a small first chunk, so the first requests go out at
# once, then doubling up to a cap that keeps each pause of the event loop short (~1,000 calls
# to build and look up: a few tens of ms).
_FIRST_LOOKUP, _MAX_LOOKUP = 64, 1024


@dataclass
class TeacherStats:
    """What a run of calls cost: calls made and reused, failures, tokens, time.

    Tokens count the calls made in this run (reused answers cost nothing again); ``errors``
    keeps the first distinct error messages of failed calls.
    """

    calls_made: int = 0
    calls_reused: int = 0
    calls_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def count(self, completion: Completion) -> None:
        """Account for one call made."""
        self.calls_made += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        if not completion.ok:
            self.calls_failed += 1
            self._keep_error(completion.error)

    def add(self, other: "TeacherStats") -> None:
        for name in ("calls_made", "calls_reused", "calls_failed", "prompt_tokens",
                     "completion_tokens", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for error in other.errors:
            self._keep_error(error)

    def _keep_error(self, error: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT and error not in self.errors:
            self.errors.append(error)

    def as_dict(self) -> dict:
        return {"calls_made": self.calls_made, "calls_reused": self.calls_reused,
                "calls_failed": self.calls_failed, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "errors": list(self.errors)}


class TeacherRunner:
    """The one way generators call a teacher.

    A call whose answer is stored is not made again (failed calls are: a later run retries
    exactly those). New answers and failures are written to the warehouse as they arrive, by
    a background writer that commits everything that arrived since its previous commit
    (group commit, at most one commit per ``CallWriter`` interval): one commit per answer
    would cap a run at the disk's fsyncs per second. A crash (even SIGKILL) loses at most
    the calls in flight and the answers of the last interval and the commit under way; a
    committed answer is never asked for again.
    """

    def __init__(self, backend: TeacherBackend, store: CallStore, show_progress: bool | None = None):
        self.backend = backend
        self.store = store
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress

    def run(self, calls: Iterable[Call], label: str = "teacher",
            on_answer: Callable[[str, Completion], None] | None = None, total: int | None = None
            ) -> tuple[dict[str, Completion], TeacherStats]:
        """Answer every call; returns key -> completion (failed ones included) and the stats.

        ``calls`` may be built lazily (a generator): with a backend that takes its calls as it
        sends them (``takes_calls_lazily``), they are taken a chunk at a time, so the first
        requests go out while later calls are still being built. ``on_answer(key, completion)``,
        when given, is called once per distinct key as its answer is known (a stored one when its
        chunk is looked up, a new one as it arrives, while other calls are in flight), so a
        caller can use answers without waiting for the last. ``total``: how many calls a lazy
        ``calls`` holds (the progress bar's total)."""
        answers: dict[str, Completion] = {}
        stats = TeacherStats()
        total = len(calls) if isinstance(calls, Sized) else total
        with self.store.reading_cursor() as reader:
            pending = self._unanswered(calls, reader, answers, stats, on_answer)
            try:
                if self.backend.takes_calls_lazily:
                    first = next(pending, None)  # a run whose every answer is stored makes no call
                    todo = None if first is None else itertools.chain([first], pending)
                else:
                    todo = list(pending) or None
                started = time.perf_counter()
                if todo is not None:
                    with fewer_collections():
                        _run_coroutine(self._run_new(todo, total, answers, stats, label, on_answer))
            finally:
                pending.close()
        stats.seconds = time.perf_counter() - started
        return answers, stats

    @staticmethod
    def _unanswered(calls: Iterable[Call], reader: CallStore, answers: dict[str, Completion],
                    stats: TeacherStats, on_answer: Callable[[str, Completion], None] | None
                    ) -> Iterator[Call]:
        """The calls to make: ``calls`` taken in growing chunks, each looked up in the store
        (through ``reader``, a cursor of its own: the writer thread uses the store's connection
        meanwhile); repeated keys are dropped and stored answers reused."""
        seen: set[str] = set()
        source, size = iter(calls), _FIRST_LOOKUP
        while chunk := list(itertools.islice(source, size)):
            size = min(2 * size, _MAX_LOOKUP)
            fresh = [call for call in chunk if not (call.key in seen or seen.add(call.key))]
            stored = reader.stored_answers(call.key for call in fresh)
            for call in fresh:
                record = stored.get(call.key)
                if record is None:
                    yield call
                    continue
                answers[call.key] = completion = Completion(**record)
                stats.calls_reused += 1
                if on_answer:
                    on_answer(call.key, completion)

    async def _run_new(self, todo: Iterable[Call], total: int | None, answers: dict[str, Completion],
                       stats: TeacherStats, label: str,
                       on_answer: Callable[[str, Completion], None] | None) -> None:
        backend = self.backend
        with LiveProgress(label, total, enabled=self.show_progress) as progress:
            async with CallWriter(self.store) as writer:
                async for call, completion in backend.run(todo):
                    writer.add(CallRecord(call.key, backend.model, backend.name, call.sample_index,
                                          call.request_record(), completion.as_record()))
                    answers[call.key] = completion
                    stats.count(completion)
                    if on_answer:
                        on_answer(call.key, completion)
                    progress.update(stats, backend.in_flight)


class _CollectorPause:
    """Garbage collection eased while calls run, or a stage turns their answers into rows
    (process-wide, so counted: nested or concurrent users share one pause, and the last to
    leave restores the collector as it found it).

    Why: at C = 256 a run keeps ~256 requests' objects alive for their latency, so with the
    default young-generation threshold (700 allocations) they are promoted, pending old objects
    pile up and trigger full collections, each traversing every object of the process (the
    planned samples, answers and rows): 700–1,100 young and 5–10 full collections, ~1 s of a
    12,800-call run; building the rows (objects that all live on) adds ~200 young collections
    that find nothing. So meanwhile the young threshold is raised (most request objects die by
    reference count before a collection sees them) and the objects that existed before are
    frozen (``gc.freeze``: full collections skip them; unfrozen after, so any garbage among
    them is still collected then). A freeze made by someone else is left alone.
    """

    YOUNG_THRESHOLD = 50_000

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._thresholds: tuple[int, int, int] | None = None
        self._froze = False

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if self._users == 0:
                self._thresholds = gc.get_threshold()
                self._froze = gc.get_freeze_count() == 0
                if self._froze:
                    gc.freeze()
                gc.set_threshold(max(self.YOUNG_THRESHOLD, self._thresholds[0]), *self._thresholds[1:])
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    gc.set_threshold(*self._thresholds)
                    if self._froze:
                        gc.unfreeze()


_COLLECTOR_PAUSE = _CollectorPause()


def fewer_collections():
    """``with fewer_collections():`` eases garbage collection for the block (``_CollectorPause``).

    A function, not the instance: Prefect pickles flow and task functions by value (to start
    a served run, to send a Dask task), with the globals they use, and the instance holds a lock."""
    return _COLLECTOR_PAUSE()


class CallWriter:
    """Writes call records from a background thread: each write commits what arrived since
    the previous one, and writes start at most every ``min_interval_s``.

    ``add`` never blocks the event loop; leaving the ``async with`` writes what is left at once,
    without waiting out the interval (also when the run fails, so answers already paid for are
    kept), and re-raises a write error.
    """

    def __init__(self, store: CallStore, min_interval_s: float = 0.1):
        self._store = store
        self._min_interval_s = min_interval_s
        self._pending: list[CallRecord] = []
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "CallWriter":
        self._task = asyncio.create_task(self._write_until_closed())
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._closing.set()
        self._wake.set()
        await self._task

    def add(self, record: CallRecord) -> None:
        if self._task.done():  # the writer died: stop the run now, not at the end
            self._task.result()
        self._pending.append(record)
        self._wake.set()

    async def _write_until_closed(self) -> None:
        while True:
            if not self._pending:
                if self._closing.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._pending = self._pending, []
            started = time.perf_counter()
            await asyncio.to_thread(self._store.record_many, batch)
            rest = self._min_interval_s - (time.perf_counter() - started)
            if rest > 0 and not self._closing.is_set():  # let more answers join the next commit
                with contextlib.suppress(asyncio.TimeoutError):  # the end of the run writes at once
                    await asyncio.wait_for(self._closing.wait(), rest)


class LiveProgress:
    """A live bar on stderr: calls done/total, in flight, calls/s, tokens/s, failures, ETA.

    Redrawn at most ten times a second; does nothing when disabled (stderr not a terminal).
    """

    _REFRESH_S = 0.1

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.enabled = enabled
        self._started = self._shown = time.perf_counter()
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[in_flight]} in flight"),
            TextColumn("{task.fields[calls_per_s]:.1f} calls/s"),
            TextColumn("{task.fields[tokens_per_s]:.0f} tok/s"),
            TextColumn("{task.fields[failed]} failed"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True, disable=not enabled)
        self._task = self._bar.add_task(label, total=total, in_flight=0, calls_per_s=0.0,
                                        tokens_per_s=0.0, failed=0)

    def __enter__(self) -> "LiveProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._bar.__exit__(*exc_info)

    def update(self, stats: TeacherStats, in_flight: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self._shown < self._REFRESH_S:
            return
        self._shown = now
        elapsed = max(now - self._started, 1e-9)
        self._bar.update(self._task, completed=stats.calls_made + stats.calls_reused, in_flight=in_flight,
                         calls_per_s=stats.calls_made / elapsed,
                         tokens_per_s=(stats.prompt_tokens + stats.completion_tokens) / elapsed,
                         failed=stats.calls_failed)


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
