"""One deadline-plus-condition wait, used by every blocking call of the library.

Waits are sliced (0.25 s) so that Ctrl-C reaches the main thread promptly on every platform,
and so that a caller's ``check`` (strict-mode errors, a closed client) runs while waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TypeVar

__all__ = ["Deadline", "wait_until"]

SLICE = 0.25
"""Longest single ``Condition.wait``: how fast a waiter notices Ctrl-C or its ``check``."""

T = TypeVar("T")


class Deadline:
    """A point in monotonic time, or none (``timeout=None``: wait for ever)."""

    __slots__ = ("at", "timeout")

    def __init__(self, timeout: Optional[float]) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + max(0.0, timeout)

    def remaining(self) -> Optional[float]:
        """Seconds left (never negative), or None for no deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def slice(self, longest: float = SLICE) -> float:
        """How long one wait may last: at most ``longest``, never past the deadline."""
        left = self.remaining()
        return longest if left is None else min(longest, left)


def wait_until(
    cond: threading.Condition,
    predicate: Callable[[], Optional[T]],
    deadline: Deadline,
    check: Optional[Callable[[], None]] = None,
    longest: float = SLICE,
) -> Optional[T]:
    """Wait on ``cond`` (held by the caller) until ``predicate()`` is truthy or time runs out.

    Returns the predicate's last value (falsy on timeout). ``check()`` runs before every slice
    and may raise to end the wait (a closed client, a strict-mode handler error).
    ``longest`` caps one slice (a shorter one polls a state that is not notified).
    """
    while True:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        if deadline.expired():
            return value
        cond.wait(deadline.slice(longest))
