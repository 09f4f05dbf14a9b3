"""The method registry: config name -> method class. Methods register with `@register("name")`
in their own module; `raysattr.attribution.methods` imports every such module."""

from __future__ import annotations

from typing import Any

_METHODS: dict[str, type] = {}


def register(name: str):
    """Class decorator adding an attribution method under its config name."""

    def add(cls: type) -> type:
        if name in _METHODS:
            raise ValueError(f"attribution method {name!r} is registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def _load_all() -> None:
    import raysattr.attribution.methods  # noqa: F401  (registers every method)


def available_methods() -> list[str]:
    """Registered method names, sorted."""
    _load_all()
    return sorted(_METHODS)


def get_method(name: str) -> Any:
    """The method class registered as `name`.

    Raises:
        ValueError: unknown name (the message lists the available ones).
    """
    _load_all()
    if name not in _METHODS:
        raise ValueError(
            f"unknown attribution method {name!r}; available: {', '.join(sorted(_METHODS))}"
        )
    return _METHODS[name]
