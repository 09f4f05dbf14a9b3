"""The errors a user can act on, each printed by the CLI as one line:

    error: <what>, <where: file, row, key>, <what to do>

`exit_code` is what `raysattr` exits with: 1 for a run failure (bad input, model, output,
resources), 2 for a bad config or usage. Anything else that escapes a run is a bug or an
environment failure; the CLI prints it as one line too and `--debug` shows the traceback.

This module imports nothing from raysattr, so every layer can raise these.
"""

from __future__ import annotations

import re


class RaysattrError(Exception):
    """An error with a place and a remedy.

    Args:
        what: what is wrong, e.g. "no such file".
        where: where: a file, row, column or config key, e.g. "data.uri='x.parquet'".
        fix: what to do about it, e.g. "check the path".
    """

    exit_code = 1

    def __init__(self, what: str, where: str = "", fix: str = ""):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(", ".join(part for part in (what, where, fix) if part))


class ConfigError(RaysattrError, ValueError):
    """A configuration key is unknown, has the wrong type or an invalid value (exit code 2)."""

    exit_code = 2


class InputError(RaysattrError, ValueError):
    """An input file cannot be listed, read or parsed, or lacks a configured column."""


class MissingInputError(InputError, FileNotFoundError):
    """`data.uri` names nothing."""


class ModelError(RaysattrError, ValueError):
    """The model or its tokenizer cannot be loaded, is not allowed, or does not fit the config."""


class OutputError(RaysattrError):
    """The output folder cannot be written, or holds something a run cannot continue from."""


class LeaseHeldError(OutputError):
    """Another live run holds the output folder's lease."""


class ResourceError(RaysattrError):
    """The cluster cannot provide the CPUs/GPUs a run asks for."""


class RunFailedError(RaysattrError):
    """The run finished without a single ok row."""


# The last "module.Class: message" line of a traceback rendered as text.
_RAISED_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", re.MULTILINE)


def root_cause(exc: BaseException) -> BaseException:
    """The exception behind Ray's wrappers: `RayTaskError.cause` and `__cause__` chains are
    followed, so a `RaysattrError` raised in a task comes back as itself. An actor whose
    constructor raised is reported by Ray as `ActorDiedError` holding only the error's text: the
    raysattr error is rebuilt from its last line; another error is returned as a plain
    `RuntimeError` of that line."""
    chain = _chain(exc)
    for current in chain:
        if isinstance(current, RaysattrError):
            return current
    for current in chain:
        found = _RAISED_LINE.findall(str(current))
        if found and type(current).__module__.startswith("ray."):
            name, message = found[-1]
            cls = globals().get(name)
            if isinstance(cls, type) and issubclass(cls, RaysattrError):
                return cls(message.strip())
            return RuntimeError(f"{name}: {message.strip()}")
    return chain[-1]


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what caused it (`.cause` of Ray's task errors, else `__cause__`), in order."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        nxt = getattr(current, "cause", None)
        current = nxt if isinstance(nxt, BaseException) else current.__cause__
    return chain
