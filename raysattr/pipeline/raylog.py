"""Keep Ray's own output out of the user's terminal unless `--verbose` (`RAYSATTR_VERBOSE=1`).

A user sees raysattr's lines and progress; Ray's detail still goes to its log files (the session's
`logs/` folder: `ray-data*.log`, worker logs, and `raysattr-driver-stderr.log` for the driver's
C++ lines). What is silenced and why:

- Ray Data's progress (`Total Progress: 0/?` dumps every 10 s off a terminal) and its INFO/
  WARNING console lines: `DataContext.enable_progress_bars` off, its console handlers at ERROR
  (its file handlers keep everything).
- Worker output forwarded to the driver (`log_to_driver`), e.g. transformers' weight-loading bars
  in every actor: it stays in the worker log files.
- The notice that an in-process Ray enabled token authentication (Ray's default, which raysattr
  keeps): dropped by a filter on that one logger. (Setting `RAY_AUTH_MODE=token` after `import
  ray` does not work: Ray caches the mode at import, and the driver then fails to authenticate.)
- The driver's C++ `core_worker.cc` ERROR line "constructor arguments in the object store and
  max_restarts > 0" on every actor pool: Ray Data itself `ray.put`s the DataContext and the map
  function for each pool's actors (whatever their size) and keeps the refs for the dataset's
  lifetime, so the restart it warns about cannot lose them (Ray issue 57733). C++ writes to fd 2
  directly, so during a dataset's execution fd 2 goes through `StderrFilter`, which moves Ray's
  C++ log lines to a file and passes everything else through.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

VERBOSE_ENV = "RAYSATTR_VERBOSE"
CPP_LOG_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] ")
DRIVER_LOG = "raysattr-driver-stderr.log"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def verbose() -> bool:
    """Whether Ray's own output is shown (`--verbose` sets `RAYSATTR_VERBOSE=1`)."""
    return os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes")


def init_options(local: bool) -> dict:
    """Extra `ray.init` arguments; `local`: Ray is started in this process."""
    if local and not verbose():
        logging.getLogger(AUTH_LOGGER).addFilter(_not_auth_notice)
    if verbose():
        return {"log_to_driver": True}
    return {"log_to_driver": False, "logging_level": logging.WARNING}


def _not_auth_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled")


def quiet_ray_data() -> None:
    """Ray Data's progress and console logs off (unless verbose); its log files unchanged."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose()
    ctx.print_on_execution_start = verbose()
    if verbose():
        return
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            handler.setLevel(logging.ERROR)


def session_log_dir() -> Path | None:
    """This Ray session's `logs/` folder on this machine (None before `ray.init`)."""
    try:
        import ray

        node = ray._private.worker._global_node
        return Path(node.get_logs_dir_path()) if node is not None else None
    except (AttributeError, ImportError):
        return None


class StderrFilter:
    """While active, fd 2 goes through a pipe: Ray's C++ log lines are appended to `log_path`,
    everything else is written to the real stderr. Start it after `ray.init` (Ray's daemons
    must not inherit the pipe); a no-op when verbose or without a log folder."""

    def __init__(self, log_path: Path | None):
        self.log_path = log_path
        self.active = log_path is not None and not verbose()

    def __enter__(self) -> StderrFilter:
        if not self.active:
            return self
        self.saved = os.dup(2)
        read_end, self.write_end = os.pipe()
        os.dup2(self.write_end, 2)
        self.thread = threading.Thread(target=self._pump, args=(read_end,), daemon=True)
        self.thread.start()
        return self

    def _pump(self, read_end: int) -> None:
        with open(read_end, "rb", buffering=0) as pipe, open(self.log_path, "ab") as log:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._route(line + b"\n", log)
            if pending:
                self._route(pending, log)

    def _route(self, line: bytes, log) -> None:
        if CPP_LOG_LINE.match(line):
            log.write(line)
        else:
            os.write(self.saved, line)

    def __exit__(self, *exc) -> None:
        if not self.active:
            return
        os.dup2(self.saved, 2)
        os.close(self.write_end)
        self.thread.join(timeout=5)
        os.close(self.saved)
