"""The lease on a run folder: one run at a time may write into an output (local or S3).

The lease is a small JSON file (`.raysattr-lease.json`: run id, host, pid, start, heartbeat)
created exclusively (`O_EXCL` locally, `If-None-Match: *` on S3), refreshed by a heartbeat
thread and removed when the run ends. A second run into the same output fails at once with a
message naming the holder. A lease is stale, and may be taken over, when its heartbeat is older
than its ttl, or at once when its holder ran on this host and that process is gone (a driver
killed with SIGKILL leaves its lease behind).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from raysattr.errors import LeaseHeldError, OutputError

log = logging.getLogger("raysattr")
LEASE_FILE = ".raysattr-lease.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def is_stale(holder: dict, now: float | None = None) -> bool:
    """Whether a lease read from disk may be taken over."""
    now = time.time() if now is None else now
    if now - float(holder.get("heartbeat", 0)) > float(holder.get("ttl_s", 0)):
        return True
    same_host = holder.get("host") == socket.gethostname()
    return same_host and not _pid_alive(int(holder.get("pid", -1)))


def describe(holder: dict) -> str:
    age = time.time() - float(holder.get("heartbeat", 0))
    return (
        f"run {holder.get('run_id')} on host {holder.get('host')} (pid {holder.get('pid')}), "
        f"heartbeat {age:.0f} s ago"
    )


@dataclass
class Lease:
    """A held lease; `release()` (or the context manager) gives it back.

    Args:
        fs: the output's filesystem.
        path: the lease file's path in `fs`.
        run_id: the holder's run id.
        ttl_s: a heartbeat older than this makes the lease stale.
    """

    fs: object
    path: str
    run_id: str
    ttl_s: float
    started: float = field(default_factory=time.time)
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def payload(self) -> dict:
        return {
            "run_id": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "heartbeat": time.time(),
            "ttl_s": self.ttl_s,
        }

    def acquire(self, output_uri: str) -> Lease:
        """Take the lease or raise `LeaseHeldError` naming the live holder."""
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return self
            holder = self.read()
            if holder is None:
                continue  # released between our create and our read: try again
            if not is_stale(holder):
                raise LeaseHeldError(
                    f"the output is in use by {describe(holder)}",
                    f"output.uri={output_uri!r}",
                    "wait for that run to end, or write to another output.uri; a lease whose "
                    f"heartbeat is older than {holder.get('ttl_s')} s is taken over",
                )
            log.warning("raysattr: taking over a stale lease of %s", describe(holder))
            self._remove()
        raise LeaseHeldError(
            "another run took the lease while this one tried to", f"output.uri={output_uri!r}"
        )

    def read(self) -> dict | None:
        try:
            with self.fs.open(self.path, "rb") as handle:
                return json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"run_id": "?", "heartbeat": 0, "ttl_s": 0}  # a torn write: stale

    def verify(self) -> None:
        """Raise `OutputError` unless this run still holds the lease (checked before a commit)."""
        holder = self.read()
        if self.lost or not holder or holder.get("run_id") != self.run_id:
            raise OutputError(
                "this run lost the output's lease (its heartbeat stalled past the ttl and "
                f"another run took it over: {describe(holder) if holder else 'none now'})",
                f"lease file {self.path}",
                "nothing was replaced; rerun when the other run has ended, or raise "
                "output.lease_ttl_s",
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        holder = self.read()
        if holder and holder.get("run_id") == self.run_id:
            self._remove()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _create(self) -> bool:
        data = json.dumps(self.payload()).encode()
        if _is_local(self.fs):
            parent = os.path.dirname(self.path)
            os.makedirs(parent, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return True
        try:
            self.fs.pipe_file(self.path, data, mode="create")
        except FileExistsError:
            return False
        except OSError:
            if self.fs.exists(self.path):
                return False
            raise
        return True

    def _remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path)

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="raysattr-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                holder = self.read()
                if not holder or holder.get("run_id") != self.run_id:
                    self.lost = True
                    log.error("raysattr: lost the output lease to %s", holder)
                    return
                self.fs.pipe_file(self.path, json.dumps(self.payload()).encode())
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the ttl absorbs it
                log.warning("raysattr: lease heartbeat failed (%s); retrying", exc)


def _is_local(fs) -> bool:
    protocol = getattr(fs, "protocol", "")
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))
