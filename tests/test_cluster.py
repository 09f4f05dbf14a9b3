"""Multi-node runs as users run them: a driver process (`raysattr run` with `compute.address`)
against a local cluster of several Ray nodes with fake GPUs, output on the local S3 server.

- `ray.cluster_utils.Cluster`: a head without GPUs and two worker nodes of one fake GPU each;
  attribution actors of one GPU can only be placed one per worker node.
- The fake multi-node autoscaler (what `ray.cluster_utils.AutoscalingCluster` starts): a head
  without GPUs and a GPU worker type with `min_workers: 0`; the run's resource request and
  its actor pool make the autoscaler add workers.

Each cluster runs on its own ports and temp dir and is stopped by pid (`tests/clusters.py`); the
suite's in-process Ray session is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from raysattr.io.results import read_attributions
from raysattr.tokenize import build_kmer_vocab

from .clusters import REPO, FakeAutoscalingCluster, LocalCluster, cluster_state
from .conftest import S3_BUCKET
from .factories import dna_rows, save_random_bert

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.slow]
BIN = Path(sys.executable).parent
# A run on these clusters took 115 s at load average 17 on 2 cores; past this it has hung.
RUN_TIMEOUT_S = 360


@pytest.fixture
def env(s3) -> dict:
    """The driver's and the cluster's environment: the S3 server's variables (from `s3`), no
    token authentication, the model hub off."""
    return {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.fixture
def inputs(s3, tmp_path) -> tuple[str, Path, list[str]]:
    """A parquet file of DNA rows on S3, a random 3-mer model on local disk (the nodes of a
    local cluster share it); returns (data URI, model dir, input ids)."""
    table = dna_rows(96, seed=31)
    prefix = f"{S3_BUCKET}/cluster-{tmp_path.name}"
    with s3.open(f"{prefix}/in/data.parquet", "wb") as fh:
        pq.write_table(table, fh)
    model = save_random_bert(tmp_path / "model", build_kmer_vocab(3), max_positions=64)
    return f"s3://{prefix}/in/", model, table.column("id").to_pylist()


CONFIG = """
data: {id_column: id, sequence_column: sequence, label_column: label}
tokenize: {scheme: kmer, k: 3}
attribution: {method: saliency}
stats: {enabled: false}
qc: {enabled: false}
report: {enabled: false}
"""


def raysattr_run(address: str, env: dict, data: str, model: Path, out: str, *overrides):
    """`raysattr run` as its own driver process against the cluster at `address`."""
    config = model.parent / "cluster.yaml"
    config.write_text(CONFIG)
    cmd = [
        str(BIN / "raysattr"),
        "run",
        str(config),
        f"compute.address={address}",
        f"data.uri={data}",
        f"model.path={model}",
        f"output.uri={out}",
        "output.mode=overwrite",
        "compute.gpus_per_actor=1",
        "compute.rows_per_block=12",
        "compute.rows_per_call=12",
        *overrides,
    ]
    try:
        return subprocess.run(
            cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        parts = [
            o.decode(errors="replace") if isinstance(o, bytes) else o or ""
            for o in (exc.stdout, exc.stderr)
        ]
        output = "\n".join(p[-2500:] for p in parts)
        pytest.fail(
            f"raysattr run against {address} did not finish in {RUN_TIMEOUT_S} s (load average "
            f"{os.getloadavg()[0]:.1f}); its output:\n{output}"
        )


def attribution_nodes(state: dict) -> list[str]:
    """Node ids of the attribution actors (Ray Data names them `MapWorker(...AttributeStage)`)."""
    return [a["node"] for a in state["actors"] if "AttributeStage" in a["class"]]


def test_multi_node_run_spreads_actors_writes_every_row_once_and_refuses_local_output(
    env, inputs, tmp_path
):
    data, model, ids = inputs
    cluster = LocalCluster(Path(f"/tmp/rc{os.getpid()}"), env, workers=2)
    try:
        local = raysattr_run(cluster.address, env, data, model, str(tmp_path / "local-out"))
        assert local.returncode == 2, local.stdout[-2000:] + local.stderr[-3000:]
        errors = [line for line in local.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "3 nodes" in errors[0], local.stderr[-3000:]
        assert "output.shared_filesystem=true" in errors[0]
        assert not (tmp_path / "local-out" / "attributions").exists()

        out = data.replace("/in/", "/out")
        job = raysattr_run(
            cluster.address, env, data, model, out, "compute.min_actors=2", "compute.max_actors=2"
        )
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-3000:]
        assert f"{len(ids)} rows written ({len(ids)} ok" in job.stdout + job.stderr
        written = read_attributions(out).column("id").to_pylist()
        assert sorted(written) == sorted(ids)  # every row, once

        roles = cluster.node_ids()
        actor_nodes = attribution_nodes(cluster_state(cluster.address, env))
        assert len(actor_nodes) == 2, actor_nodes
        assert {roles.get(n) for n in actor_nodes} == {"worker"}
        assert len(set(actor_nodes)) == 2  # one fake GPU per worker node: one actor on each
    finally:
        cluster.stop()


def test_autoscaler_adds_gpu_workers_for_the_actor_pool(env, inputs):
    data, model, ids = inputs
    worker_types = {
        "gpu_worker": {
            "resources": {"CPU": 1, "GPU": 1, "object_store_memory": 100 * 1024**2},
            "node_config": {},
            "min_workers": 0,
            "max_workers": 3,
        }
    }
    started = time.time()
    cluster = FakeAutoscalingCluster(
        Path(f"/tmp/ra{os.getpid()}"), env, head_cpus=2, worker_types=worker_types
    )
    try:
        up = time.time()
        out = data.replace("/in/", "/out-autoscaled")
        job = raysattr_run(
            cluster.address,
            env,
            data,
            model,
            out,
            "compute.min_actors=2",
            "compute.max_actors=2",
            "compute.resource_timeout_s=120",
        )
        ran = time.time()
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-3000:]
        assert f"{len(ids)} rows written ({len(ids)} ok" in job.stdout + job.stderr
        written = read_attributions(out).column("id").to_pylist()
        assert sorted(written) == sorted(ids)

        state = cluster_state(cluster.address, env)
        print(f"head {up - started:.1f} s, run {ran - up:.1f} s, state {time.time() - ran:.1f} s")
        # No worker at the start (min_workers 0), so the run waited for the autoscaler...
        assert "waiting up to" in job.stderr, job.stderr[-3000:]
        # ...which added GPU workers: the pool's two actors (compute.min_actors = max_actors)
        # ran on two of them. Ray Data's own CPU requests may add a third (the node type's max).
        workers = {n["id"] for n in state["nodes"] if not n["head"]}
        actor_nodes = attribution_nodes(state)
        assert len(actor_nodes) == 2 and len(set(actor_nodes)) == 2, state
        assert set(actor_nodes) <= workers and 2 <= len(workers) <= 3, state
    finally:
        cluster.stop()
