"""End to end as users run it: a local S3 server, `ray start --head` on its own ports and temp dir
(with fake GPUs), `ray job submit` of `jobs/attribute.py`, results read back from S3. Only the
processes this test started are stopped (by process group), never `ray stop`."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs

from raysattr.io.results import read_attributions
from raysattr.tokenize import build_kmer_vocab

from .factories import dna_rows, save_random_bert
from .servers import MotoServer, apply_env, free_port, restore_env

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class RayHead:
    """`ray start --head --block` in its own session; stopping kills that process group. Ports
    come from `free_port()`, so another process can take one before Ray binds it: a head that
    exits early is started again on fresh ports (twice at most), and its log is shown."""

    def __init__(self, temp_dir: Path, env: dict):
        for attempt in range(3):
            self._start(temp_dir, env, attempt)
            if self._wait(env):
                return
        raise RuntimeError(f"ray start --head exited early 3 times; its log:\n{self._log_tail()}")

    def _start(self, temp_dir: Path, env: dict, attempt: int) -> None:
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        ports = {
            "--port": free_port(),
            "--dashboard-port": self.dashboard_port,
            "--ray-client-server-port": free_port(),
            "--node-manager-port": free_port(),
            "--object-manager-port": free_port(),
            "--metrics-export-port": free_port(),
            "--dashboard-agent-listen-port": free_port(),
            "--dashboard-agent-grpc-port": free_port(),
            "--runtime-env-agent-port": free_port(),
        }
        base = free_port() % 20000 + 30000
        cmd = [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            "--num-cpus=8",
            "--num-gpus=2",
            f"--temp-dir={temp_dir}",
            f"--min-worker-port={base}",
            f"--max-worker-port={base + 200}",
            "--object-store-memory=536870912",
            *(f"{k}={v}" for k, v in ports.items()),
        ]
        temp_dir.mkdir(parents=True, exist_ok=True)
        self.log = temp_dir.parent / f"{temp_dir.name}-head-{attempt}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
            )

    def _log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def _wait(self, env: dict) -> bool:
        """True once the head answers; False when it exited early (to be started again)."""
        deadline = time.time() + 90
        while time.time() < deadline:
            # The jobs API over HTTP, what `ray job list` asks, without a `ray` CLI process (a
            # second of CPU each) competing with the starting head for the 2 cores.
            with (
                contextlib.suppress(OSError, http.client.HTTPException),
                urllib.request.urlopen(f"{self.address}/api/jobs/", timeout=5) as reply,
            ):
                if reply.status == 200:
                    return True
            if self.proc.poll() is not None:
                print(f"ray start --head exited early; its log:\n{self._log_tail()}")
                return False
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the Ray head did not come up in 90 s; its log:\n{self._log_tail()}")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=8)
                time.sleep(1)
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture
def cluster(tmp_path):
    s3 = MotoServer()
    previous = apply_env(s3.env)
    env = {
        **os.environ,
        **s3.env,
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    temp_dir = Path("/tmp") / f"rt{os.getpid()}"  # short: Ray's socket paths are length-limited
    try:
        head = RayHead(temp_dir, env)
        try:
            yield head, s3, env
        finally:
            head.stop()
    finally:
        restore_env(previous)
        s3.stop()


def test_ray_job_submit_reads_and_writes_s3_with_gpu_actors(cluster, tmp_path):
    head, s3, env = cluster
    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    fs.mkdir("jobs")
    table = dna_rows(90, seed=9)
    with fs.open("jobs/in/data.parquet", "wb") as fh:
        pq.write_table(table, fh)
    model = save_random_bert(tmp_path / "model", build_kmer_vocab(3), max_positions=64)
    fs.put(str(model) + "/", "jobs/model/", recursive=True)
    runtime_env = {
        "env_vars": {**s3.env, "RAYSATTR_CACHE": str(tmp_path / "cache")},
        "excludes": [".venv", ".git", "outputs", "*.pyc"],
    }
    cmd = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        head.address,
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "python",
        "jobs/attribute.py",
        "--config",
        "configs/demo.yaml",
        "data.uri=s3://jobs/in/",
        "model.path=s3://jobs/model",
        "output.uri=s3://jobs/out",
        "tokenize.k=3",
        "attribution.quadrature=fixed",  # not about convergence: a third of the path rule
        "attribution.n_steps=4",
        "compute.gpus_per_actor=0.5",
        "compute.max_actors=2",
        "compute.rows_per_block=30",
        "data.passthrough_columns=[]",
    ]
    job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "90 rows written (90 ok" in job.stdout
    out = read_attributions("s3://jobs/out")
    assert sorted(out.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    assert set(out.column("status").to_pylist()) == {"ok"}
    assert out.schema.field("residue_attr").type.value_type.bit_width == 32
    assert fs.exists("jobs/out/summary.json")
    assert _attribute_actor_gpus(head, env) == {0.5}


def _attribute_actor_gpus(head: RayHead, env: dict) -> set:
    """GPUs requested by the attribution actors, from Ray's state API (dead actors included)."""
    listing = subprocess.run(
        [
            str(BIN / "ray"),
            "list",
            "actors",
            "--detail",
            "--format",
            "json",
            "--limit",
            "1000",
            "--address",
            head.address,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    actors = json.loads(listing.stdout)
    return {
        a["required_resources"].get("GPU", 0.0)
        for a in actors
        if "AttributeStage" in (a.get("class_name") or "")
    }
