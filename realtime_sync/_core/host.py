"""The contract between a :class:`~realtime_sync.RealtimeClient` and its features.

Audio streams, the transcriber, the conversation mirror, ``ask()`` and the tool dispatcher
talk to a client through ``client.host`` (a :class:`ClientHost`) and its public API, never
through its private attributes. mypy checks the client's host against this protocol, and
test doubles implement it too (only the members a feature uses).

Every member may be called from any thread unless its docstring says otherwise.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Optional, Protocol, TypeVar, runtime_checkable

__all__ = ["ClientHost", "AudioHost", "Marshal", "ThreadMarshal", "ClosableMarshal",
           "marshal_thread_ident"]

T = TypeVar("T")


class Marshal(Protocol):
    """Runs zero-argument functions on another thread (a GUI's), in the order given.

    ``RealtimeClient(marshal=...)`` and the features hand it each batch of handlers. Any
    callable fits, e.g. ``lambda fn: root.after(0, fn)``. Returning ``False`` means "refused,
    it will never run" (the batch is dropped and counted); any other result means queued.
    """

    def __call__(self, fn: Callable[[], None]) -> Any:
        """Queue ``fn`` to run on the marshal's thread (called from the dispatcher thread)."""


@runtime_checkable
class ThreadMarshal(Marshal, Protocol):
    """A :class:`Marshal` that says which thread it runs calls on (the marshals of
    :mod:`realtime_sync.gui`): blocking calls on that thread are refused or warned about."""

    @property
    def ui_thread(self) -> Any:
        """The :class:`threading.Thread` (or thread ident) the calls run on."""


@runtime_checkable
class ClosableMarshal(Marshal, Protocol):
    """A :class:`Marshal` that says when it runs nothing more (its window is gone): the
    dispatcher then stops handing it batches (dropped and counted)."""

    @property
    def closed(self) -> bool:
        """True once the marshal runs nothing more."""


def marshal_thread_ident(marshal: Optional[Marshal]) -> Optional[int]:
    """The ident of the thread ``marshal`` runs calls on, when it says (else None)."""
    if not isinstance(marshal, ThreadMarshal):
        return None
    ui = marshal.ui_thread
    if isinstance(ui, threading.Thread):
        return ui.ident
    return ui if isinstance(ui, int) else None


class AudioHost(Protocol):
    """What an audio stream or speaker needs of whatever it is attached to (a client, or a
    transcriber's feed sink)."""

    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue a library event (``client.*``) for handlers and waiters; never blocks."""

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a :meth:`RealtimeClient.stats` counter (under the counters' lock)."""

    def adopt(self, resource: Any) -> None:
        """Have ``close()`` call ``resource.stop(timeout)`` first."""

    def disown(self, resource: Any) -> None:
        """Undo :meth:`adopt` (the resource stopped on its own)."""


class ClientHost(AudioHost, Protocol):
    """What the transcriber, the conversation mirror, ``ask()`` and tools need of a client."""

    @property
    def session_number(self) -> int:
        """How many sessions the client has had; changes when a new session starts (network
        thread's view: it may run ahead of the handlers, which learn the number from
        ``client.connected`` / ``client.reconnected`` events)."""

    @property
    def session_ended(self) -> bool:
        """True once the network thread has read ``session.closed`` (a translation session
        ended on request); its handlers may not have run yet."""

    @property
    def marshal(self) -> Optional[Marshal]:
        """The client's ``marshal`` (handlers run through it), or ``None``."""

    def protocol_error(self, problem: str, event: Mapping[str, Any]) -> None:
        """Report a server event a feature could not use (``client.protocol_error``, counted);
        reported once per event however many features skip it."""

    def send_in_session(self, event: Mapping[str, Any], session_number: int) -> str:
        """Send ``event`` only into session ``session_number``, and only while it is
        connected; never queued for a later session.

        Raises:
            ConnectionLostError: that session has ended (nothing was sent).
        """

    def send_prebuilt(self, type_: str, event_id: str, frame: bytes) -> None:
        """Send a JSON frame built by the caller (audio appends, built without a dict);
        never queued while reconnecting.

        Raises:
            NotConnectedError: not connected now.
        """

    def restart(self) -> bool:
        """Open a new session now (a planned rollover); False when not connected."""

    def check_blocking_call(self, what: str) -> None:
        """Raise :class:`DeadlockError` when called on the thread that runs handlers."""

    def remember_session(self, update: Mapping[str, Any]) -> None:
        """Merge ``update`` into the config sent at the next ``session.created``."""

    def not_connected_message(self) -> str:
        """Why the client cannot send now, in words."""

    def feature(self, key: str, factory: Callable[[], T]) -> T:
        """The client's one instance of a feature's state (created by ``factory``, the
        feature's owner, on first use; e.g. the tool registry, the ``ask()`` lock)."""

    def peek_feature(self, key: str) -> Any:
        """The feature state of ``key`` if it was created, else ``None``."""
