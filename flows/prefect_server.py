"""The Prefect API a build talks to: the configured one, or a temporary server of its own.

With ``PREFECT_API_URL`` configured (a ``prefect server start``, Prefect Cloud, the test
harness), builds use it and start nothing. Otherwise a build starts the same temporary server
Prefect would (uvicorn serving ``prefect.server.api.server:create_app`` on loopback), but as a
guarded child (``generators.supervised``): it is stopped when the build ends and exits on its
own if the build process is killed, so no server outlives its build.
"""

from __future__ import annotations

import os
import urllib.request
from contextlib import contextmanager
from typing import Iterator

from generators.supervised import GuardedChild, free_loopback_port, wait_until

# What Prefect's own temporary server sets: no UI, ephemeral mode.
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class TemporaryPrefectServer:
    """A Prefect API server on a free loopback port, guarded to die with this process."""

    def __init__(self):
        self.port = free_loopback_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.child = GuardedChild(
            "uvicorn", ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                        "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            log_prefix="synthrank-prefect-", env=_SERVER_ENV)

    def wait_ready(self, startup_timeout_s: float) -> None:
        wait_until(self._healthy, self.child, startup_timeout_s, "the temporary Prefect server")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.child.stop()


# A temporary server started by ``start_server_early``, waiting for ``prefect_api`` to use it.
_early_server: TemporaryPrefectServer | None = None


def configured_api() -> str | None:
    """The Prefect API URL from the environment, profile or .env, if any."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def start_server_early() -> None:
    """Start the temporary server now when no API is configured, so that it boots (about 9 s,
    mostly importing Prefect's server) while the build imports its own modules; the next
    ``prefect_api`` uses it."""
    global _early_server
    if _early_server is None and not configured_api():
        _early_server = TemporaryPrefectServer()


@contextmanager
def prefect_api() -> Iterator[str]:
    """Run the body against the configured Prefect API, or a temporary server of our own
    (the one ``start_server_early`` started, if any).

    Yields the API URL in use.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    global _early_server
    configured = configured_api()
    if configured:
        yield configured
        return
    server, _early_server = _early_server or TemporaryPrefectServer(), None
    try:
        server.wait_ready(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()
