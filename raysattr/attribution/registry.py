"""The method registry: config name -> method class. Methods register with `@register("name")`
in their own module; `raysattr.attribution.methods` imports every such module, and
`attribution.method_modules` names more (a lab's own methods, outside this package). What a
method declares (eager attention, steps, delta, extras) is documented on
`raysattr.attribution.base.AttributionMethod`."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from raysattr.errors import ConfigError

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


def load_method_modules(modules: Iterable[str]) -> None:
    """Import `attribution.method_modules` so that their `@register` calls run (in the driver
    and in every actor; importing twice is a no-op).

    Raises:
        ConfigError: a module cannot be imported (the message names it).
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"cannot import {name!r} ({exc})",
                "attribution.method_modules",
                "make the module importable on every node (PYTHONPATH, a package, or the job's "
                "working_dir)",
            ) from exc


def check_methods(attribution) -> None:
    """Check `attribution.method` and `attribution.compare_method` against the registry.

    Args:
        attribution: the config's `attribution` section.

    Raises:
        ConfigError: a name is not registered (the message lists the registered ones).
    """
    load_method_modules(attribution.method_modules)
    names = available_methods()
    for key in ("method", "compare_method"):
        value = getattr(attribution, key)
        if value not in names:
            raise ConfigError(
                f"attribution.{key}={value!r} is not one of {', '.join(names)}",
                fix="use a registered method, or add its module to attribution.method_modules",
            )


def check_scheme(method: str, scheme: str) -> None:
    """Raises ConfigError when method `method` does not work with `tokenize.scheme`."""
    schemes = getattr(get_method(method), "schemes", None)
    if schemes is not None and scheme not in schemes:
        raise ConfigError(
            f"attribution.method={method!r} works with tokenize.scheme {' or '.join(schemes)}",
            f"tokenize.scheme={scheme!r}",
            "use another method for this model",
        )


def available_methods() -> list[str]:
    """Registered method names, sorted."""
    _load_all()
    return sorted(_METHODS)


def get_method(name: str) -> Any:
    """The method class registered as `name`.

    Raises:
        ConfigError: unknown name (the message lists the available ones).
    """
    _load_all()
    if name not in _METHODS:
        raise ConfigError(
            f"unknown attribution method {name!r}; available: {', '.join(sorted(_METHODS))}"
        )
    return _METHODS[name]


def attn_implementation(name: str) -> str | None:
    """The attention implementation a model replica must be loaded with for method `name`
    ("eager" when the method reads attention weights, which SDPA kernels do not return)."""
    return "eager" if getattr(get_method(name), "needs_eager_attention", False) else None
