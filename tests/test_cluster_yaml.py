"""cluster.yaml and the KubeRay example against what Ray ships and what the design requires."""

import json
from pathlib import Path

import jsonschema
import ray
import yaml

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
