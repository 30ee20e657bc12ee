"""Progress on long work: a live bar on a terminal, a few plain lines anywhere else.

A tqdm bar redraws itself with ``\\r``; written to a log file or a pipe (``make demo > log``,
CI, docker logs) every redraw becomes part of one endless line. Off a terminal the bars here
print a handful of complete lines instead (start, each quarter, done), each with the count,
the percentage and the elapsed time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, Generic, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: The fractions of the total at which a plain bar prints a line (besides start and done).
PLAIN_MARKS = (0.25, 0.5, 0.75)


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default stderr, where bars go) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PlainProgress(Generic[T]):
    """The part of tqdm's interface the client uses, printing a few whole lines.

    Args:
        iterable: what to iterate over (or None, with ``update``).
        total: the count that means done.
        desc: the label of each line.
        unit: what is counted.
        initial: the count already done (a resumed loop).
        stream: where lines go (default stderr).
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        stream: IO[str] | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.postfix: dict[str, Any] = {}
        self._stream = stream
        self._t0 = time.perf_counter()
        self._marks = [m for m in PLAIN_MARKS if total and initial < m * total]
        self._closed = False
        self._line(f"{self._count()} started" if initial == 0 else f"{self._count()} resumed")

    def _count(self) -> str:
        if self.total:
            return f"{self.n:,}/{self.total:,} {self.unit} ({100 * self.n / self.total:.0f}%)"
        return f"{self.n:,} {self.unit}"

    def _line(self, text: str) -> None:
        post = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        label = f"{self.desc}: " if self.desc else ""
        stream = self._stream if self._stream is not None else sys.stderr
        print(f"{label}{text}" + (f" [{post}]" if post else ""), file=stream, flush=True)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; prints a line when a quarter mark is passed."""
        self.n += n
        passed = [m for m in self._marks if self.total and self.n >= m * self.total]
        if passed:
            self._marks = [m for m in self._marks if m not in passed]
            if not self.total or self.n < self.total:
                self._line(f"{self._count()}, {time.perf_counter() - self._t0:.0f} s")

    def set_postfix(self, values: dict[str, Any] | None = None, **kw: Any) -> None:
        """Values shown at the end of the next line (as tqdm's postfix)."""
        self.postfix = {**(values or {}), **kw}

    def __iter__(self) -> Iterator[T]:
        assert self.iterable is not None, "PlainProgress without an iterable: use update()"
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def close(self) -> None:
        """Print the final line (once): done, or where it stopped."""
        if self._closed:
            return
        self._closed = True
        word = "done" if not self.total or self.n >= self.total else "stopped"
        self._line(f"{self._count()} {word} after {time.perf_counter() - self._t0:.1f} s")

    def __enter__(self) -> PlainProgress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Off(Generic[T]):
    """No progress at all (``--no-progress``), with the same interface."""

    def __init__(self, iterable: Iterable[T] | None = None) -> None:
        self.iterable = iterable
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, values: dict[str, Any] | None = None, **kw: Any) -> None:
        return None

    def __iter__(self) -> Iterator[T]:
        assert self.iterable is not None
        yield from self.iterable

    def close(self) -> None:
        return None

    def __enter__(self) -> _Off[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    enabled: bool = True,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    leave: bool = True,
) -> Any:
    """A progress bar over ``iterable`` (or one moved by ``update``): none when not
    ``enabled``, tqdm on a terminal, ``PlainProgress`` lines elsewhere.

    Returns:
        An object with tqdm's ``update``, ``set_postfix``, ``close``, iteration and ``with``.
    """
    if not enabled:
        return _Off(iterable)
    if on_terminal():
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            initial=initial,
            leave=leave,
            dynamic_ncols=True,
        )
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)


def note(text: str, *, enabled: bool = True) -> None:
    """One line of output beside the bars, on stdout (through tqdm.write on a terminal, so a
    live bar is not torn)."""
    if not enabled:
        return
    if on_terminal():
        tqdm.write(text)
    else:
        print(text, flush=True)
