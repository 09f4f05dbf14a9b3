"""cluster.yaml and the KubeRay example against what Ray ships and what the design requires."""

import json
from pathlib import Path

import jsonschema
import ray
import yaml

from raysattr.config import load

REPO = Path(__file__).resolve().parents[1]


def test_cluster_yaml_validates_against_rays_own_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(yaml.safe_load((REPO / "cluster.yaml").read_text()), schema)


def test_cluster_has_cpu_only_head_and_autoscaling_gpu_workers():
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    nodes = cluster["available_node_types"]
    head = nodes[cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert any("--num-cpus=0" in c for c in cluster["head_start_ray_commands"])
    gpu = nodes["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["max_workers"] >= 1
    assert cluster["docker"]["image"].startswith("rayproject/ray:2.60")
    assert cluster["docker"]["image"].endswith("-gpu")
    assert any("raysattr" in c for c in cluster["setup_commands"])


def test_kuberay_example_runs_the_job_entrypoint():
    job = yaml.safe_load((REPO / "configs" / "kuberay" / "rayjob.yaml").read_text())
    assert job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("python jobs/attribute.py --config configs/")
    assert (REPO / job["spec"]["entrypoint"].split()[-1]).is_file()


def _kuberay_clusters() -> dict[str, dict]:
    """The `rayClusterSpec` of each KubeRay example (a RayJob, a RayCronJob's job template)."""
    out = {}
    for path in sorted((REPO / "configs" / "kuberay").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        spec = doc["spec"].get("jobTemplate", doc["spec"])
        out[path.name] = spec["rayClusterSpec"]
    return out


def test_cluster_yaml_and_kuberay_describe_the_same_cluster_as_tests_test_cluster():
    """A head that runs no task and one GPU group that scales from zero (what
    tests/test_cluster.py runs against), with the same maximum everywhere."""
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    gpu = cluster["available_node_types"]["gpu_worker"]
    clusters = _kuberay_clusters()
    assert set(clusters) == {"rayjob.yaml", "raycronjob.yaml"}
    for name, spec in clusters.items():
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", name
        assert spec["enableInTreeAutoscaling"] is True, name
        (group,) = spec["workerGroupSpecs"]
        assert group["minReplicas"] == 0 and group["replicas"] == 0, name
        assert group["maxReplicas"] == gpu["max_workers"], name
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1", name
        assert spec["rayVersion"] == ray.__version__, name


def test_shipped_gpu_configs_fit_the_gpu_group_and_write_to_s3():
    """`max_actors x gpus_per_actor` within the GPU group (8 nodes x 1 GPU), outputs on S3: a
    local output on a multi-node cluster is refused (pipeline.resources.check_output_shared)."""
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    gpus = cluster["available_node_types"]["gpu_worker"]["max_workers"] * 1
    checked = 0
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load(str(path), [])
        if not cfg.compute.gpus_per_actor:
            continue
        checked += 1
        assert cfg.compute.max_actors * cfg.compute.gpus_per_actor <= gpus, path.name
        assert str(cfg.output.uri).startswith("s3://"), path.name
    assert checked >= 4
