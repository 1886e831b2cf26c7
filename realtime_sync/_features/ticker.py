"""A live object's clock: :class:`Ticker`, a daemon thread that calls one function every
``period`` seconds until stopped (the translator's keep-alive silence and rollover)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

__all__ = ["Ticker"]


class Ticker:
    """Calls ``tick()`` every ``period`` seconds (or when ``schedule`` says) on the thread
    ``name`` until :meth:`stop` or until ``tick()`` returns False; an exception is logged
    (``failure``) and the clock goes on.

    Args:
        name: the thread's name (``realtime-sync-...``).
        period: seconds between ticks.
        tick: the work of one tick.
        log: where a failed tick is logged.
        failure: the message of a failed tick.
        schedule: ``schedule(now)`` -> seconds to sleep before the next tick (``now`` from
            ``time.monotonic()``), e.g. to tick on a fixed grid; default: ``period``.
    """

    def __init__(self, name: str, period: float, tick: Callable[[], bool],
                 log: logging.Logger, failure: str,
                 schedule: Optional[Callable[[float], float]] = None) -> None:
        self.name = name
        self.period = period
        self._tick = tick
        self._log = log
        self._failure = failure
        self._schedule = schedule
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the thread (once). Any thread."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop ticking and join the thread (not from the thread itself); True when it has
        ended (or never started). Idempotent; any thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _next_wait(self) -> float:
        return self.period if self._schedule is None else self._schedule(time.monotonic())

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait()):
            try:
                if not self._tick():
                    return
            except Exception:  # noqa: BLE001 - the clock must keep going
                self._log.exception(self._failure)
