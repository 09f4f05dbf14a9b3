"""A method whose construction fails inside the attribution actor with a raysattr error, after
pre-flight passed (pre-flight checks that it is registered, not that it can be built): the CLI
must still print the cause as one line, not Ray's wrapped traceback."""

from __future__ import annotations

from raysattr.attribution.base import AttributionMethod
from raysattr.attribution.registry import register
from raysattr.errors import ModelError


@register("needs_a_gpu")
class NeedsAGpu(AttributionMethod):
    @classmethod
    def from_config(cls, forward, attribution):
        raise ModelError(
            "this method runs only on CUDA replicas",
            "attribution.method='needs_a_gpu'",
            "set compute.gpus_per_actor=1 on a cluster with GPUs",
        )
