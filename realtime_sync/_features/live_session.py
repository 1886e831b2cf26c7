"""What a live session object (a ``Transcriber`` or a ``Translator``) does the same way around
its :class:`~realtime_sync.RealtimeClient`: raw-event handlers registered before or after
``start()``, connecting and waiting until the dispatcher has switched the owner to the session,
the session's expiry, the bounded ring of audio kept for replays, and stopping the audio
streams it owns.

The owner keeps ``_client``, ``_marshal``, ``_user_handlers``, ``_changed`` (a Condition on
``_lock``), ``_generation`` (the session number it works in), ``_rollover_margin``,
``_expires_at`` and ``_rollover_due``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Tuple

from .._core.wait import Deadline, wait_until
from ..events import Event

if TYPE_CHECKING:
    from ..client import RealtimeClient

__all__ = ["add_handler", "check_options", "open_session", "note_expiry", "maybe_rollover",
           "stop_streams", "trim_ring"]

Handler = Callable[[Event], Any]


def check_options(callbacks: Mapping[str, Any], marshal: Any, rollover_margin: Any,
                  max_buffer_s: Any) -> None:
    """The owner's constructor checks: each of ``callbacks`` (by parameter name) and
    ``marshal`` is None or callable (else TypeError); ``rollover_margin`` and
    ``max_buffer_s`` are numbers of seconds >= 0 (else ValueError)."""
    for name, cb in callbacks.items():
        if cb is not None and not callable(cb):
            raise TypeError(f"{name} must be callable")
    if marshal is not None and not callable(marshal):
        raise TypeError("marshal must be callable")
    for name, value in (("rollover_margin", rollover_margin), ("max_buffer_s", max_buffer_s)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")


def add_handler(owner: Any, type_: str, handler: Handler) -> Handler:
    """The owner's ``on()``: keep ``handler`` (through the owner's ``marshal``) for every
    client it starts, and register it on the current one. Any thread."""
    if not callable(handler):
        raise TypeError("handler must be callable")
    wrapped = handler
    if owner._marshal is not None:
        marshal = owner._marshal

        def wrapped(event: Event) -> None:
            marshal(lambda: handler(event))

    owner._user_handlers.append((type_, wrapped))
    if owner._client is not None:
        owner._client.on(type_, wrapped)
    return handler


def open_session(owner: Any, client: RealtimeClient, handlers: Iterable[Tuple[str, Handler]],
                 timeout: Optional[float], then: Optional[Callable[[], None]] = None) -> None:
    """Register the user's handlers, then the owner's, connect, and wait (up to ``timeout``,
    at least 1 s; 10 s without one) until the dispatcher has switched the owner to the
    session, so that the first ``feed()`` sends at once. ``then()`` runs last.

    On any failure (``then()`` included) the client is closed and the owner is left
    unstarted (``_client`` None); the exception propagates.
    """
    for type_, handler in owner._user_handlers:
        client.on(type_, handler)
    for type_, handler in handlers:
        client.on(type_, handler)
    owner._client = client
    try:
        client.connect(timeout=timeout)
        # the dispatcher switches the owner to the session (client.connected) right after
        # session.created: wait for it
        deadline = Deadline(10.0 if timeout is None else max(timeout, 1.0))
        with owner._changed:
            wait_until(owner._changed,
                       lambda: (owner._generation == client.host.session_number
                                or not client.connected),
                       deadline, longest=0.05)
        if then is not None:
            then()
    except BaseException:
        owner._client = None
        client.close()
        raise


def note_expiry(owner: Any, event: Event) -> None:
    """``session.created`` (dispatcher thread): when the session expires, and when the owner
    rolls over to a new one (``_rollover_margin`` seconds before)."""
    session = event.get("session") or {}
    expires = session.get("expires_at") if isinstance(session, Mapping) else None
    with owner._lock:
        if isinstance(expires, (int, float)) and expires > 0:
            owner._expires_at = float(expires)
            owner._rollover_due = float(expires) - owner._rollover_margin
        else:
            owner._expires_at = owner._rollover_due = None


def maybe_rollover(owner: Any, client: RealtimeClient, quiet: Callable[[], bool],
                   log: logging.Logger, message: str) -> None:
    """Once ``_rollover_due`` has passed, move ``client`` to a new session when the owner is
    ``quiet()`` (called with the lock held) or its session expires within 5 s; ``message``
    is logged (info) first. Any thread but the dispatcher."""
    due = owner._rollover_due
    if due is None or time.time() < due:
        return
    with owner._lock:
        quiet_now = quiet()
        hard = owner._expires_at is not None and time.time() >= owner._expires_at - 5
        if not (quiet_now or hard):
            return
        owner._rollover_due = None
    log.info(message)
    client.host.restart()


def trim_ring(owner: Any, needed: int, whole_samples: bool) -> None:
    """Forget the owner's audio before ``needed`` (absolute position of the oldest byte a
    replay needs) and bound the rest to ``_max_buffer`` bytes; beyond it the oldest audio
    leaves the ring (a whole number of PCM16 samples with ``whole_samples``, after the
    ``_sent`` position moves past it) and ``_drops`` counts what is really lost. Lock held.

    The owner keeps ``_ring`` (bytes from ``_ring_start`` on), ``_total``, ``_sent``,
    ``_max_buffer`` and ``_drops`` (a :class:`realtime_sync._features.drops.DropLedger`).
    """
    keep_from = max(needed, owner._ring_start)  # what is gone is gone
    overflow = (owner._total - keep_from) - owner._max_buffer
    end = keep_from
    if overflow > 0:
        end = keep_from + overflow + (overflow % 2 if whole_samples else 0)
    owner._drops.pushed_out(keep_from, end, owner._sent, needed)
    if end > keep_from:
        owner._sent = max(owner._sent, end)
        keep_from = end
    if keep_from > owner._ring_start:
        del owner._ring[:keep_from - owner._ring_start]
        owner._ring_start = keep_from


def stop_streams(streams: Iterable[Any], timeout: float, log: logging.Logger) -> None:
    """Stop every audio stream in ``streams`` (a copy is walked); a failure is logged on
    ``log``, never raised."""
    for s in list(streams):
        try:
            s.stop(timeout)
        except Exception:  # noqa: BLE001
            log.exception("stopping the audio stream failed")
