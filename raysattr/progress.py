"""Progress of the long steps (attribution, statistics, faithfulness): done / total, rate and ETA.

On a terminal a live bar (tqdm, on stderr); otherwise (log files, `ray job submit`, CI) one line
every `every_s` seconds (`RAYSATTR_PROGRESS_EVERY_S`, default 30) and a last line when the step
ends, so that a long run never stays silent for minutes and a log does not fill with bar redraws.
No Ray here: the pipeline feeds it from the results it streams back.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO

EVERY_S_ENV = "RAYSATTR_PROGRESS_EVERY_S"
DEFAULT_EVERY_S = 30.0


def every_s_default() -> float:
    """Seconds between progress lines off a terminal (`RAYSATTR_PROGRESS_EVERY_S`)."""
    try:
        return max(float(os.environ.get(EVERY_S_ENV, DEFAULT_EVERY_S)), 0.0)
    except ValueError:
        return DEFAULT_EVERY_S


def duration(seconds: float) -> str:
    """`75.2` -> `1:15`; `3725` -> `1:02:05`."""
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts units of work done and shows it.

    Args:
        what: the step, e.g. `attribute` (lines read `raysattr: attribute: 1,200/5,000 rows`).
        total: units expected; None when unknown (no percentage, no ETA).
        unit: what is counted (`rows`, `part files`).
        stream: where to write (default stderr).
        live: a tqdm bar (default: when `stream` is a terminal) instead of periodic lines.
        every_s: seconds between lines when not live (default `every_s_default()`).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "rows",
        stream: IO[str] | None = None,
        live: bool | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what, self.total, self.unit, self.clock = what, total, unit, clock
        self.stream = stream if stream is not None else sys.stderr
        self.live = _is_terminal(self.stream) if live is None else live
        self.every_s = every_s_default() if every_s is None else every_s
        self.done, self.started = 0, clock()
        self.first_at: float | None = None  # the rate counts from the first unit done
        self.last_line, self.lines = self.started, 0
        self.bar = self._bar() if self.live else None

    def _bar(self):
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total,
            desc=f"raysattr: {self.what}",
            unit=f" {self.unit}",
            file=self.stream,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    def update(self, n: int = 1) -> None:
        """`n` more units done; a line when `every_s` passed since the last one."""
        if n <= 0:
            return
        now = self.clock()
        if self.first_at is None:
            self.first_at, self.base = now, self.done + n  # counted from here
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif now - self.last_line >= self.every_s:
            self._write(self.line(now))
            self.last_line = now

    def tick(self) -> None:
        """Nothing more done, but show that the step is alive: the bar's clock moves, or a line
        when `every_s` passed (a step whose work happens elsewhere, e.g. in a Ray task)."""
        now = self.clock()
        if self.bar is not None:
            self.bar.refresh()
        elif now - self.last_line >= self.every_s:
            self._write(self.line(now))
            self.last_line = now

    def rate(self, now: float | None = None) -> float:
        """Units per second since the first unit was done (start-up costs excluded)."""
        now = self.clock() if now is None else now
        if self.first_at is None or now <= self.first_at:
            return 0.0
        return (self.done - self.base) / (now - self.first_at)

    def line(self, now: float | None = None) -> str:
        """`raysattr: attribute: 1,200/5,000 rows (24 %), 21.0 rows/s, ETA 3:01`."""
        now = self.clock() if now is None else now
        rate = self.rate(now)
        text = f"raysattr: {self.what}: {self.done:,}"
        if not self.total and not self.done:  # work happening elsewhere, nothing counted yet
            return f"raysattr: {self.what}: running, {duration(now - self.started)} elapsed"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f} %)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.1f} {self.unit}/s" if rate else ""
        if self.total and rate and self.done < self.total:
            text += f", ETA {duration((self.total - self.done) / rate)}"
        return text + f", {duration(now - self.started)} elapsed"

    def close(self) -> None:
        """End the bar, or write the last line (off a terminal)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.lines or self.done:
            self._write(self.line())

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self.lines += 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


MapFn = Callable[[Callable, list], Iterable]


def tracked_map(map_fn: MapFn, what: str, unit: str = "part files", **options) -> MapFn:
    """`map_fn` (a `stats.passes` executor over groups of part files) that shows progress: each
    call is one pass, counted in the items of its groups (`len(group)`)."""
    calls = 0

    def tracked(func: Callable, items: list) -> Iterator:
        nonlocal calls
        calls += 1
        total = sum(len(item) for item in items)
        with Progress(f"{what} pass {calls}", total, unit, **options) as progress:
            # Results come in completion order: each carries the group it finished.
            for group, value in map_fn(_paired(func), items):
                progress.update(len(group))
                yield value

    return tracked


def _paired(func: Callable) -> Callable:
    """`func` returning `(item, func(item))`, so that results in completion order say which
    item they finished."""

    def paired(item):
        return item, func(item)

    return paired
