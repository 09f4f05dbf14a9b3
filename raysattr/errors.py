"""The errors a user can act on, each printed by the CLI as one line:

    error: <what>, <where: file, row, key>, <what to do>

`exit_code` is what `raysattr` exits with: 1 for a run failure (bad input, model, output,
resources), 2 for a bad config or usage. Anything else that escapes a run is a bug or an
environment failure; the CLI prints it as one line too and `--debug` shows the traceback.

This module imports nothing from raysattr, so every layer can raise these.
"""

from __future__ import annotations


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


def root_cause(exc: BaseException) -> BaseException:
    """The exception behind Ray's wrappers (`RayTaskError.cause`, `__cause__` chains): a
    `RaysattrError` raised inside an actor comes back as itself."""
    seen = set()
    current = exc
    while id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RaysattrError):
            return current
        nxt = getattr(current, "cause", None)
        if not isinstance(nxt, BaseException):
            nxt = current.__cause__
        if nxt is None:
            break
        current = nxt
    return current
