"""Test hook: SIGKILL this process at a named step of publishing.

Only the crash tests (tests/test_publish_recovery.py) set ``SYNTHRANK_TEST_KILL_AT``, to stop a
real build at exactly that step and check that the next build recovers. Unset (always, in
normal use) :func:`kill_point` does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "SYNTHRANK_TEST_KILL_AT"
# The steps, in the order a build passes them.
KILL_POINTS = ("published", "recorded", "export-staged", "export-moved")


def kill_point(step: str) -> None:
    """SIGKILL this process if the test hook names ``step``."""
    if os.environ.get(KILL_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
