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


def check_reachable(uri: str, key: str) -> None:
    """For an `s3://` URI, fail fast with one line naming the endpoint and bucket when the
    endpoint cannot be reached, the bucket does not exist or the credentials are refused (s3fs
    would otherwise retry for a minute and end in a botocore traceback). Local paths pass.

    Args:
        uri: the URI to check.
        key: the config key it came from, e.g. "data.uri".
    """
    if not uri.startswith("s3://"):
        return
    import s3fs

    from raysattr.errors import InputError

    bucket = uri[len("s3://") :].split("/", 1)[0]
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"
    probe = s3fs.S3FileSystem(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        skip_instance_cache=True,
        config_kwargs={"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 1}},
    )
    try:
        probe.ls(bucket, detail=False)
    except FileNotFoundError:
        raise InputError(
            f"bucket {bucket!r} does not exist at {endpoint}",
            f"{key}={uri!r}",
            "check the bucket name and AWS_ENDPOINT_URL",
        ) from None
    except Exception as exc:  # noqa: BLE001 - botocore/aiohttp raise many kinds; all mean "can't"
        detail = (str(exc).strip() or type(exc).__name__).splitlines()[0][:160]
        raise InputError(
            f"cannot reach S3 bucket {bucket!r} at {endpoint} ({detail})",
            f"{key}={uri!r}",
            "check AWS_ENDPOINT_URL, the network and the credentials (AWS_ACCESS_KEY_ID, ...)",
        ) from None
