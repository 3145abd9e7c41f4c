"""The Prefect API a build talks to: the configured one, or a temporary server of its own.

With ``PREFECT_API_URL`` configured (a ``prefect server start``, Prefect Cloud, the test
harness), builds use it and start nothing. Otherwise a build starts the same temporary server
Prefect would (uvicorn serving ``prefect.server.api.server:create_app`` on loopback), but as a
guarded child (``generators.supervised``): it is stopped when the build ends and exits on its
own if the build process is killed, so no server outlives its build.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from generators.supervised import GuardedChild, free_loopback_port, wait_until

# What Prefect's own temporary server sets: no UI, ephemeral mode.
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class TemporaryPrefectServer:
    """A Prefect API server on a free loopback port, guarded to die with this process."""

    def __init__(self, startup_timeout_s: float):
        self.port = free_loopback_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        log = Path(tempfile.mkstemp(prefix="synthrank-prefect-", suffix=".log")[1])
        self.child = GuardedChild(
            "uvicorn", ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                        "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            log_path=log, env=_SERVER_ENV)
        wait_until(self._healthy, self.child, startup_timeout_s, "the temporary Prefect server")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.child.stop()
        if self.child.log_path:
            self.child.log_path.unlink(missing_ok=True)


@contextmanager
def prefect_api() -> Iterator[str]:
    """Run the body against the configured Prefect API, or a temporary server of our own.

    Yields the API URL in use.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = get_current_settings().api.url
    if configured:
        yield configured
        return
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
    server = TemporaryPrefectServer(timeout)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()
