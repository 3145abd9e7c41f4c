"""A real Label Studio server for the review tests: ``label-studio start`` on loopback, SQLite
in a temporary folder, a user and an API token from environment variables.

Label Studio comes from the scratch venv ``.venv-review`` (``make .venv-review/.installed``),
or ``$SYNTHRANK_LABEL_STUDIO`` (the ``label-studio`` executable), or the PATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO, free_port

TOKEN_ENV = "SYNTHRANK_TEST_LS_TOKEN"
USER = "reviewer@example.com"


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    token: str
    token_env: str
    data_dir: Path


def label_studio_executable() -> str | None:
    candidates = [os.environ.get("SYNTHRANK_LABEL_STUDIO"), str(REPO / ".venv-review" / "bin" / "label-studio"),
                  shutil.which("label-studio")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def wait_for_api(url: str, token: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"label-studio exited with {process.returncode} before serving its API")
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"Label Studio at {url} did not serve its API within {timeout_s} s")


@contextmanager
def running_label_studio(executable: str, data_dir: Path, timeout_s: float = 300) -> Iterator[LabelStudioServer]:
    """``label-studio start`` on a free loopback port with a fresh user and token, stopped on exit."""
    token, port = "synthrank-test-" + os.urandom(8).hex(), free_port()
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "LABEL_STUDIO_USERNAME": USER,
           "LABEL_STUDIO_PASSWORD": "synthrank-test-password", "LABEL_STUDIO_USER_TOKEN": token,
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LATEST_VERSION_CHECK": "false",
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",  # offline: no version check, no error reports
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"}
    with (data_dir / "server.log").open("wb") as log:
        process = subprocess.Popen([executable, "start", "--no-browser", "--port", str(port),
                                    "--internal-host", "127.0.0.1"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=data_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_api(url, token, process, timeout_s)
        yield LabelStudioServer(url, token, TOKEN_ENV, data_dir)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory) -> Iterator[LabelStudioServer]:
    """A running Label Studio; the API token is in ``$SYNTHRANK_TEST_LS_TOKEN`` while it runs."""
    executable = label_studio_executable()
    if executable is None:
        pytest.skip("Label Studio is not installed: `make .venv-review/.installed` installs it into "
                    ".venv-review (or set $SYNTHRANK_LABEL_STUDIO to a label-studio executable)")
    with running_label_studio(executable, tmp_path_factory.mktemp("label-studio")) as server:
        os.environ[TOKEN_ENV] = server.token
        try:
            yield server
        finally:
            os.environ.pop(TOKEN_ENV, None)
