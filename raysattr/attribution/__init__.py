"""Attribution methods and the batched engine that runs them over token-budget micro-batches."""

from raysattr.attribution.engine import AttributionEngine
from raysattr.attribution.registry import available_methods, get_method
from raysattr.attribution.results import RowResult

__all__ = ["AttributionEngine", "RowResult", "available_methods", "get_method"]
