"""One filesystem layer for data, models and outputs: local paths and `s3://` URIs.

S3 endpoint and credentials come from the environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`), which s3fs and pyarrow both read; they are never
logged or written to outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return `(filesystem, path without scheme)` for a local path or `s3://` URI."""
    if uri.startswith("s3://"):
        try:
            import s3fs
        except ImportError as exc:  # pragma: no cover - s3fs is a runtime dependency
            raise ImportError("s3:// URIs need s3fs: pip install s3fs") from exc
        # The endpoint is part of fsspec's instance-cache key: a process whose AWS_ENDPOINT_URL
        # changes must not get a cached client still pointing at the old endpoint.
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
        return s3fs.S3FileSystem(endpoint_url=endpoint), uri[len("s3://") :]
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"unsupported URI scheme in {uri!r}; use a local path or s3://")
    return fsspec.filesystem("file"), str(Path(uri.removeprefix("file://")).expanduser())


def copy_prefix_to_local(uri: str, target: Path) -> None:
    """Copy every object under `uri` into `target` once (a `.complete` marker skips repeats)."""
    marker = target / ".complete"
    if marker.exists():
        return
    fs, root = filesystem(uri)
    files = [f for f in fs.find(root) if not f.endswith("/")]
    if not files:
        raise FileNotFoundError(f"nothing found under {uri}")
    target.mkdir(parents=True, exist_ok=True)
    for remote in files:
        local = target / Path(remote).relative_to(root.rstrip("/"))
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get(remote, str(local))
    marker.write_text(uri)


def write_json(uri: str, name: str, payload: dict) -> None:
    """Write `payload` as `<uri>/<name>` (local or s3://), creating the directory."""
    import json

    fs, root = filesystem(uri)
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root.rstrip('/')}/{name}", "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
