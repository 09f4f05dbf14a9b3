"""Local multi-node Ray clusters for tests, each on its own ports and temp dir, stopped by pid.

- `LocalCluster`: `ray.cluster_utils.Cluster` (a head and worker nodes with fake GPUs) built in a
  child process (`python -m tests.clusters`), because `Cluster.shutdown` resets the internal KV
  client of whatever Ray the calling process is connected to (the suite's in-process session).
- `FakeAutoscalingCluster`: what `ray.cluster_utils.AutoscalingCluster` does (the fake
  multi-node provider, `RAY_FAKE_CLUSTER=1`, a one-second autoscaler loop), done by hand because
  in Ray 2.60 its `start()`/`shutdown()` run `ray stop --force` (every Ray on the machine, other
  sessions' included) and its base config (`fake_multi_node/example.yaml`) is not in the wheel.

Worker nodes are started by the head's processes (the autoscaler monitor, or the cluster child),
outside this process's process group, so `stop()` ends every process whose command line names
this cluster's temp dir, by pid, then the child itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: every socket is held open until all are chosen (ports taken one
    at a time and released at once can repeat, and two Ray servers on one port kill the head)."""
    import socket

    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def worker_port_range() -> tuple[int, int]:
    """200 worker ports below Linux's ephemeral range (32768+), where `free_port()` answers."""
    base = 10000 + (os.getpid() * 211 + int(time.time())) % 19000
    return base, base + 200


def session_pids(temp_dir: Path) -> list[int]:
    """Processes whose command line names `temp_dir` (a Ray session under it)."""
    needle, pids = str(temp_dir).encode(), []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def kill_pids(pids: list[int], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what is left after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _signal_and_wait(pids, sig, grace_s)


def _signal_and_wait(pids: list[int], sig: int, grace_s: float) -> None:
    """Send `sig` to `pids`, then wait up to `grace_s` for them to be gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    """`pid`'s live descendants (children, theirs, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], [pid]
    while todo:
        found = children.get(todo.pop(), [])
        out += found
        todo += found
    return out


def kill_tree(pid: int, grace_s: float = 10.0) -> None:
    """SIGKILL `pid` and every descendant (frozen first with SIGSTOP, so none forks or writes
    meanwhile), and wait until they are gone: a Ray started in-process by a killed driver
    otherwise finishes its running tasks after the driver died."""
    pids = [pid, *descendants(pid)]
    _signal_and_wait(pids, signal.SIGSTOP, 0)
    pids = list(dict.fromkeys([*pids, *descendants(pid)]))  # anything forked meanwhile
    _signal_and_wait(pids, signal.SIGKILL, grace_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)
    except ProcessLookupError:
        return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return ""


class _Child:
    """A child process in its own session with a log file; `stop()` ends it and its Ray."""

    def __init__(self, cmd: list[str], env: dict, temp_dir: Path, name: str):
        self.temp_dir = temp_dir
        temp_dir.mkdir(parents=True, exist_ok=True)
        self.log = temp_dir.parent / f"{temp_dir.name}-{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                cwd=REPO,
                start_new_session=True,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _shut_down(self) -> None:
        """Ask the child to stop its nodes itself (a `LocalCluster` child does on EOF)."""

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self._shut_down()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        kill_pids(session_pids(self.temp_dir))
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class LocalCluster(_Child):
    """A head (CPUs, no GPU) and `workers` nodes of `worker_cpus` CPUs and one fake GPU each,
    via `ray.cluster_utils.Cluster` in a child process. `address`: the GCS address."""

    def __init__(self, temp_dir: Path, env: dict, workers: int = 2, worker_cpus: int = 1):
        spec = {"temp_dir": str(temp_dir), "workers": workers, "worker_cpus": worker_cpus}
        cmd = [sys.executable, "-m", "tests.clusters", json.dumps(spec)]
        super().__init__(cmd, env, temp_dir, "cluster")
        self.address = self._wait_for_address(timeout_s=60)

    def _shut_down(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the child shuts its nodes down on EOF
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def _wait_for_address(self, timeout_s: float) -> str:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("CLUSTER_ADDRESS="):
                    return line.split("=", 1)[1].strip()
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"the local Ray cluster did not come up in {timeout_s:.0f} s:\n{tail}")

    def node_ids(self) -> dict[str, str]:
        """Node id -> "head" | "worker", as the child printed them at start."""
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("NODES="):
                return json.loads(line.split("=", 1)[1])
        raise RuntimeError("the cluster child did not print its nodes")


def cluster_state(address: str, env: dict) -> dict:
    """`{"nodes": [{id, alive, head}], "actors": [{class, node}]}` of the cluster at `address`
    (dead nodes and actors included), read by a short-lived driver process."""
    probe = subprocess.run(
        [sys.executable, "-m", "tests.clusters", "--state", address],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for line in probe.stdout.splitlines():
        if line.startswith("STATE="):
            return json.loads(line.split("=", 1)[1])
    raise RuntimeError(f"could not read the cluster's state:\n{probe.stderr[-2000:]}")


def fake_autoscaling_config(head: dict, worker_types: dict, gcs_address: str) -> dict:
    """The config `AutoscalingCluster._generate_config` builds: Ray's fake multi-node example
    (`fake_multi_node/example.yaml`, not shipped in the 2.60 wheel) with `worker_types` and a
    head of `head` resources; `gcs_address` so that workers join this head, not port 6379."""
    empty_lists = [
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "cluster_synced_files",
        "rsync_exclude",
        "rsync_filter",
    ]
    return {
        "cluster_name": "fake_multinode",
        "max_workers": sum(t.get("max_workers", 0) for t in worker_types.values()),
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            **worker_types,
            "ray.head.default": {"resources": head, "node_config": {}, "max_workers": 0},
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "docker": {},
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        **{key: [] for key in empty_lists},
    }


class FakeAutoscalingCluster(_Child):
    """`ray start --head --block` with the fake multi-node autoscaler: worker nodes of
    `worker_types` (autoscaler node-type dicts) are added and removed as load asks.
    `address`: the GCS address."""

    def __init__(self, temp_dir: Path, env: dict, head_cpus: int, worker_types: dict):
        # A head can still fail to start when another process takes one of its ports between
        # free_ports() and Ray's bind; it is started once more on fresh ports, with its log.
        for attempt in range(2):
            try:
                self._start(temp_dir, env, head_cpus, worker_types)
                return
            except RuntimeError:
                if attempt == 1:
                    raise

    def _start(self, temp_dir: Path, env: dict, head_cpus: int, worker_types: dict) -> None:
        port, *others = free_ports(8)
        self.address = f"127.0.0.1:{port}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        config = temp_dir / "autoscaling.json"
        config.write_text(
            json.dumps(fake_autoscaling_config({"CPU": head_cpus}, worker_types, self.address))
        )
        lo, hi = worker_port_range()
        ports = [
            "ray-client-server-port",
            "node-manager-port",
            "object-manager-port",
            "metrics-export-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
        ]
        cmd = [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--autoscaling-config={config}",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={head_cpus}",
            "--num-gpus=0",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            "--object-store-memory=200000000",
            f"--min-worker-port={lo}",
            f"--max-worker-port={hi}",
            *(f"--{name}={p}" for name, p in zip(ports, others, strict=True)),
        ]
        env = {
            **env,
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_FAKE_CLUSTER": "1",
            "PYTHONUNBUFFERED": "1",  # the readiness line must reach the log while it blocks
        }
        super().__init__(cmd, env, temp_dir, "head")
        self._wait_up(timeout_s=60)

    def _wait_up(self, timeout_s: float) -> None:
        """Until the GCS answers `ray status` (the monitor is then running too)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            # `ray start` prints this once its raylet registered; the GCS alone answers
            # `ray status` before that, and a head whose raylet then fails exits.
            if "Ray runtime started." not in self.log.read_text(errors="replace"):
                time.sleep(1)
                continue
            probe = subprocess.run(
                [str(BIN / "ray"), "status", f"--address={self.address}"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if probe.returncode == 0:
                return
            time.sleep(1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"the autoscaling head did not come up in {timeout_s:.0f} s:\n{tail}")


def _serve(spec: dict) -> None:
    """Child process of `LocalCluster`: build the cluster, print its address and nodes, answer
    shut the nodes down when stdin closes."""
    from ray.cluster_utils import Cluster

    temp_dir = spec["temp_dir"]
    lo, hi = worker_port_range()
    common = {"temp_dir": temp_dir, "min_worker_port": lo, "max_worker_port": hi}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **common,
            "num_cpus": 2,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": 200 * 1024**2,
        },
    )
    nodes = {cluster.head_node.node_id: "head"}
    for _ in range(spec["workers"]):
        node = cluster.add_node(
            **common, num_cpus=spec["worker_cpus"], num_gpus=1, object_store_memory=100 * 1024**2
        )
        nodes[node.node_id] = "worker"
    cluster.wait_for_nodes(timeout=30)
    print(f"NODES={json.dumps(nodes)}", flush=True)
    print(f"CLUSTER_ADDRESS={cluster.address}", flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.shutdown()


def _print_state(address: str) -> None:
    """Child of `cluster_state`: connect as a driver, print nodes and actors as one line."""
    import ray

    ray.init(address=address, log_to_driver=False)
    nodes = [
        {
            "id": n["NodeID"],
            "alive": n["Alive"],
            "head": "node:__internal_head__" in n.get("Resources", {}),  # alive nodes only
        }
        for n in ray.nodes()
    ]
    actors = [
        {"class": a.get("ActorClassName", ""), "node": a.get("Address", {}).get("NodeID")}
        for a in ray._private.state.actors().values()
    ]
    print("STATE=" + json.dumps({"nodes": nodes, "actors": actors}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "--state":
        _print_state(sys.argv[2])
    else:
        _serve(json.loads(sys.argv[1]))
