"""Constrained decoding: the grammar goes in the request body in the field each server reads."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generators.constraints import ranking_grammar
from generators.teachers import Call, Sampling, TeacherConfig, TeacherRunner, make_backend
from warehouse.calls import CallStore
from warehouse.db import Warehouse


class RecordingServer(ThreadingHTTPServer):
    """A loopback chat endpoint that records request bodies and always ranks [2] > [1]."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        reply = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
            {"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "content": "<think>b first</think> <answer>[2] > [1]</answer>"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("style,expected", [
    ("llama_cpp", lambda g: {"grammar": g}),
    ("vllm", lambda g: {"structured_outputs": {"grammar": g}}),
])
def test_grammar_style_picks_the_request_field(style, expected, tmp_path):
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = TeacherConfig(backend="openai", base_url=f"http://127.0.0.1:{server.server_port}/v1",
                               model="m", grammar_style=style, max_retries=0)
        grammar = ranking_grammar(2, 100)
        calls = [Call.of("m", [{"role": "user", "content": "rank"}], Sampling(), 0, grammar),
                 Call.of("m", [{"role": "user", "content": "rank, free"}], Sampling(), 0)]
        with Warehouse.open(tmp_path / "wh.duckdb") as wh:
            answers, _ = TeacherRunner(make_backend(config), CallStore(wh), show_progress=False).run(calls)
    finally:
        server.shutdown()
        server.server_close()
    assert all(answer.ok and answer.content == "<answer>[2] > [1]</answer>" for answer in answers.values())
    constrained, free = sorted(server.bodies, key=lambda body: body["messages"][0]["content"])
    assert {k: constrained[k] for k in expected(grammar)} == expected(grammar)
    assert not {"grammar", "structured_outputs"} & set(free)
