"""What Prefect prints on the console during a CLI build.

A foreseeable synthrank error (bad input, too many failed teacher calls) reaches the user
as the CLI's one line ``error: ...``. Prefect logs its own copies, with the traceback, from
the failed task and flow run; :func:`quiet_expected_tracebacks` keeps those off the console
(the Prefect API still records them). ``synthrank --debug`` leaves them on.
"""

from __future__ import annotations

import logging

from warehouse.errors import SynthrankError

_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _ExpectedErrorCopies(logging.Filter):
    """Drops run records carrying a SynthrankError, and the "Finished in state Failed" line
    that follows any failure (the failure itself is printed, or logged with its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_RUN_LOGGERS):
            return True
        if record.exc_info and isinstance(record.exc_info[1], SynthrankError):
            return False
        return not (record.levelno >= logging.ERROR and record.getMessage().startswith("Finished in state Failed"))


def quiet_expected_tracebacks() -> None:
    """Attach the filter to Prefect's console handler (on the root logger, once Prefect's
    logging is set up; later set-ups are incremental and keep it)."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _ExpectedErrorCopies) for f in handler.filters):
            handler.addFilter(_ExpectedErrorCopies())
