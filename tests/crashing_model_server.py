"""The embedded teacher's real model server (``llama_cpp.server``) with a planted fault: a test
double for a native crash, which cannot be caused on demand in llama.cpp itself.

Run where ``llama_cpp.server`` would be (``EmbeddedBackend(server_module=...)``), with:

- ``CRASH_AT_REQUEST=N``: the Nth chat request of each server process kills the process with
  SIGSEGV, as ggml's AMX matrix multiply does on affected CPUs;
- ``HANG_AT_REQUEST=N``: the Nth chat request never answers (the server stops responding).
"""

from __future__ import annotations

import itertools
import os
import runpy
import signal
import time

import llama_cpp.server.app as server_app

_create_app = server_app.create_app
_chat_requests = itertools.count(1)


def _planted(variable: str, number: int) -> bool:
    return number == int(os.environ.get(variable, "0"))


def create_app(*args, **kwargs):
    """llama_cpp.server's app with a middleware that crashes or hangs on the planted request."""
    app = _create_app(*args, **kwargs)

    @app.middleware("http")
    async def planted_fault(request, call_next):
        if request.url.path.endswith("/chat/completions"):
            number = next(_chat_requests)
            if _planted("CRASH_AT_REQUEST", number):
                os.kill(os.getpid(), signal.SIGSEGV)
            if _planted("HANG_AT_REQUEST", number):
                time.sleep(3600)  # blocks the server's event loop, as a stuck kernel would
        return await call_next(request)

    return app


server_app.create_app = create_app
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
