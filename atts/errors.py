"""Every error a user can cause or fix, with the exit code the commands map it to, and the
guard that does the mapping. The bottom layer: imports nothing from atts.

    exit 2  UserError and its kinds (config, dataset, calibration, run-directory mismatch,
            report, grading, LLM settings): one ``error: ...`` line, no traceback
    exit 3  ServerError: a server could not be started or stopped (message has its log tail)
    exit 4  EngineError: a request failed after its retries, or the server went down
    exit 130  Ctrl-C (SIGINT), 143 SIGTERM: stopped cleanly; rerunning the command resumes
              (the signal handling is atts.signals)

Each module raises its own kind (``ConfigError`` from atts.config, ...); they are defined
here so that one table maps them all."""

from __future__ import annotations

import sys
from typing import Callable

from atts import signals


class AttsError(Exception):
    """Base of the errors ``run_guarded`` reports as one line; ``exit_code`` is the status."""

    exit_code = 2


class UserError(AttsError):
    """A problem the user can fix; the CLI prints the message without a traceback."""


class ConfigError(UserError, ValueError):
    """An invalid config file or override."""


class DatasetError(UserError, ValueError):
    """A dataset that cannot be found or read, or a malformed row."""


class CalibrationError(UserError, ValueError):
    """A calibration file that is missing, malformed or does not match the run."""


class RunMismatch(UserError, ValueError):
    """An output directory that holds a run of another config."""


class ReportError(UserError, ValueError):
    """A report asked of something that is not a run directory, or of nothing."""


class GradeError(UserError, ValueError):
    """Traces that cannot be graded as asked (wrong K, no rows, unknown dataset)."""


class LLMConfigError(UserError, ValueError):
    """Missing or invalid settings for the OpenAI-compatible LLM API."""


class ServerError(AttsError, RuntimeError):
    """A server could not be started or stopped; the message carries its log tail."""

    exit_code = 3


class EngineError(AttsError, RuntimeError):
    """A request failed after its retries, or its response was malformed."""

    exit_code = 4

    def __init__(self, role: str, reason: str):
        super().__init__(f"{role}: {reason}")
        self.role = role
        self.reason = reason


INTERRUPTED_EXIT = 130  # SIGINT (128 + 2)
TERMINATED_EXIT = 143  # SIGTERM (128 + 15)


def run_guarded(body: Callable[[], int]) -> int:
    """Run a command body: an AttsError prints one clear line and returns its exit code;
    SIGINT / SIGTERM (handled by ``atts.signals`` whatever the inherited dispositions)
    return 130 / 143, after the servers started by the command are stopped by their
    context managers on the way."""
    with signals.handling():
        try:
            return body()
        except AttsError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            code = signals.exit_status(e)
            by = "terminated (SIGTERM)" if code == TERMINATED_EXIT else "interrupted"
            print(f"{by}: stopped cleanly; rerun the same command to resume", file=sys.stderr)
            return code
