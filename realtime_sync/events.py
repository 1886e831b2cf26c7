"""Events: the :class:`Event` type, event-type names, and builders for client events.

Server events are parsed into :class:`Event`, a ``dict`` that also allows attribute access,
so unknown fields and new event types pass through untouched. Client-event builders return
plain dicts shaped exactly as the GA wire protocol expects.
"""

from __future__ import annotations

import base64
import itertools
import os
import warnings
from typing import Any, Dict, Mapping

from ._core.wire import MAX_EVENT_BYTES, MAX_EVENT_ID_LENGTH

__all__ = [
    "Event",
    "ServerEvents",
    "LibraryEvents",
    "BETA_TO_GA",
    "BETA_CLIENT_TO_GA",
    "new_event_id",
    "append_frame",
]

__all__ += ["MAX_EVENT_BYTES", "MAX_EVENT_ID_LENGTH"]  # wire constants (defined in _wire)


class Event(Dict[str, Any]):
    """A parsed event: a ``dict`` whose keys can also be read as attributes.

    ``event.delta`` is ``event["delta"]``; a missing key raises :class:`AttributeError`.
    Nested objects stay plain dicts (use ``event.item["id"]``).
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{self.get('type', 'event')!s} has no field {name!r}"
            ) from None

    @property
    def type(self) -> str:  # noqa: A003 - mirrors the wire
        """The event's ``type`` (``""`` when absent)."""
        return str(self.get("type", ""))

    def __repr__(self) -> str:
        return f"Event({dict.__repr__(self)})"


class ServerEvents:
    """Names of the GA server event types (server → client) the library itself uses."""

    ERROR = "error"
    SESSION_CREATED = "session.created"
    SESSION_UPDATED = "session.updated"
    INPUT_AUDIO_BUFFER_COMMITTED = "input_audio_buffer.committed"
    INPUT_AUDIO_BUFFER_CLEARED = "input_audio_buffer.cleared"
    INPUT_AUDIO_BUFFER_SPEECH_STARTED = "input_audio_buffer.speech_started"
    INPUT_AUDIO_BUFFER_SPEECH_STOPPED = "input_audio_buffer.speech_stopped"
    CONVERSATION_ITEM_ADDED = "conversation.item.added"
    CONVERSATION_ITEM_DONE = "conversation.item.done"
    CONVERSATION_ITEM_DELETED = "conversation.item.deleted"
    CONVERSATION_ITEM_TRUNCATED = "conversation.item.truncated"
    CONVERSATION_ITEM_RETRIEVED = "conversation.item.retrieved"
    TRANSCRIPTION_DELTA = "conversation.item.input_audio_transcription.delta"
    TRANSCRIPTION_COMPLETED = "conversation.item.input_audio_transcription.completed"
    TRANSCRIPTION_FAILED = "conversation.item.input_audio_transcription.failed"
    TRANSCRIPTION_SEGMENT = "conversation.item.input_audio_transcription.segment"
    RESPONSE_CREATED = "response.created"
    RESPONSE_DONE = "response.done"
    RESPONSE_OUTPUT_ITEM_ADDED = "response.output_item.added"
    RESPONSE_OUTPUT_ITEM_DONE = "response.output_item.done"
    RESPONSE_CONTENT_PART_ADDED = "response.content_part.added"
    RESPONSE_CONTENT_PART_DONE = "response.content_part.done"
    RESPONSE_OUTPUT_TEXT_DELTA = "response.output_text.delta"
    RESPONSE_OUTPUT_TEXT_DONE = "response.output_text.done"
    RESPONSE_OUTPUT_AUDIO_DELTA = "response.output_audio.delta"
    RESPONSE_OUTPUT_AUDIO_DONE = "response.output_audio.done"
    RESPONSE_OUTPUT_AUDIO_TRANSCRIPT_DELTA = "response.output_audio_transcript.delta"
    RESPONSE_OUTPUT_AUDIO_TRANSCRIPT_DONE = "response.output_audio_transcript.done"
    RESPONSE_FUNCTION_CALL_ARGUMENTS_DELTA = "response.function_call_arguments.delta"
    RESPONSE_FUNCTION_CALL_ARGUMENTS_DONE = "response.function_call_arguments.done"
    RATE_LIMITS_UPDATED = "rate_limits.updated"


class LibraryEvents:
    """Events made by the library itself (the ``client.`` prefix never comes from a server)."""

    CONNECTED = "client.connected"
    DISCONNECTED = "client.disconnected"
    RECONNECTING = "client.reconnecting"
    RECONNECTED = "client.reconnected"
    HANDLER_ERROR = "client.handler_error"
    PROTOCOL_ERROR = "client.protocol_error"
    AUDIO_DROPPED = "client.audio_dropped"
    AUDIO_ERROR = "client.audio_error"
    AUDIO_RECOVERED = "client.audio_recovered"
    TOOL_CALL = "client.tool_call"


BETA_TO_GA: Mapping[str, str] = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "transcription_session.created": "session.created",
    "transcription_session.updated": "session.updated",
}
"""Retired beta server event names and their GA replacements (drift guard).

``conversation.created`` and ``conversation.item.created`` are not here: they are still in the
GA server-event union of OpenAI's SDK (a GA server may send them), so a handler for them is
no mistake."""

BETA_CLIENT_TO_GA: Mapping[str, str] = {
    "transcription_session.update": 'session.update with session.type "transcription"',
}
"""Beta-only client event types and what to send instead."""

_counter = itertools.count(1)
_prefix = "evt_" + base64.urlsafe_b64encode(os.urandom(6)).decode("ascii") + "_"


def new_event_id() -> str:
    """A process-unique client ``event_id`` (thread-safe: ``itertools.count`` is atomic)."""
    return f"{_prefix}{next(_counter)}"


def append_frame(pcm16: bytes, event_id: str,
                 type_: str = "input_audio_buffer.append") -> bytes:
    """The JSON of an ``input_audio_buffer.append`` event (or of ``type_``, e.g. the
    translation session's ``session.input_audio_buffer.append``) as UTF-8 bytes, built
    without ``json.dumps``: base64 output, our event ids and event type names are JSON-safe,
    so concatenation is exact.
    """
    return b"".join((
        b'{"type":"', type_.encode("ascii"), b'","event_id":"',
        event_id.encode("ascii"),
        b'","audio":"',
        base64.b64encode(pcm16),
        b'"}',
    ))


_CLIENT_EVENT_NAMES = {
    "SESSION_UPDATE": "session.update",
    "INPUT_AUDIO_BUFFER_APPEND": "input_audio_buffer.append",
    "INPUT_AUDIO_BUFFER_COMMIT": "input_audio_buffer.commit",
    "INPUT_AUDIO_BUFFER_CLEAR": "input_audio_buffer.clear",
    "CONVERSATION_ITEM_CREATE": "conversation.item.create",
    "CONVERSATION_ITEM_RETRIEVE": "conversation.item.retrieve",
    "CONVERSATION_ITEM_TRUNCATE": "conversation.item.truncate",
    "CONVERSATION_ITEM_DELETE": "conversation.item.delete",
    "RESPONSE_CREATE": "response.create",
    "RESPONSE_CANCEL": "response.cancel",
    "OUTPUT_AUDIO_BUFFER_CLEAR": "output_audio_buffer.clear",
}


def __getattr__(name: str) -> Any:
    """``ClientEvents`` (never used by the library) survives as a deprecated alias."""
    if name == "ClientEvents":
        warnings.warn("realtime_sync.events.ClientEvents is deprecated; use the event type"
                      " strings (e.g. 'response.create')", DeprecationWarning, stacklevel=2)
        return type("ClientEvents", (), dict(_CLIENT_EVENT_NAMES))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
