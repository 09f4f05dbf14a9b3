"""`EngineSettings`, the engine's former flat copy of `AttributionConfig` + `TokenizeConfig` +
`model.dtype`, kept only while callers move to `AttributionEngine(loaded, attribution,
tokenize, dtype)` / `AttributionEngine.from_config(loaded, cfg)`. The last one is
`tests/test_model_check.py`; delete this module, and its imports in `engine.py` and
`__init__.py`, with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from raysattr.config import AttributionConfig, TokenizeConfig

_LONG_FIELDS = ("max_length", "long_policy", "window_stride")


@dataclass
class EngineSettings:
    """Deprecated: pass the config sections instead."""

    method: str = "lig"
    target: str = "predicted"
    output: str = "prob"
    baseline: str = "pad"
    n_steps: int = 50
    integration_method: str = "gausslegendre"
    token_budget: int | None = None
    max_batch_rows: int = 64
    delta_tolerance: float = 0.05
    adaptive_steps: bool = False
    max_steps: int = 400
    compare_method: str = "lig"
    dtype: str = "float32"
    max_length: int | None = None
    long_policy: str = "truncate"
    window_stride: int | None = None

    def sections(self) -> tuple[AttributionConfig, TokenizeConfig, str]:
        """`(attribution, tokenize, dtype)` for `AttributionEngine`."""
        flat = asdict(self)
        long = {k: flat.pop(k) for k in _LONG_FIELDS}
        dtype = flat.pop("dtype")
        return AttributionConfig(**flat), TokenizeConfig(**long), dtype
