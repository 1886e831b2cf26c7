"""Conversation state: a mirror of the server's items and responses, and text turns.

    conv = rs.Conversation(client)            # subscribes itself to the client's events
    client.connect()
    answer = client.ask("What is the capital of France?")   # -> Response
    print(answer.text, answer.usage)
    for item in conv.items: print(item.role, item.text or item.transcript)

:class:`Conversation` keeps the items of the default conversation in server order (from
``conversation.item.added/done/deleted/truncated`` and the ``response.*`` output events), with
each item's text, transcript (assistant ``response.output_audio_transcript.*`` and user
``conversation.item.input_audio_transcription.*``) and audio duration, and the recent
responses with their status and usage. Audio bytes are counted, not kept, unless
``keep_audio=True``; at most ``max_responses`` responses (and ``max_items`` items, if given)
are remembered, so long sessions stay bounded.

Threads: the mirror is updated by handlers on the client's dispatcher thread; its accessors
may be read from any thread (they return snapshots taken under a lock).
"""

from __future__ import annotations

import base64
import binascii
import collections
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Tuple

from ._core.host import ClientHost
from ._core.wait import Deadline, wait_until
from ._core.wire import BYTES_PER_MS, METADATA_KEY
from .errors import ConnectionLostError, NotConnectedError, ServerError, TimeoutError

__all__ = ["Conversation", "Item", "Response", "Session", "send_text", "ask"]

logger = logging.getLogger(__name__)


_TEXT_PARTS = {"text", "output_text", "input_text"}
_AUDIO_PARTS = {"audio", "output_audio", "input_audio"}
_PART_NAME = {"text": "output_text", "audio": "output_audio"}
MAX_PART_GAP = 16
"""How far past the parts received a ``content_index`` may point (a mirror that joined
mid-response); anything further is a protocol error, so no index can make it allocate."""

# the event types the mirror reads (what ask() listens to as well)
EVENT_TYPES: Tuple[str, ...] = (
    "session.created",
    "client.disconnected",
    "conversation.item.added",
    "conversation.item.created",
    "conversation.item.done",
    "conversation.item.retrieved",
    "conversation.item.deleted",
    "conversation.item.truncated",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "response.created",
    "response.done",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.mcp_call_arguments.delta",
    "response.mcp_call_arguments.done",
    "response.mcp_call.in_progress",
    "response.mcp_call.completed",
    "response.mcp_call.failed",
)


def _b64_length(data: str) -> int:
    """Decoded length of a base64 string, without decoding it."""
    n = len(data)
    if not n:
        return 0
    pad = 2 if data.endswith("==") else 1 if data.endswith("=") else 0
    return n * 3 // 4 - pad


class Item:
    """One conversation item (a message, a function call or its output, an MCP call...).

    Attributes:
        id: the server's item id.
        type: ``message``, ``function_call``, ``function_call_output``, ``mcp_call``...
        role: ``user``, ``assistant`` or ``system`` for messages, else ``None``.
        status: ``in_progress``, ``completed`` or ``incomplete``.
        content: the message's parts as dicts (``type``, ``text`` / ``transcript``), no audio.
        name, call_id, arguments, output: function-call fields (``None`` when not a call).
        response_id: the response that produced the item (assistant output), else ``None``.
        previous_item_id: the item before it, as the server reported.
        audio_ms: audio duration: assistant audio received (cut to the truncation point after
            a barge-in), or the user's speech as measured by server VAD; 0 when unknown.
        truncated: the assistant audio was truncated (``conversation.item.truncated``); the
            server then forgot the transcript, :attr:`transcript` keeps what was generated.
        transcription_error: the ``error`` of ``input_audio_transcription.failed``, if any.
        audio: the assistant's PCM16 audio, only with ``Conversation(keep_audio=True)``.
        raw: the latest item object the server sent (without audio data).
        session: which session of the client the item belongs to (1 for the first one the
            mirror saw, 2 after a reconnect...); each session is a separate conversation on
            the server.
        session_id: the server's id of that session (``sess_...``), when known.
    """

    def __init__(self, item_id: str, type: str = "message") -> None:  # noqa: A002
        self.id = item_id
        self.type = type
        self.role: Optional[str] = None
        self.status: Optional[str] = None
        self.content: List[Dict[str, Any]] = []
        self.name: Optional[str] = None
        self.call_id: Optional[str] = None
        self.arguments: Optional[str] = None
        self.output: Optional[str] = None
        self.response_id: Optional[str] = None
        self.previous_item_id: Optional[str] = None
        self.audio_ms: float = 0.0
        self.truncated = False
        self.transcription_error: Optional[Dict[str, Any]] = None
        self.audio: Optional[bytearray] = None
        self.raw: Dict[str, Any] = {}
        self.session = 0
        self.session_id: Optional[str] = None
        self._audio_bytes = 0

    @property
    def text(self) -> str:
        """The text of the item's text parts (``input_text`` / ``output_text``), joined."""
        return "".join(str(p.get("text") or "") for p in self.content
                       if p.get("type") in _TEXT_PARTS)

    @property
    def transcript(self) -> str:
        """The transcript of the item's audio parts (assistant or user), joined."""
        return "".join(str(p.get("transcript") or "") for p in self.content
                       if p.get("type") in _AUDIO_PARTS)

    def _part(self, index: int, kind: str) -> Dict[str, Any]:
        # callers check ``index`` with _content_index: at most MAX_PART_GAP new parts
        while len(self.content) <= index:
            self.content.append({"type": kind})
        part = self.content[index]
        if part.get("type") is None:
            part["type"] = kind
        return part

    def _merge(self, item: Mapping[str, Any]) -> None:
        """Take the fields of a server item object; keep text we built from deltas when the
        object's is empty (``item.done`` of a user audio item has no transcript yet)."""
        raw = dict(item)
        content = raw.get("content")
        if isinstance(content, list):
            clean = []
            for i, part in enumerate(content):
                if not isinstance(part, Mapping):
                    continue
                part = {k: v for k, v in part.items() if k != "audio"}
                if i < len(self.content):
                    mine = self.content[i]
                    for key in ("text", "transcript"):
                        if not part.get(key) and mine.get(key):
                            part[key] = mine[key]
                clean.append(part)
            raw["content"] = clean
            self.content = [dict(p) for p in clean]
        self.raw = raw
        self.type = str(raw.get("type") or self.type)
        for attr in ("role", "status", "name", "call_id", "output"):
            if raw.get(attr) is not None:
                setattr(self, attr, raw[attr])
        if raw.get("arguments"):
            self.arguments = str(raw["arguments"])
        elif raw.get("arguments") is not None and self.arguments is None:
            self.arguments = ""

    def __repr__(self) -> str:
        said = self.text or self.transcript or self.arguments or self.output or ""
        if len(said) > 40:
            said = said[:37] + "..."
        who = self.role or self.name or ""
        return f"<Item {self.id} {self.type} {who} {self.status} {said!r}>"


class Response:
    """One model response (``response.created`` ... ``response.done``).

    Attributes:
        id: the response id (``resp_...``).
        status: ``in_progress``, then ``completed``, ``cancelled``, ``failed`` or
            ``incomplete``.
        status_details: the server's ``status_details`` (``reason``, ``error``) or ``None``.
        usage: the token usage of ``response.done`` (``None`` before it).
        items: the output items, in output order.
        conversation_id: ``None`` for an out-of-band response (``conversation: "none"``).
        output_modalities, metadata: as the server reported them.
        previous: for :func:`ask` with tools: the earlier responses of the same turn (the ones
            that called tools), oldest first.
        interrupted: the connection dropped before ``response.done``; ``status`` is then
            ``incomplete`` with ``status_details.reason`` ``connection_lost``, and the
            response is :attr:`done` (it can never finish: the next session is a new
            conversation).
    """

    def __init__(self, response_id: str) -> None:
        self.id = response_id
        self.status = "in_progress"
        self.status_details: Optional[Dict[str, Any]] = None
        self.usage: Optional[Dict[str, Any]] = None
        self.items: List[Item] = []
        self.conversation_id: Optional[str] = None
        self.output_modalities: Optional[List[str]] = None
        self.metadata: Optional[Dict[str, Any]] = None
        self.previous: List[Response] = []
        self.raw: Dict[str, Any] = {}
        self.interrupted = False
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        """True once ``response.done`` arrived, or the connection was lost (``interrupted``)."""
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until ``response.done`` or the connection is lost (any thread but the
        dispatcher's); True when done."""
        return self._done.wait(timeout)

    def _interrupt(self) -> None:
        """The connection dropped before ``response.done``: the response can never finish."""
        if self._done.is_set():
            return
        self.interrupted = True
        self.status = "incomplete"
        self.status_details = {"type": "incomplete", "reason": "connection_lost"}
        for item in self.items:
            if item.status in (None, "in_progress"):
                item.status = "incomplete"
        self._done.set()

    @property
    def text(self) -> str:
        """The text output; for audio responses the transcript of the audio."""
        parts = [(i.text or i.transcript) for i in self.items if i.type == "message"]
        return "\n".join(p for p in parts if p)

    @property
    def audio_ms(self) -> float:
        """Milliseconds of assistant audio received for this response."""
        return sum(i.audio_ms for i in self.items)

    @property
    def function_calls(self) -> List[Item]:
        """The ``function_call`` items of the response."""
        return [i for i in self.items if i.type == "function_call"]

    @property
    def error(self) -> Optional[Dict[str, Any]]:
        """``status_details.error`` of a failed response, else ``None``."""
        details = self.status_details or {}
        err = details.get("error") if isinstance(details, Mapping) else None
        return dict(err) if isinstance(err, Mapping) else None

    def raise_for_status(self) -> Response:
        """Raise :class:`ServerError` when the response failed; else return self."""
        if self.status == "failed":
            err = self.error or {"type": "server_error", "message": "the response failed"}
            raise ServerError({"type": "error", "error": err, "response": self.raw})
        return self

    def __repr__(self) -> str:
        text = self.text
        if len(text) > 40:
            text = text[:37] + "..."
        return f"<Response {self.id} {self.status} items={len(self.items)} {text!r}>"


class Session:
    """The items of one server session, in that session's order.

    Attributes:
        number: 1 for the first session the mirror saw, then 2, 3... after reconnects.
        id: the server's session id (``sess_...``), when ``session.created`` was seen.
        items: the session's items in server order (a snapshot list).
    """

    def __init__(self, number: int, session_id: Optional[str], items: List[Item]) -> None:
        self.number = number
        self.id = session_id
        self.items = items

    def __repr__(self) -> str:
        return f"<Session {self.number} {self.id} items={len(self.items)}>"


class Conversation:
    """The client-side mirror of a conversation session's items and responses.

    Args:
        client: a :class:`~realtime_sync.RealtimeClient` to subscribe to (``None``: feed
            events yourself with :meth:`apply`).
        keep_audio: keep the assistant's audio bytes in :attr:`Item.audio` (default: only
            their duration).
        max_items: forget the oldest items beyond this many (``None``: keep all, like the
            server).
        max_responses: how many recent responses to remember.

    Handlers run on the client's dispatcher thread; :attr:`items`, :meth:`get`,
    :attr:`responses` and friends may be called from any thread. Call :meth:`close` to
    unsubscribe.

    Reconnects: a new session is a new, empty conversation on the server. The mirror keeps
    the old session's items and starts a new list for the new one (:attr:`sessions`; each
    item says its :attr:`Item.session`); :attr:`items` lists them session after session,
    each in its own order, never reordered. A response in flight when the connection
    dropped is marked :attr:`Response.interrupted`. To carry context over, see
    :meth:`carry_over`.
    """

    def __init__(self, client: Any = None, *, keep_audio: bool = False,
                 max_items: Optional[int] = None, max_responses: int = 100) -> None:
        if max_items is not None and max_items < 1:
            raise ValueError("max_items must be >= 1 or None")
        if max_responses < 1:
            raise ValueError("max_responses must be >= 1")
        self.keep_audio = keep_audio
        self.max_items = max_items
        self._lock = threading.RLock()
        self._order: List[str] = []  # the current session's order
        # every session: (number, server session id, its order list)
        self._sessions: List[Tuple[int, Optional[str], List[str]]] = [(1, None, self._order)]
        self._items: Dict[str, Item] = {}
        self._loose: Dict[str, Item] = {}  # output items not (yet) in the conversation
        self._responses: Deque[Response] = collections.deque(maxlen=max_responses)
        self._by_response: Dict[str, Response] = {}
        self._speech: Dict[str, Dict[str, int]] = {}
        self._changed = threading.Condition(self._lock)
        self._client = client
        self._host: Optional[ClientHost] = getattr(client, "host", None)
        sid = getattr(client, "session_id", None)  # created after connect(): the session now
        if isinstance(sid, str) and getattr(client, "connected", False):
            self._sessions[0] = (1, sid, self._order)
        if client is not None:
            client.on("*", self.apply)

    # -- subscription --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop following the client's events (the state stays readable). Any thread."""
        client, self._client = self._client, None
        if client is not None:
            client.off("*", self.apply)

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reading (any thread) ----------------------------------------------------------------------
    @property
    def items(self) -> List[Item]:
        """The items of every session, session after session, each in server order (a
        snapshot list). :attr:`Item.session` says which session an item belongs to."""
        with self._lock:
            return [self._items[i] for _, _, order in self._sessions for i in order]

    @property
    def sessions(self) -> List[Session]:
        """The sessions the mirror saw, oldest first, each with its own items (snapshots).
        One entry until the first reconnect."""
        with self._lock:
            return [Session(n, sid, [self._items[i] for i in order])
                    for n, sid, order in self._sessions]

    def carry_over(self, client: Any = None, *, session: int = -2,
                   max_items: Optional[int] = None) -> int:
        """Re-create the text of an earlier session's messages in the current session, so
        the model keeps the context after a reconnect.

        Each user/assistant/system message of ``sessions[session]`` (default: the one before
        the current) with text or a transcript is sent as a ``conversation.item.create`` of
        the same role (assistant text as ``output_text``, the others as ``input_text``),
        in order; audio, tool calls and their outputs are left out. ``max_items`` keeps only
        the last ones. Returns how many items were sent. Any thread; call it after
        ``client.reconnected`` (not in that handler if the client is strict about sends).
        """
        target = client if client is not None else self._client
        if target is None:
            raise NotConnectedError("carry_over() needs a client")
        with self._lock:
            if len(self._sessions) < (abs(session) if session < 0 else session + 1):
                return 0
            order = self._sessions[session][2]
            messages = [self._items[i] for i in order]
        items = []
        for item in messages:
            said = item.text or item.transcript
            if item.type != "message" or not said or item.role not in (
                    "user", "assistant", "system"):
                continue
            kind = "output_text" if item.role == "assistant" else "input_text"
            items.append({"type": "message", "role": item.role,
                          "content": [{"type": kind, "text": said}]})
        if max_items is not None:
            items = items[-max_items:] if max_items > 0 else []
        for body in items:
            target.conversation.item.create(body)
        return len(items)

    def get(self, item_id: str) -> Optional[Item]:
        """The item with this id (in the conversation or in a remembered response)."""
        with self._lock:
            return self._items.get(item_id) or self._loose.get(item_id)

    def __getitem__(self, item_id: str) -> Item:
        item = self.get(item_id)
        if item is None:
            raise KeyError(item_id)
        return item

    def __len__(self) -> int:
        with self._lock:
            return sum(len(order) for _, _, order in self._sessions)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: object) -> bool:
        with self._lock:
            return item_id in self._items

    @property
    def responses(self) -> List[Response]:
        """The remembered responses, oldest first (a snapshot list)."""
        with self._lock:
            return list(self._responses)

    def response(self, response_id: str) -> Optional[Response]:
        """The remembered response with this id, or ``None``."""
        with self._lock:
            return self._by_response.get(response_id)

    @property
    def last_response(self) -> Optional[Response]:
        """The most recent response, or ``None``."""
        with self._lock:
            return self._responses[-1] if self._responses else None

    @property
    def text(self) -> str:
        """A plain transcript of the conversation: one ``role: text`` line per message."""
        lines = []
        for item in self.items:
            if item.type == "message":
                said = item.text or item.transcript
                if said:
                    lines.append(f"{item.role}: {said}")
        return "\n".join(lines)

    def wait_until(self, predicate: Callable[[Conversation], Any],
                   timeout: Optional[float] = None) -> bool:
        """Block until ``predicate(self)`` is true (checked after every applied event);
        returns its last truth value. Thread: any but the dispatcher's (the events that would
        make it true are applied there)."""
        with self._changed:
            return bool(wait_until(self._changed, lambda: predicate(self), Deadline(timeout)))

    # -- applying events (dispatcher thread, or whoever feeds it) ----------------------------------
    def apply(self, event: Mapping[str, Any]) -> None:
        """Update the mirror with one server event (unknown types are ignored).

        The client calls it on its dispatcher thread; call it yourself only for a
        ``Conversation(None)``.
        """
        type_ = event.get("type")
        handler = _APPLY.get(type_) if isinstance(type_, str) else None
        if handler is None:
            return
        with self._lock:
            try:
                handler(self, event)
            except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
                # a field of the wrong type: skip the event, report it once
                self._report(f"a field has the wrong type ({type(exc).__name__}: {exc})",
                             event)
            self._changed.notify_all()

    def _report(self, problem: str, event: Mapping[str, Any]) -> None:
        """A server event this mirror cannot use: ``client.protocol_error`` (once per event
        however many mirrors skip it)."""
        host = self._host
        if host is not None:
            host.protocol_error(problem, event)
        else:
            logger.warning("protocol error from server: %s: %s", event.get("type"), problem)

    def _content_index(self, event: Mapping[str, Any], item: Item) -> Optional[int]:
        """The event's ``content_index``, or None (reported) when it is not an integer in
        ``0 .. len(parts) + MAX_PART_GAP``: no index can make the mirror allocate more than
        what it received."""
        index = event.get("content_index", 0)
        if index is None:
            index = 0
        if not isinstance(index, int) or isinstance(index, bool):
            self._report(f"content_index {index!r} is not an integer", event)
            return None
        if index < 0 or index > len(item.content) + MAX_PART_GAP:
            self._report(f"content_index {index} is out of range (the item has "
                         f"{len(item.content)} parts)", event)
            return None
        return index

    def _on_session_created(self, event: Mapping[str, Any]) -> None:
        """A new server session: a new conversation (its items get their own list)."""
        raw = event.get("session")
        sid = raw.get("id") if isinstance(raw, Mapping) else None
        sid = sid if isinstance(sid, str) else None
        number, current_id, order = self._sessions[-1]
        if current_id == sid and sid is not None:  # already known (mirror made after connect)
            return
        if not order and current_id is None:  # the first session.created the mirror sees
            self._sessions[-1] = (number, sid, order)
            return
        self._order = []
        self._sessions.append((number + 1, sid, self._order))

    def _on_disconnected(self, event: Mapping[str, Any]) -> None:
        """The connection dropped: responses in flight can never finish."""
        for resp in self._responses:
            resp._interrupt()

    # item bookkeeping (lock held)
    def _item(self, item_id: Any, type_: str = "message") -> Optional[Item]:
        if not isinstance(item_id, str) or not item_id:
            return None
        item = self._items.get(item_id) or self._loose.get(item_id)
        if item is None:
            item = Item(item_id, type_)
            self._loose[item_id] = item
        return item

    def _part_for(self, event: Mapping[str, Any],
                  kind: str) -> Optional[Tuple[Item, Dict[str, Any]]]:
        """The message item an event names and its content part at the event's
        ``content_index`` (created as ``kind`` if new), or None when the event cannot be used
        (a bad index is reported)."""
        item = self._item(event.get("item_id"))
        if item is None:
            return None
        index = self._content_index(event, item)
        if index is None:
            return None
        return item, item._part(index, kind)

    def _merged_item(self, event: Mapping[str, Any]) -> Optional[Item]:
        """The item an ``item``-carrying event is about, updated with the event's copy."""
        raw = event.get("item")
        if not isinstance(raw, Mapping):
            return None
        item = self._item(raw.get("id"), str(raw.get("type") or "message"))
        if item is not None:
            item._merge(raw)
        return item

    def _place(self, item: Item, previous_item_id: Any) -> None:
        """Put ``item`` into the conversation order after ``previous_item_id``."""
        self._loose.pop(item.id, None)
        if item.id in self._items:
            return
        self._items[item.id] = item
        number, sid, _ = self._sessions[-1]
        item.session, item.session_id = number, sid
        if previous_item_id is None or previous_item_id == "root":
            index = 0
        elif previous_item_id in self._items and previous_item_id in self._order:
            index = self._order.index(previous_item_id) + 1
        else:
            index = len(self._order)  # joined mid-session: the previous item is unknown
        self._order.insert(index, item.id)
        item.previous_item_id = previous_item_id if isinstance(previous_item_id, str) else None
        if self.max_items is not None:
            while sum(len(o) for _, _, o in self._sessions) > self.max_items:
                oldest = next(o for _, _, o in self._sessions if o)
                self._items.pop(oldest.pop(0), None)

    def _on_item_added(self, event: Mapping[str, Any]) -> None:
        item = self._merged_item(event)
        if item is None:
            return
        self._place(item, event.get("previous_item_id"))
        speech = self._speech.pop(item.id, None)
        if speech and "start" in speech and "end" in speech and not item.audio_ms:
            item.audio_ms = float(max(0, speech["end"] - speech["start"]))

    def _on_item_done(self, event: Mapping[str, Any]) -> None:
        item = self._merged_item(event)
        if item is None:
            return
        if item.id not in self._items and "previous_item_id" in event:
            self._place(item, event.get("previous_item_id"))

    def _on_item_retrieved(self, event: Mapping[str, Any]) -> None:
        raw = event.get("item")
        if not isinstance(raw, Mapping):
            return
        item = self.get(str(raw.get("id") or ""))
        if item is None:
            return
        item._merge(raw)
        if self.keep_audio:
            for part in raw.get("content") or []:
                if isinstance(part, Mapping) and isinstance(part.get("audio"), str):
                    try:
                        item.audio = bytearray(base64.b64decode(part["audio"]))
                    except (binascii.Error, ValueError):
                        logger.debug("retrieved item %s: audio is not base64", item.id)

    def _on_item_deleted(self, event: Mapping[str, Any]) -> None:
        item_id = event.get("item_id")
        if item_id in self._items:
            for _, _, order in self._sessions:
                if item_id in order:
                    order.remove(item_id)
            del self._items[item_id]
        self._loose.pop(item_id, None)  # type: ignore[arg-type]

    def _on_item_truncated(self, event: Mapping[str, Any]) -> None:
        item = self.get(str(event.get("item_id") or ""))
        if item is None:
            return
        item.truncated = True
        end = event.get("audio_end_ms")
        if isinstance(end, (int, float)):
            item.audio_ms = min(item.audio_ms, float(end)) if item.audio_ms else float(end)
            if item.audio is not None:
                del item.audio[int(end) * BYTES_PER_MS:]

    def _on_transcription(self, event: Mapping[str, Any]) -> None:
        found = self._part_for(event, "input_audio")
        if found is None:
            return
        item, part = found
        type_ = event.get("type", "")
        if type_.endswith(".delta"):
            part["transcript"] = str(part.get("transcript") or "") + str(event.get("delta") or "")
        elif type_.endswith(".completed"):
            part["transcript"] = str(event.get("transcript") or "")
            item.transcription_error = None
        else:
            err = event.get("error")
            item.transcription_error = dict(err) if isinstance(err, Mapping) else {}

    def _on_speech(self, event: Mapping[str, Any]) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return
        started = event.get("type") == "input_audio_buffer.speech_started"
        value = event.get("audio_start_ms" if started else "audio_end_ms")
        if not isinstance(value, int):
            return
        item = self._items.get(item_id)
        if item is not None and not started:
            start = self._speech.pop(item_id, {}).get("start")
            if start is not None:
                item.audio_ms = float(max(0, value - start))
            return
        self._speech.setdefault(item_id, {})["start" if started else "end"] = value
        while len(self._speech) > 64:
            self._speech.pop(next(iter(self._speech)))

    # responses
    def _response(self, response_id: Any) -> Optional[Response]:
        if not isinstance(response_id, str) or not response_id:
            return None
        resp = self._by_response.get(response_id)
        if resp is None:
            resp = Response(response_id)
            self._remember(resp)
        return resp

    def _remember(self, resp: Response) -> None:
        if len(self._responses) == self._responses.maxlen:
            old = self._responses[0]
            self._by_response.pop(old.id, None)
            for item in old.items:
                self._loose.pop(item.id, None)
        self._responses.append(resp)
        self._by_response[resp.id] = resp

    def _update_response(self, resp: Response, raw: Mapping[str, Any]) -> None:
        resp.raw = {k: v for k, v in raw.items() if k != "output"}
        if raw.get("status"):
            resp.status = str(raw["status"])
        resp.status_details = raw.get("status_details") or None
        if raw.get("usage") is not None:
            resp.usage = raw.get("usage")
        if "conversation_id" in raw:
            resp.conversation_id = raw.get("conversation_id")
        if raw.get("output_modalities") is not None:
            resp.output_modalities = list(raw["output_modalities"])
        if raw.get("metadata") is not None:
            resp.metadata = dict(raw["metadata"])

    def _on_response_created(self, event: Mapping[str, Any]) -> None:
        raw = event.get("response")
        if isinstance(raw, Mapping):
            resp = self._response(raw.get("id"))
            if resp is not None:
                self._update_response(resp, raw)

    def _on_response_done(self, event: Mapping[str, Any]) -> None:
        raw = event.get("response")
        if not isinstance(raw, Mapping):
            return
        resp = self._response(raw.get("id"))
        if resp is None:
            return
        self._update_response(resp, raw)
        for index, out in enumerate(raw.get("output") or []):
            if not isinstance(out, Mapping):
                continue
            item = self._item(out.get("id"), str(out.get("type") or "message"))
            if item is None:
                continue
            item._merge(out)
            item.response_id = resp.id
            if item not in resp.items:
                resp.items.insert(min(index, len(resp.items)), item)
        resp._done.set()

    def _on_output_item(self, event: Mapping[str, Any]) -> None:
        item = self._merged_item(event)
        if item is None:
            return
        resp = self._response(event.get("response_id"))
        if resp is not None:
            item.response_id = resp.id
            if item not in resp.items:
                resp.items.append(item)

    def _on_content_part(self, event: Mapping[str, Any]) -> None:
        item = self._item(event.get("item_id"))
        part = event.get("part")
        if item is None or not isinstance(part, Mapping):
            return
        kind = _PART_NAME.get(str(part.get("type")), str(part.get("type")))
        index = self._content_index(event, item)
        if index is None:
            return
        mine = item._part(index, kind)
        for key in ("text", "transcript"):
            if part.get(key):
                mine[key] = part[key]

    def _on_text(self, event: Mapping[str, Any]) -> None:
        self._accumulate(event, "output_text", "text")

    def _on_transcript(self, event: Mapping[str, Any]) -> None:
        self._accumulate(event, "output_audio", "transcript")

    def _accumulate(self, event: Mapping[str, Any], kind: str, key: str) -> None:
        """Append a ``.delta`` to a content part's ``key``, or set it from the ``.done``."""
        found = self._part_for(event, kind)
        if found is None:
            return
        part = found[1]
        if event.get("type", "").endswith(".delta"):
            part[key] = str(part.get(key) or "") + str(event.get("delta") or "")
        elif event.get(key) is not None:
            part[key] = str(event.get(key))

    def _on_audio(self, event: Mapping[str, Any]) -> None:
        found = self._part_for(event, "output_audio")
        if found is None:
            return
        item = found[0]
        if not event.get("type", "").endswith(".delta"):
            return
        delta = event.get("delta")
        if not isinstance(delta, str):
            return
        if item.truncated:
            return
        if self.keep_audio:
            try:
                pcm = base64.b64decode(delta)
            except (binascii.Error, ValueError):
                return
            if item.audio is None:
                item.audio = bytearray()
            item.audio += pcm
            n = len(pcm)
        else:
            n = _b64_length(delta)
        item._audio_bytes += n
        item.audio_ms = item._audio_bytes / BYTES_PER_MS

    def _on_arguments(self, event: Mapping[str, Any]) -> None:
        item = self._item(event.get("item_id"), "function_call")
        if item is None:
            return
        if event.get("call_id"):
            item.call_id = str(event["call_id"])
        if event.get("type", "").endswith(".delta"):
            item.arguments = (item.arguments or "") + str(event.get("delta") or "")
        else:
            if event.get("arguments") is not None:
                item.arguments = str(event["arguments"])
            if event.get("name"):
                item.name = str(event["name"])

    def _on_mcp(self, event: Mapping[str, Any]) -> None:
        item = self._item(event.get("item_id"), "mcp_call")
        if item is None:
            return
        type_ = str(event.get("type", ""))
        if type_.endswith("arguments.delta"):
            item.arguments = (item.arguments or "") + str(event.get("delta") or "")
        elif type_.endswith("arguments.done") and event.get("arguments") is not None:
            item.arguments = str(event["arguments"])
        else:
            item.status = type_.rsplit(".", 1)[-1]


_APPLY: Dict[str, Callable[[Conversation, Mapping[str, Any]], None]] = {
    "session.created": Conversation._on_session_created,
    "client.disconnected": Conversation._on_disconnected,
    "conversation.item.added": Conversation._on_item_added,
    "conversation.item.created": Conversation._on_item_added,
    "conversation.item.done": Conversation._on_item_done,
    "conversation.item.retrieved": Conversation._on_item_retrieved,
    "conversation.item.deleted": Conversation._on_item_deleted,
    "conversation.item.truncated": Conversation._on_item_truncated,
    "conversation.item.input_audio_transcription.delta": Conversation._on_transcription,
    "conversation.item.input_audio_transcription.completed": Conversation._on_transcription,
    "conversation.item.input_audio_transcription.failed": Conversation._on_transcription,
    "input_audio_buffer.speech_started": Conversation._on_speech,
    "input_audio_buffer.speech_stopped": Conversation._on_speech,
    "response.created": Conversation._on_response_created,
    "response.done": Conversation._on_response_done,
    "response.output_item.added": Conversation._on_output_item,
    "response.output_item.done": Conversation._on_output_item,
    "response.content_part.added": Conversation._on_content_part,
    "response.content_part.done": Conversation._on_content_part,
    "response.output_text.delta": Conversation._on_text,
    "response.output_text.done": Conversation._on_text,
    "response.output_audio.delta": Conversation._on_audio,
    "response.output_audio.done": Conversation._on_audio,
    "response.output_audio_transcript.delta": Conversation._on_transcript,
    "response.output_audio_transcript.done": Conversation._on_transcript,
    "response.function_call_arguments.delta": Conversation._on_arguments,
    "response.function_call_arguments.done": Conversation._on_arguments,
    "response.mcp_call_arguments.delta": Conversation._on_mcp,
    "response.mcp_call_arguments.done": Conversation._on_mcp,
    "response.mcp_call.in_progress": Conversation._on_mcp,
    "response.mcp_call.completed": Conversation._on_mcp,
    "response.mcp_call.failed": Conversation._on_mcp,
}


# -- text turns ------------------------------------------------------------------------------------
def user_message(text: str) -> Dict[str, Any]:
    """The ``item`` of a user text message."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def send_text(client: Any, text: str, respond: bool = True) -> str:
    """Add a user text message (``conversation.item.create``) and, with ``respond``, send
    ``response.create``. Any thread; returns the ``event_id`` of the item's create event.

    Raises:
        NotConnectedError: not connected (and not reconnecting).
    """
    event_id = client.conversation.item.create(user_message(text))
    if respond:
        client.response.create()
    return str(event_id)


_ask_ids = itertools.count(1)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _tools_follow_up(host: ClientHost, resp: Response) -> bool:
    """True when the client's tool dispatcher will answer ``resp``'s calls with a new response."""
    tools = host.peek_feature("tools")
    if tools is None:
        return False
    follows = getattr(tools, "will_follow_up", None)
    return bool(follows(resp)) if follows is not None else False


def ask(client: Any, text: str, timeout: Optional[float] = 60, *,
        follow_tools: bool = True) -> Response:
    """Send ``text`` as a user message, ask for a response and block until it is done.

    The response is recognised by the metadata of the ``response.create`` this call sends,
    so auto-responses of server VAD cannot be mistaken for it. When the model calls tools
    registered with ``client.tools`` and ``follow_tools`` is true, the tool dispatcher answers
    and this call waits for the response that follows; the earlier ones are in
    :attr:`Response.previous`.

    A connection that drops after the question was sent ends the call at once with
    :class:`~realtime_sync.ConnectionLostError` (even when the client reconnects: the new
    session is a new conversation that never saw the question); its ``response`` holds
    what had arrived. Called while the client is reconnecting, the question waits for the
    new session and is asked there.

    Thread: any but the dispatcher's (raises :class:`~realtime_sync.DeadlockError` there).

    Raises:
        ServerError: the server answered the message or the request with ``error``, or the
            response failed (``status`` ``failed``).
        TimeoutError: no ``response.done`` within ``timeout`` seconds.
        ConnectionLostError: the connection dropped while the answer was on its way.
        NotConnectedError: the connection ended for good while waiting.
    """
    host: ClientHost = client.host
    host.check_blocking_call("ask()")
    token = f"ask-{os.getpid()}-{next(_ask_ids)}-{time.monotonic_ns() % 1000000007}"
    deadline = Deadline(timeout)
    # one ask() at a time per client (one response at a time); the lock is this module's
    lock = host.feature("ask_lock", threading.Lock)
    left = deadline.remaining()
    if not lock.acquire(timeout=-1 if left is None else left):
        raise TimeoutError(f"another ask() on this client did not finish within {timeout} s")
    try:
        return _ask_locked(client, host, text, token, deadline, follow_tools)
    finally:
        lock.release()


class _Asker:
    """Sends ask()'s events into one session (or, while reconnecting, the next one)."""

    def __init__(self, client: Any, host: ClientHost) -> None:
        self.client = client
        self.host = host
        self.session: Optional[int] = host.session_number if client.connected else None

    def send(self, event: Dict[str, Any]) -> str:
        if self.session is not None:
            return self.host.send_in_session(event, self.session)
        return str(self.client.send(event))  # reconnecting: queued for the next session


def _ask_locked(client: Any, host: ClientHost, text: str, token: str,
                deadline: Deadline, follow_tools: bool) -> Response:
    timeout = deadline.timeout
    state = Conversation(None)
    state._host = host
    events = client.events(types=EVENT_TYPES + (
        "error", "client.connected", "client.reconnected"))
    # handlers registered before ours (a Conversation mirror) have seen the response once
    # this wildcard handler has: ask() returns only then, so the mirror is up to date
    handled = _Handled()
    sync = host.marshal is None
    if sync:
        client.on("*", handled.mark)
    asker = _Asker(client, host)
    current: Optional[str] = None
    chain: List[Response] = []

    def lost(why: str) -> ConnectionLostError:
        resp = state.response(current) if current is not None else None
        if resp is not None:
            resp._interrupt()
            resp.previous = chain
        elif chain:  # tools answered, the follow-up never started: the last one received
            resp = chain[-1]
        return ConnectionLostError(
            f"the connection dropped {why}; the new session cannot answer it (it is a new"
            " conversation): ask again, carrying context over if needed", response=resp)

    try:
        try:
            item_event = asker.send({"type": "conversation.item.create",
                                     "item": user_message(text)})
            create = {"type": "response.create",
                      "response": {"metadata": {METADATA_KEY: token}}}
            create_event = asker.send(create)
        except ConnectionLostError:
            raise lost("while the question was being sent") from None
        ours = {item_event, create_event}
        retry_create = False  # a response (server VAD's, say) was active: ask again after it
        wanted: Optional[str] = token
        while True:
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"no response.done within {timeout} s")
            event = _next(events, remaining)
            if event is None:
                if deadline.expired():
                    raise TimeoutError(f"no response.done within {timeout} s")
                raise NotConnectedError("the client closed while waiting for the response")
            type_ = event.get("type")
            if type_ == "error":
                retry_create = _refused(event, ours, item_event, retry_create)
                continue
            if type_ in ("client.connected", "client.reconnected", "client.disconnected"):
                _connection_changed(event, asker, host, lost)
                continue
            state.apply(event)
            if type_ == "response.created":
                raw = _mapping(event.get("response"))
                tag = _mapping(raw.get("metadata")).get(METADATA_KEY)
                if tag == wanted:
                    current = raw.get("id")
                elif tag is None and current is None:
                    # a server that does not echo metadata: only one response runs at a
                    # time, so the first one after our request is ours (or ours fails)
                    current = raw.get("id")
            elif type_ == "response.done" and retry_create and current is None:
                retry_create = False
                try:
                    ours.add(asker.send(create))
                except ConnectionLostError:
                    raise lost("while the question was being sent") from None
            elif type_ == "response.done" and current is not None:
                raw = _mapping(event.get("response"))
                if raw.get("id") != current:
                    continue
                resp = state.response(current)
                if resp is None:  # a response id of the wrong type (reported): not ours
                    current = None
                    continue
                resp.raise_for_status()
                if follow_tools and _tools_follow_up(host, resp):
                    chain.append(resp)
                    wanted = f"tools:{current}"
                    current = None
                    continue
                resp.previous = chain
                if sync:
                    handled.wait(str(current), deadline.remaining())
                return resp
    finally:
        events.close()
        if sync:
            client.off("*", handled.mark)


class _Handled:
    """Which ``response.done`` events the handlers registered before ``ask()``'s own have
    seen (any thread)."""

    def __init__(self) -> None:
        self._done: Dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _event(self, rid: str) -> threading.Event:
        with self._lock:
            return self._done.setdefault(rid, threading.Event())

    def mark(self, event: Any) -> None:
        """A ``"*"`` handler: note each ``response.done`` (dispatcher thread)."""
        if event.get("type") == "response.done":
            self._event(str(_mapping(event.get("response")).get("id"))).set()

    def wait(self, rid: str, timeout: Optional[float]) -> None:
        """Until response ``rid`` has been handled, or ``timeout`` s."""
        self._event(rid).wait(timeout)


def _refused(event: Any, ours: Any, item_event: str, retry_create: bool) -> bool:
    """An ``error`` while asking: raises ServerError when it refuses one of ``ours``;
    returns whether to create the response again once the active one is done."""
    err = event.get("error") or {}
    if isinstance(err, Mapping) and err.get("event_id") in ours:
        if (err.get("code") == "conversation_already_has_active_response"
                and err.get("event_id") != item_event and not retry_create):
            return True  # wait for that response.done, then ask again
        raise ServerError(event)
    return retry_create


def _connection_changed(event: Any, asker: _Asker, host: ClientHost,
                        lost: Callable[[str], ConnectionLostError]) -> None:
    """``client.(re)connected`` / ``client.disconnected`` while asking: note the session our
    queued events go into, or raise when the answer can no longer come."""
    if event.get("type") != "client.disconnected":
        if asker.session is None:  # our queued events go into this session
            number = event.get("generation")
            asker.session = number if isinstance(number, int) else host.session_number
        return
    if asker.session is not None:
        raise lost("while the answer was on its way")
    if not event.get("will_reconnect"):
        raise NotConnectedError(
            f"disconnected while waiting for the response: {event.get('reason')}")


def _next(events: Any, timeout: Optional[float]) -> Optional[Any]:
    """The next event of an ``events()`` iterator within ``timeout`` s, or None."""
    return events.next(timeout)
