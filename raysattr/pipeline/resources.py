"""Can the Ray cluster hold the attribution actors, and can its nodes all reach the output?
Checked before the dataset starts, because Ray Data waits forever for an actor that no node (and
no autoscaler) can place, and a local output path on a cluster scatters part files over the
nodes' own disks.

Ray started in-process has no autoscaler: a request it cannot hold fails at once. On a cluster
(`RAY_ADDRESS` / `compute.address`) the autoscaler is asked for the actors' bundles and given
`compute.resource_timeout_s` to add nodes before the run fails with what the cluster has.
"""

from __future__ import annotations

import logging
import math
import time

import ray

from raysattr.config import ComputeConfig, OutputConfig
from raysattr.errors import ConfigError, ResourceError

log = logging.getLogger("raysattr")
POLL_S = 2.0


def actor_bundle(c: ComputeConfig) -> dict[str, float]:
    """What one attribution actor asks Ray for."""
    bundle = {"CPU": c.cpus_per_actor}
    if c.gpus_per_actor:
        bundle["GPU"] = c.gpus_per_actor
    return {k: v for k, v in bundle.items() if v}


def actors_that_fit(nodes: list[dict], bundle: dict[str, float]) -> int:
    """How many actors of `bundle` the alive nodes could hold in total (ignoring other load)."""
    if not bundle:
        return math.inf
    total = 0
    for node in nodes:
        if not node.get("Alive", node.get("alive", True)):
            continue
        have = node.get("Resources", {})
        total += min(int(have.get(k, 0.0) // v + 1e-9) for k, v in bundle.items())
    return total


def _cluster_line(nodes: list[dict]) -> str:
    alive = [n for n in nodes if n.get("Alive", True)]
    cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in alive)
    gpus = sum(n.get("Resources", {}).get("GPU", 0) for n in alive)
    return f"{len(alive)} node(s) with {cpus:g} CPUs and {gpus:g} GPUs in total"


def ensure_resources(c: ComputeConfig, autoscaling: bool) -> None:
    """Return once `c.min_actors` attribution actors fit on the cluster.

    Args:
        c: the compute section (`cpus_per_actor`, `gpus_per_actor`, `min_actors`,
            `resource_timeout_s`).
        autoscaling: whether nodes can appear (a cluster we connected to); False for Ray
            started in-process.

    Raises:
        ResourceError: the request cannot be met now and, on a cluster, not within the timeout.
    """
    bundle = actor_bundle(c)
    if actors_that_fit(ray.nodes(), bundle) >= c.min_actors:
        return
    if autoscaling and c.resource_timeout_s > 0:
        _request(bundle, c.min_actors)
        deadline, next_note = time.time() + c.resource_timeout_s, 0.0
        while time.time() < deadline:
            if actors_that_fit(ray.nodes(), bundle) >= c.min_actors:
                return
            if time.time() >= next_note:
                log.info(
                    "raysattr: waiting up to %.0f s for the autoscaler: %d actor(s) of %s; "
                    "cluster: %s",
                    deadline - time.time(),
                    c.min_actors,
                    bundle,
                    _cluster_line(ray.nodes()),
                )
                next_note = time.time() + 30
            time.sleep(POLL_S)
    raise ResourceError(_message(c, bundle, autoscaling), _where(c), _fix(c, autoscaling))


def _request(bundle: dict, n: int) -> None:
    """Ask the autoscaler for the actors' bundles (a no-op on a cluster without one)."""
    try:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[bundle] * n)
    except Exception as exc:  # noqa: BLE001 - best effort: the wait below still decides
        log.info("raysattr: could not ask the autoscaler for resources (%s)", exc)


def _message(c: ComputeConfig, bundle: dict, autoscaling: bool) -> str:
    waited = f" within compute.resource_timeout_s={c.resource_timeout_s:g}" if autoscaling else ""
    return (
        f"the Ray cluster cannot place {c.min_actors} attribution actor(s) of {bundle}{waited}; "
        f"it has {_cluster_line(ray.nodes())}"
        + ("" if autoscaling else " and no autoscaler (Ray started in this process)")
    )


def _where(c: ComputeConfig) -> str:
    keys = [f"compute.cpus_per_actor={c.cpus_per_actor:g}"]
    if c.gpus_per_actor:
        keys.insert(0, f"compute.gpus_per_actor={c.gpus_per_actor:g}")
    return ", ".join([*keys, f"compute.min_actors={c.min_actors}"])


def _fix(c: ComputeConfig, autoscaling: bool) -> str:
    if c.gpus_per_actor and not autoscaling:
        return "set compute.gpus_per_actor=0 to run on CPU, or submit to a cluster with GPUs"
    return "ask for less per actor, or add nodes (cluster.yaml worker types, max_workers)"


def check_output_shared(output: OutputConfig, nodes: list[dict]) -> None:
    """Refuse a local `output.uri` on a cluster of more than one alive node, unless the user
    declares it a mount every node shares (`output.shared_filesystem`): write tasks run on any
    node, so each node's part files would land on its own disk and the driver would find (and
    commit) only its own.

    Raises:
        ConfigError: a local output path, several nodes, and no shared mount declared.
    """
    if output.uri.startswith("s3://") or output.shared_filesystem:
        return
    alive = [n for n in nodes if n.get("Alive", n.get("alive", True))]
    if len(alive) <= 1:
        return
    raise ConfigError(
        f"output.uri is a local path but the Ray cluster has {len(alive)} nodes: each node "
        "would write its part files to its own disk",
        f"output.uri={output.uri!r}",
        "write to s3://..., or set output.shared_filesystem=true if every node mounts this "
        "path at the same place (NFS, EFS, Lustre)",
    )
