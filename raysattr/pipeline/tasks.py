"""Run the statistics' per-file-group partials as Ray tasks (the Ray executor of
`raysattr.stats.passes`): at most `max_in_flight` groups at a time, merged as they finish, so the
driver holds one merged partial plus the ones in flight."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import ray


def _call(func: Callable, item):
    return func(item)


def ray_map(func: Callable, items: list, max_in_flight: int | None = None) -> Iterator:
    """`func(item)` for every item on Ray workers, yielded in completion order."""
    if not ray.is_initialized():
        raise RuntimeError("ray_map needs a running Ray (raysattr.pipeline.plan.init_ray)")
    limit = max_in_flight or max(2, int(ray.cluster_resources().get("CPU", 2)))
    remote = ray.remote(num_cpus=1, max_retries=2)(_call)
    func_ref = ray.put(func)
    pending = []
    for item in items:
        if len(pending) >= limit:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
        pending.append(remote.remote(func_ref, item))
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
