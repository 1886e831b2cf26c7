"""Reconnect policy: exponential backoff with jitter."""

from __future__ import annotations

from typing import Optional

__all__ = ["Backoff"]


class Backoff:
    """How long to wait before each reconnect attempt.

    The delay of attempt ``n`` (1-based) is ``min(maximum, initial * multiplier**(n-1))``,
    spread by ``±jitter`` (a fraction). ``max_attempts=None`` retries for ever. The count
    resets only after a connection proved healthy: its session stayed up for
    ``healthy_after`` seconds, or completed an exchange (a ``response.done`` or a finished
    transcription). A server that accepts and then drops every connection at once therefore
    settles at ``maximum`` between attempts instead of storming.

    Args:
        initial: first delay in seconds.
        maximum: the largest delay in seconds.
        multiplier: growth per attempt.
        jitter: random spread as a fraction of the delay (0.2 = ±20 %).
        max_attempts: give up after this many failed attempts in a row (None: never).
        healthy_after: seconds a session must stay up before the count resets.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        multiplier: float = 2.0,
        jitter: float = 0.2,
        max_attempts: Optional[int] = None,
        healthy_after: float = 30.0,
    ) -> None:
        if initial < 0 or maximum < 0:
            raise ValueError("Backoff delays must be >= 0")
        if multiplier < 1:
            raise ValueError("Backoff multiplier must be >= 1")
        if not 0 <= jitter <= 1:
            raise ValueError("Backoff jitter must be between 0 and 1")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("Backoff max_attempts must be >= 1 or None")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.multiplier = float(multiplier)
        self.jitter = float(jitter)
        self.max_attempts = max_attempts
        if healthy_after < 0:
            raise ValueError("Backoff healthy_after must be >= 0")
        self.healthy_after = float(healthy_after)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based)."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        if self.jitter:
            import random  # on first use: keeps ``import realtime_sync`` light

            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def gives_up(self, attempt: int) -> bool:
        """True when ``attempt`` is past ``max_attempts``."""
        return self.max_attempts is not None and attempt > self.max_attempts

    def __repr__(self) -> str:
        return (
            f"Backoff(initial={self.initial}, maximum={self.maximum}, "
            f"multiplier={self.multiplier}, jitter={self.jitter}, "
            f"max_attempts={self.max_attempts}, healthy_after={self.healthy_after})"
        )
