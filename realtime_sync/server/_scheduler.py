"""The offline engine's decode scheduler: which decodes run now, finals first.

One :class:`DecodeScheduler` serves every session of a recogniser. It holds two kinds of
work:

* **finals** (the text of a committed turn): they wait only for other finals, when
  ``final_slots`` of them already run, never for partial work;
* **early finals** (a turn's final decode started at a pause, before its commit): slots of
  their own beside the finals, taken only when no final waits;
* **partials** (drafts of a turn still being spoken): they never wait. A partial decode
  starts only when a final is neither running nor waiting and fewer than ``cpu_slots``
  decodes run; otherwise it is *skipped* (the caller keeps its previous draft), so partial
  work never piles up behind finals or behind itself.

The scheduler also keeps a running sum of the decode time of each kind (``stats``), which
the server logs as its lag and load.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Dict, Iterator, Optional

__all__ = ["DecodeScheduler"]

log = logging.getLogger(__name__)


class DecodeScheduler:
    """Admits final and partial decodes of one recogniser (thread-safe; any thread).

    Args:
        final_slots: finals that may decode at once (the final model's replicas).
        early_slots: early finals that may decode at once, beside the finals.
        cpu_slots: decodes of any kind that may run at once before partial decodes are
            skipped (about the number of cores).
    """

    def __init__(self, final_slots: int = 1, cpu_slots: int = 1, early_slots: int = 1) -> None:
        if final_slots < 1 or cpu_slots < 1 or early_slots < 0:
            raise ValueError("final_slots and cpu_slots must be at least 1, early_slots >= 0")
        self.final_slots = int(final_slots)
        self.cpu_slots = int(cpu_slots)
        self.early_slots = int(early_slots)
        self._early = 0  # early finals running
        self._cond = threading.Condition()
        self._finals = 0  # running
        self._waiting = 0  # finals waiting for a slot
        self._partials = 0  # running
        self._reported = time.monotonic()
        self.stats: Dict[str, float] = {"finals": 0, "final_s": 0.0, "final_wait_s": 0.0,
                                        "early_finals": 0, "partials": 0, "partial_s": 0.0,
                                        "skipped": 0}

    def __repr__(self) -> str:
        return (f"DecodeScheduler(final_slots={self.final_slots}, cpu_slots={self.cpu_slots}, "
                f"running={self._finals}+{self._partials})")

    def note(self, name: str) -> None:
        """Count an event in :attr:`stats` (any thread)."""
        with self._cond:
            self.stats[name] = self.stats.get(name, 0) + 1

    @property
    def busy(self) -> bool:
        """True while any decode runs or a final waits."""
        with self._cond:
            return bool(self._finals or self._waiting or self._partials or self._early)

    @contextlib.contextmanager
    def final(self) -> Iterator[None]:
        """Hold a final slot for the body (blocks only while ``final_slots`` finals run)."""
        asked = time.monotonic()
        with self._cond:
            self._waiting += 1
            try:
                while self._finals >= self.final_slots:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._finals += 1
        started = time.monotonic()
        try:
            yield
        finally:
            ended = time.monotonic()
            with self._cond:
                self._finals -= 1
                self.stats["finals"] += 1
                self.stats["final_s"] += ended - started
                self.stats["final_wait_s"] += started - asked
                self._cond.notify_all()
            if started - asked > 1.0:
                log.warning("the engine lags: a final waited %.2f s for a decoder (%d "
                            "decode(s) at once; more with --jobs/workers)", started - asked,
                            self.final_slots)
            self._maybe_report(ended)

    def _maybe_report(self, now: float) -> None:
        """Log the decode load at most once a minute (INFO): finals, drafts run and skipped."""
        if now - self._reported < 60.0:
            return
        self._reported = now
        s = self.stats
        log.info("engine: %d finals (%.1f s decoding, %.1f s waiting), %d early, %d drafts "
                 "(%.1f s), %d drafts skipped", s["finals"], s["final_s"], s["final_wait_s"],
                 s["early_finals"], s["partials"], s["partial_s"], s["skipped"])

    def try_early(self) -> Optional[contextlib.AbstractContextManager]:
        """A slot for an early final, or None (never blocks).

        An early final is a turn's final decode started at a pause, before the commit. It
        has slots of its own (``early_slots``; the engine keeps a model replica for them), so
        it never makes a committed turn wait; it is skipped while a final waits. Drafts go on
        beside it (a short draft decode barely slows it, and speech may resume).
        """
        with self._cond:
            if self._waiting or self._early >= self.early_slots:
                return None
            self._early += 1
        return self._early_final()

    @contextlib.contextmanager
    def _early_final(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self._early -= 1
                self.stats["early_finals"] += 1
                self.stats["final_s"] += time.monotonic() - started
                self._cond.notify_all()

    def try_partial(self) -> Optional[contextlib.AbstractContextManager]:
        """A context holding a partial slot, or None when the partial must be skipped.

        Skipped while a final runs or waits, or when ``cpu_slots`` decodes already run.
        """
        with self._cond:
            if (self._finals or self._waiting
                    or self._finals + self._partials >= self.cpu_slots):
                self.stats["skipped"] += 1
                return None
            self._partials += 1
        return self._partial_slot()

    @contextlib.contextmanager
    def _partial_slot(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            with self._cond:
                self._partials -= 1
                self.stats["partials"] += 1
                self.stats["partial_s"] += time.monotonic() - started
                self._cond.notify_all()
