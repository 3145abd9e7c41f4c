"""The recording runner: answers written as they arrive, failures retried by the next run only,
the live progress bar, and an API key that never reaches a record, an error or a log."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console

import generators.teachers.runner as runner_module
from generators.teachers import Completion, TeacherBackend, TeacherConfig, TeacherRunner, TeacherStats, make_backend
from tests.fake_teacher import FakeTeacher
from tests.test_teachers_client import ranking_calls
from warehouse.calls import CallRecord, CallStore
from warehouse.db import Warehouse

SECRET = "sk-teachers-test-0123456789abcdef"


@pytest.fixture
def warehouse(tmp_path):
    with Warehouse.open(tmp_path / "wh.duckdb") as wh:
        yield wh


def stored(warehouse: Warehouse) -> dict[str, str]:
    return dict(warehouse.con.execute("SELECT call_key, status FROM teacher_calls").fetchall())


def test_a_later_run_retries_only_the_failed_calls(warehouse):
    calls = ranking_calls(30)
    with FakeTeacher(p_5xx=0.3, seed=5) as teacher:
        config = TeacherConfig(backend="openai", base_url=teacher.base_url, model="fake-teacher",
                               max_retries=0, max_in_flight=4)
        runner = TeacherRunner(make_backend(config), CallStore(warehouse), show_progress=False)
        _, first = runner.run(calls)
        failed = set(CallStore(warehouse).failed_keys())
        assert first.calls_made == 30 and first.calls_failed == len(failed) > 0
        assert first.errors and all(e.startswith("HTTP 50") for e in first.errors)

        teacher.set_faults(p_5xx=0.0)
        teacher.reset_stats()
        answers, second = runner.run(calls)
        assert (second.calls_made, second.calls_reused, second.calls_failed) == (len(failed), 30 - len(failed), 0)
        assert teacher.stats()["received"] == len(failed)
    assert all(a.ok for a in answers.values())
    assert set(stored(warehouse).values()) == {"ok"} and len(stored(warehouse)) == 30


class ScriptedBackend(TeacherBackend):
    """A stand-in backend that answers from a script, to watch the runner's recording."""

    name = "scripted"
    model = "scripted-model"

    def __init__(self, after_first=None, fail_after: int | None = None):
        self.after_first = after_first
        self.fail_after = fail_after

    async def run(self, calls):
        for index, call in enumerate(calls):
            if index == self.fail_after:
                raise RuntimeError("the teacher process died")
            yield call, Completion(status="ok", content=f"answer {index}", prompt_tokens=2, completion_tokens=1)
            if index == 0 and self.after_first:
                await self.after_first()


def test_answers_are_committed_while_the_run_goes_on(warehouse):
    reader = Warehouse(warehouse.con.cursor(), warehouse.path, read_only=False)  # another cursor

    async def wait_until_first_is_stored():
        deadline = time.monotonic() + 10
        while reader.fetch_one("SELECT count(*) FROM teacher_calls")[0] < 1:
            assert time.monotonic() < deadline, "the first answer was not written while the run went on"
            await asyncio.sleep(0.01)

    backend = ScriptedBackend(after_first=wait_until_first_is_stored)
    answers, stats = TeacherRunner(backend, CallStore(warehouse), show_progress=False).run(ranking_calls(3))
    assert stats.calls_made == 3 and len(stored(warehouse)) == 3


def test_the_writer_ends_without_waiting_out_its_interval(warehouse):
    """Answers that arrive while the writer rests between commits are written as soon as the
    run ends: a writer resting for an hour does not hold the run for that hour."""
    reader = Warehouse(warehouse.con.cursor(), warehouse.path, read_only=False)
    records = [CallRecord(call.key, "scripted-model", "scripted", 0, call.request_record(),
                          Completion(status="ok", content="answer").as_record()) for call in ranking_calls(3)]

    async def run() -> None:
        async with runner_module.CallWriter(CallStore(warehouse), min_interval_s=3600) as writer:
            writer.add(records[0])
            while not stored(reader):  # the first commit is done: the writer now rests
                await asyncio.sleep(0.01)
            writer.add(records[1])
            writer.add(records[2])

    asyncio.run(asyncio.wait_for(run(), timeout=60))
    assert set(stored(warehouse)) == {record.key for record in records}


def test_answers_received_before_a_crash_are_kept(warehouse):
    calls = ranking_calls(8)
    runner = TeacherRunner(ScriptedBackend(fail_after=5), CallStore(warehouse), show_progress=False)
    with pytest.raises(RuntimeError, match="died"):
        runner.run(calls)
    assert set(stored(warehouse)) == {call.key for call in calls[:5]}
    row = warehouse.fetch_one("SELECT model, backend, content, request FROM teacher_calls WHERE call_key = ?",
                              [calls[0].key])
    assert row[:3] == ("scripted-model", "scripted", "answer 0")
    assert json.loads(row[3])["messages"] == calls[0].message_dicts()

    answers, stats = TeacherRunner(ScriptedBackend(), CallStore(warehouse), show_progress=False).run(calls)
    assert (stats.calls_made, stats.calls_reused) == (3, 5)  # nothing stored is asked again


def test_each_answer_reaches_on_answer_once_as_it_arrives(warehouse):
    calls = ranking_calls(4)
    TeacherRunner(ScriptedBackend(), CallStore(warehouse), show_progress=False).run(calls[:1])  # one stored
    seen: list[str] = []

    async def first_new_answer_is_seen():  # the backend has not yielded the next call yet
        assert seen == [calls[0].key, calls[1].key]

    backend = ScriptedBackend(after_first=first_new_answer_is_seen)
    answers, stats = TeacherRunner(backend, CallStore(warehouse), show_progress=False).run(
        calls + calls[2:3], on_answer=lambda key, completion: seen.append(key))
    assert seen == [call.key for call in calls]  # the stored answer first, each key once
    assert (stats.calls_made, stats.calls_reused) == (3, 1) and set(answers) == set(seen)


class LazyScriptedBackend(ScriptedBackend):
    """The scripted backend taking each call as it answers it, like the OpenAI backend."""

    takes_calls_lazily = True


def test_a_lazy_backend_gets_its_first_calls_before_the_rest_are_built(warehouse):
    calls = ranking_calls(300)
    TeacherRunner(ScriptedBackend(), CallStore(warehouse), show_progress=False).run(calls[100:110])  # stored
    built = []

    def build():
        for call in calls + calls[:5]:  # repeated calls are asked once
            built.append(call)
            yield call

    async def few_built_yet():
        assert len(built) < 100

    seen = []
    backend = LazyScriptedBackend(after_first=few_built_yet)
    answers, stats = TeacherRunner(backend, CallStore(warehouse), show_progress=False).run(
        build(), on_answer=lambda key, completion: seen.append(key), total=305)
    assert (stats.calls_made, stats.calls_reused) == (290, 10) and len(built) == 305
    assert sorted(seen) == sorted(call.key for call in calls) == sorted(answers)
    assert set(stored(warehouse)) == set(answers)


@pytest.mark.parametrize("fail_after", [None, 2])
def test_the_collector_is_eased_during_a_run_and_restored_after(warehouse, fail_after):
    thresholds, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    during = []

    async def look_at_the_collector():
        during.append((gc.get_threshold(), gc.get_freeze_count()))

    backend = ScriptedBackend(after_first=look_at_the_collector, fail_after=fail_after)
    runner = TeacherRunner(backend, CallStore(warehouse), show_progress=False)
    if fail_after is None:
        runner.run(ranking_calls(4))
    else:
        with pytest.raises(RuntimeError, match="died"):
            runner.run(ranking_calls(4))
    (young, *older), frozen = during[0]
    assert young >= runner_module._CollectorPause.YOUNG_THRESHOLD and tuple(older) == thresholds[1:]
    assert frozen > 0  # what existed before the run is frozen while it runs
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen_before


def test_nested_pauses_restore_the_collector_once_all_have_left():
    thresholds, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    with runner_module.fewer_collections():
        with runner_module.fewer_collections():
            pass
        assert gc.get_threshold()[0] >= runner_module._CollectorPause.YOUNG_THRESHOLD  # still paused
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == frozen_before


def test_a_freeze_made_by_someone_else_is_left_alone():
    marker = [object()]  # a container the collector tracks
    gc.freeze()
    try:
        with runner_module.fewer_collections():
            pass
        assert not any(tracked is marker for tracked in gc.get_objects())  # still frozen
    finally:
        gc.unfreeze()
    assert any(tracked is marker for tracked in gc.get_objects())


def test_progress_bar_shows_rate_tokens_in_flight_and_failures(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(runner_module, "Console",
                        lambda stderr: Console(file=screen, force_terminal=True, width=200))
    with FakeTeacher(latency_ms=150, capacity=2, p_5xx=0.5, seed=1) as teacher:
        backend = make_backend(TeacherConfig(backend="openai", base_url=teacher.base_url, model="fake-teacher",
                                             max_retries=0, max_in_flight=2))
        with Warehouse.open(":memory:") as warehouse:
            TeacherRunner(backend, CallStore(warehouse), show_progress=True).run(ranking_calls(8), "ranking")
    drawn = screen.getvalue()
    for text in ("ranking", "/8", "in flight", "calls/s", "tok/s", "failed"):
        assert text in drawn, text


def test_stats_keep_distinct_errors_and_add_up():
    total = TeacherStats()
    for run in range(3):
        stats = TeacherStats()
        for i in range(30):
            stats.count(Completion(status="failed", error=f"error {i % 25}", prompt_tokens=1))
        total.add(stats)
    assert total.calls_failed == 90 and total.prompt_tokens == 90
    assert total.errors == [f"error {i}" for i in range(runner_module.MAX_ERRORS_KEPT)]


class EchoingHandler(BaseHTTPRequestHandler):
    """A careless server that quotes the Authorization header in its errors: 503 on the first
    request of each call, then 400."""

    seen: list[str] = []
    bodies: set[bytes] = set()

    def do_POST(self):  # noqa: N802 (http.server's name)
        request = self.rfile.read(int(self.headers["Content-Length"]))
        status = 400 if request in self.bodies else 503
        self.bodies.add(request)
        self.seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"error": {"message": f"rejected {self.headers.get('Authorization')}"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_api_key_from_the_environment_reaches_no_record_error_or_log(tmp_path, monkeypatch, caplog, capfd):
    monkeypatch.setenv("TEACHERS_TEST_KEY", SECRET)
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = TeacherConfig(backend="openai", base_url=f"http://127.0.0.1:{server.server_port}/v1",
                               model="m", api_key_env="TEACHERS_TEST_KEY", max_retries=3, retry_backoff_s=0.01,
                               max_in_flight=1)
        with Warehouse.open(tmp_path / "wh.duckdb") as warehouse:
            answers, stats = TeacherRunner(make_backend(config), CallStore(warehouse),
                                           show_progress=False).run(ranking_calls(2))
    finally:
        server.shutdown()
    assert EchoingHandler.seen and set(EchoingHandler.seen) == {f"Bearer {SECRET}"}  # the key was sent
    assert [(a.status, a.attempts) for a in answers.values()] == [("failed", 2)] * 2  # 503 retried, 400 not
    assert all("rejected Bearer [api key]" in a.error for a in answers.values())
    assert stats.errors and not [e for e in stats.errors if SECRET in e]
    assert SECRET.encode() not in (tmp_path / "wh.duckdb").read_bytes()
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text
