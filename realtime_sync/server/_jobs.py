"""A tiny per-session worker pool for the local server (transcriptions, responses).

Jobs start in FIFO order: the first phase of a job (a callable returning an optional second
phase) runs under a start lock, so whatever it claims (e.g. a scripted recogniser's item
number) follows submission order even when several workers run at once. Workers are daemon
threads named ``rs-server-<name>-<n>``, started on demand and ended when the queue is empty.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Callable, Deque, List, Optional

log = logging.getLogger(__name__)

__all__ = ["Job", "WorkerPool"]

Job = Callable[[], Optional[Callable[[], None]]]
_counter = itertools.count(1)


class WorkerPool:
    """Runs jobs on up to ``max_workers`` threads. Any thread may submit or close."""

    def __init__(self, name: str, max_workers: int = 1) -> None:
        self._name = name
        self._max = max(int(max_workers), 1)
        self._queue: Deque[Job] = collections.deque()
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._busy = 0
        self._closed = False

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (and not run) once the pool is closed."""
        with self._lock:
            if self._closed:
                return False
            self._queue.append(job)
            free = len(self._threads) - self._busy
            if len(self._queue) > free and len(self._threads) < self._max:
                thread = threading.Thread(target=self._work,
                                          name=f"rs-server-{self._name}-{next(_counter)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
        return True

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._start_lock:
                with self._lock:
                    if self._closed or not self._queue:
                        self._threads.remove(me)
                        return
                    job = self._queue.popleft()
                    self._busy += 1
                try:
                    rest = job()
                except Exception:
                    log.exception("server job failed")
                    rest = None
            try:
                if rest is not None:
                    rest()
            except Exception:
                log.exception("server job failed")
            finally:
                with self._lock:
                    self._busy -= 1

    @property
    def idle(self) -> bool:
        """True when nothing is queued or running."""
        with self._lock:
            return not self._queue and self._busy == 0

    def close(self, timeout: float = 5.0) -> bool:
        """Drop queued jobs and join the workers (bounded by ``timeout``); True if all ended."""
        with self._lock:
            self._closed = True
            self._queue.clear()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(max(deadline - time.monotonic(), 0.0))
        alive = [t.name for t in threads if t.is_alive() and t is not me]
        if alive:
            log.warning("server workers still running after %.1f s: %s", timeout, alive)
        return not alive
