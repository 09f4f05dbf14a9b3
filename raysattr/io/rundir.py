"""The run folder (local path or `s3://` prefix): the one owner of every file a run writes.

It names each output file, reads and writes them, and is the only code that joins output paths.
It also keeps earlier results safe:

- **Lease** (`raysattr.io.lease`): one run at a time writes into an output.
- **Staging**: an `overwrite` run writes everything (attributions, summary, statistics, qc,
  report) into `.staging-<run_id>/` and `commit()` swaps it in only after the run succeeded; a
  failed run leaves the previous results and their summary untouched. The swap is recoverable:
  `_COMMITTING.json` in the staging folder lists what is moving, and the next run to take the
  lease finishes a swap that a crash interrupted (`recover()`), or discards the staging folder of
  a run that never reached its commit.
- **Quarantine**: an unreadable part file (a disk that filled up, a copy cut short) is moved to
  `quarantine/` on resume instead of stopping the run; its rows are recomputed.

Layout: see README "Outputs" and "When things go wrong".
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from raysattr.errors import OutputError
from raysattr.io.fs import filesystem
from raysattr.io.lease import LEASE_FILE, Lease

log = logging.getLogger("raysattr")

ATTRIBUTIONS = "attributions"
SUMMARY = "summary.json"
STATS_FILES = (
    "position_stats.parquet",
    "motif_stats.parquet",
    "seqlets.parquet",
    "agreement_stats.parquet",
    "layer_stats.parquet",
    "motifs.meme",
    "stats.json",
)
STATS_STATE = "stats_state.pkl"
QC_TABLE, QC_SUMMARY = "qc.parquet", "qc.json"
REPORT = "report.html"
AUDIT = "audit.json"
# Every name a run may write at the top of its folder; an overwrite replaces exactly these.
ARTIFACTS = (ATTRIBUTIONS, SUMMARY, *STATS_FILES, STATS_STATE, QC_TABLE, QC_SUMMARY, REPORT, AUDIT)
QUARANTINE = "quarantine"
STAGING_PREFIX, TRASH_PREFIX, PROBE_PREFIX = ".staging-", ".trash-", ".raysattr-probe-"
COMMIT_MARKER = "_COMMITTING.json"
PART_PREFIX, TMP_PREFIX = "part-", ".tmp-"


def new_run_id() -> str:
    """A sortable, unique run id, e.g. `20261122T093000-1a2b3c4d`."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


class RunDir:
    """One run folder.

    Args:
        uri: a local directory or an `s3://bucket/prefix`.
    """

    def __init__(self, uri: str):
        uri = str(uri)
        self.uri = uri.rstrip("/") if uri.rstrip("/") else uri
        self.fs, root = filesystem(self.uri)
        self.root = root.rstrip("/") or root

    def __repr__(self) -> str:
        return f"RunDir({self.uri!r})"

    # ------------------------------------------------------------------------------- names
    def path(self, *names: str) -> str:
        """Filesystem path of `names` under the folder (what `self.fs` opens)."""
        return "/".join([self.root, *names])

    def uri_of(self, *names: str) -> str:
        """URI of `names` under the folder (`s3://...` for S3 outputs)."""
        return "/".join([self.uri, *names])

    def child(self, name: str) -> RunDir:
        return RunDir(self.uri_of(name))

    # ------------------------------------------------------------------------ plain files
    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def present(self) -> bool:
        """Whether the folder itself exists."""
        self.refresh()
        return self.fs.exists(self.root)

    def read_bytes(self, name: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            return self.fs.cat_file(self.path(name))
        except FileNotFoundError:
            return None

    def read_json(self, name: str) -> dict | None:
        data = self.read_bytes(name)
        if data is None:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OutputError(
                f"{name} is not valid JSON ({exc})",
                self.uri_of(name),
                "delete it and rerun the command that writes it",
            ) from exc

    def read_parquet(self, name: str, columns: list[str] | None = None) -> pa.Table | None:
        data = self.read_bytes(name)
        return None if data is None else pq.read_table(io.BytesIO(data), columns=columns)

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write `name` whole: readers see the old file or the new one, never half of either
        (a local temporary file renamed over it; one PUT on S3). Returns its URI."""
        target = self.path(name)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        if self.uri.startswith("s3://"):
            self.fs.pipe_file(target, data)
        else:
            tmp = f"{target}.{TMP_PREFIX}{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        return self.uri_of(name)

    def write_json(self, name: str, payload: dict) -> str:
        return self.write_bytes(name, json.dumps(payload, indent=2, default=str).encode())

    def write_text(self, name: str, text: str) -> str:
        return self.write_bytes(name, text.encode("utf-8"))

    def write_parquet(self, name: str, table: pa.Table) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return self.write_bytes(name, buf.getvalue())

    def refresh(self) -> None:
        """Forget cached S3 listings: Ray workers write here from other processes."""
        self.fs.invalidate_cache(self.root)

    def names(self) -> list[str]:
        """Names directly under the folder (files and sub-folders), sorted."""
        return _names(self)

    def remove(self, name: str) -> None:
        if self.exists(name):
            self.fs.rm(self.path(name), recursive=True)

    # ------------------------------------------------------------------------ attributions
    def part_files(self) -> list[str]:
        """Paths of the finished part files (a crashed writer's temporary files are ignored)."""
        directory = self.path(ATTRIBUTIONS)
        self.refresh()
        if not self.fs.exists(directory):
            return []
        return sorted(
            p for p in self.fs.find(directory) if p.rsplit("/", 1)[-1].startswith(PART_PREFIX)
        )

    def write_part(self, table: pa.Table, run_id: str | None = None) -> str:
        """Write one block of results as `attributions/part-<hash of its ids>.parquet`: a retried
        block overwrites its own file instead of duplicating its rows. Returns the path.

        Args:
            table: the block's result rows.
            run_id: the writing run. Given, the block is written into an output folder only
                while the folder's lease names this run (checked between writing the temporary
                file and moving it into place): the write tasks of a driver killed with SIGKILL
                may still finish after a resumed run took the lease over and read which rows
                were done, and their rows would then be written twice. A staging folder
                belongs to its run alone and needs no check.

        Raises:
            OutputError: another run holds the lease, or none does.
        """
        keys = [str(i) for i in table.column("id").to_pylist()]
        if "source_row" in table.column_names:  # later copies of a duplicate id differ here
            rows = table.column("source_row").to_pylist()
            keys = [f"{k}\x00{r}" for k, r in zip(keys, rows, strict=True)]
        name = hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:20]
        directory = self.path(ATTRIBUTIONS)
        self.fs.makedirs(directory, exist_ok=True)
        path = f"{directory}/{PART_PREFIX}{name}.parquet"
        tmp = f"{directory}/{TMP_PREFIX}{name}-{os.getpid()}.parquet"
        with self.fs.open(tmp, "wb") as handle:
            pq.write_table(table, handle)
        if run_id is not None and not self.root.rsplit("/", 1)[-1].startswith(STAGING_PREFIX):
            self._check_lease(run_id, tmp)
        self.fs.mv(tmp, path)  # atomic locally; PUT+copy on S3
        return path

    def _check_lease(self, run_id: str, tmp: str) -> None:
        """Raise `OutputError` (removing `tmp`) unless this folder's lease names `run_id`."""
        holder = Lease(self.fs, self.path(LEASE_FILE), run_id, 0).read()
        if holder and holder.get("run_id") == run_id:
            return
        self.fs.rm(tmp)
        raise OutputError(
            f"run {run_id} no longer holds the output's lease ("
            + (f"run {holder.get('run_id')} does" if holder else "no run does")
            + "); this block of results was not written",
            f"lease file {self.path(LEASE_FILE)}",
            "nothing to do if that run was stopped: the run holding the lease writes these rows",
        )

    def quarantine_unreadable_parts(self) -> list[str]:
        """Move part files whose parquet footer cannot be read to `quarantine/`; returns their
        new URIs. Their rows are then missing, so a resumed run recomputes them."""
        moved = []
        for path in self.part_files():
            try:
                with self.fs.open(path, "rb") as handle:
                    pq.ParquetFile(handle).metadata  # noqa: B018 - reading the footer is the check
            except Exception as exc:  # noqa: BLE001 - any failure to read it is corruption
                name = path.rsplit("/", 1)[-1]
                self.fs.makedirs(self.path(QUARANTINE), exist_ok=True)
                self.fs.mv(path, self.path(QUARANTINE, name))
                moved.append(self.uri_of(QUARANTINE, name))
                log.warning(
                    "raysattr: unreadable part file %s (%s) moved to %s; its rows are recomputed",
                    name,
                    str(exc).splitlines()[0][:120],
                    moved[-1],
                )
        return moved

    # ----------------------------------------------------------------------------- safety
    def probe_writable(self) -> None:
        """Write and delete a small file; raise `OutputError` naming the folder when that fails."""
        name = f"{PROBE_PREFIX}{uuid.uuid4().hex[:8]}"
        try:
            if self.fs.exists(self.root) and not self.fs.isdir(self.root):
                raise OSError("it is a file, not a folder")
            self.write_bytes(name, b"probe")
            self.remove(name)
        except OSError as exc:
            raise OutputError(
                f"cannot write to the output folder ({_first_line(exc)})",
                f"output.uri={self.uri!r}",
                "choose a writable output.uri (check permissions, the bucket name and credentials)",
            ) from exc

    def acquire_lease(self, run_id: str, ttl_s: float) -> Lease:
        """Take this folder's lease (`LeaseHeldError` when a live run holds it), then finish or
        discard what an interrupted earlier run left (`recover`)."""
        self.fs.makedirs(self.root, exist_ok=True)
        lease = Lease(self.fs, self.path(LEASE_FILE), run_id, ttl_s).acquire(self.uri)
        try:
            self.recover()
        except BaseException:
            lease.release()
            raise
        return lease

    def staging(self, run_id: str) -> RunDir:
        """A fresh folder inside this one where an overwrite run writes its results."""
        return self.child(f"{STAGING_PREFIX}{run_id}")

    def commit(self, staging: RunDir, lease: Lease) -> None:
        """Replace this folder's results with `staging`'s (only after the run succeeded)."""
        lease.verify()
        staged = [n for n in _names(staging) if n != COMMIT_MARKER]
        staging.write_json(COMMIT_MARKER, {"names": staged})
        self._finish_commit(staging)

    def recover(self) -> None:
        """Finish an interrupted commit, drop staging folders of runs that failed or were killed,
        and remove leftovers (trash, probes, temporary part files). Call it holding the lease."""
        for name in _names(self):
            if name.startswith(STAGING_PREFIX):
                staging = self.child(name)
                if staging.exists(COMMIT_MARKER):
                    log.warning("raysattr: finishing the interrupted commit of %s", staging.uri)
                    self._finish_commit(staging)
                else:
                    log.info("raysattr: removing %s (a run that did not finish)", staging.uri)
                    self.remove(name)
            elif name.startswith((TRASH_PREFIX, PROBE_PREFIX)):
                self.remove(name)
        for path in self._tmp_parts():
            self.fs.rm(path)

    def _finish_commit(self, staging: RunDir) -> None:
        """Idempotent swap: old artifacts -> trash, staged names -> here, then clean up."""
        names = staging.read_json(COMMIT_MARKER)["names"]
        trash = self.child(TRASH_PREFIX + staging.root.rsplit("/", 1)[-1][len(STAGING_PREFIX) :])
        for name in ARTIFACTS:
            self.fs.invalidate_cache()  # s3fs lists prefixes from a cache that moves outdate
            still_staged = name in names and staging.exists(name)
            if self.exists(name) and (name not in names or still_staged):
                self._move(self.path(name), trash.path(name))
        for name in names:
            self.fs.invalidate_cache()
            if staging.exists(name):
                self._move(staging.path(name), self.path(name))
        self.remove(trash.root.rsplit("/", 1)[-1])
        self.remove(staging.root.rsplit("/", 1)[-1])

    def _move(self, src: str, dst: str) -> None:
        """Move a file or a folder (paths in `self.fs`): a rename locally; object by object on
        S3, copies first, then deletes (s3fs's recursive `mv` also tries to copy the prefix
        itself as a key, and fails)."""
        if not self.uri.startswith("s3://"):
            self.fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
            self.fs.mv(src, dst, recursive=True)
            return
        files = self.fs.find(src) if self.fs.isdir(src) else [src]
        for path in files:
            self.fs.copy(path, dst + path[len(src) :])
        self.fs.rm(files)

    def _tmp_parts(self) -> list[str]:
        directory = self.path(ATTRIBUTIONS)
        if not self.fs.exists(directory):
            return []
        return [p for p in self.fs.find(directory) if p.rsplit("/", 1)[-1].startswith(TMP_PREFIX)]


def _names(rundir: RunDir) -> list[str]:
    """Names directly under the folder (files and sub-folders); empty when it does not exist."""
    rundir.refresh()
    if not rundir.fs.exists(rundir.root):
        return []
    entries = rundir.fs.ls(rundir.root, detail=False)
    return sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in entries} - {""})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
