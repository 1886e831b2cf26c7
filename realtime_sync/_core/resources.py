"""Send helpers grouped like the wire: ``client.session.update(...)``, ``client.response.create()``.

Each helper builds one GA client event, sends it with ``client.send`` and returns its
``event_id``. All are thread-safe (any thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from ..events import MAX_EVENT_BYTES, append_frame, new_event_id

if TYPE_CHECKING:  # pragma: no cover
    from ..client import RealtimeClient
    from .sender import Sender

__all__ = [
    "SessionResource",
    "InputAudioBufferResource",
    "ConversationResource",
    "ConversationItemResource",
    "ResponseResource",
    "OutputAudioBufferResource",
    "MAX_APPEND_AUDIO_BYTES",
]

MAX_APPEND_AUDIO_BYTES = (MAX_EVENT_BYTES - 1024) // 4 * 3 // 2 * 2
"""The most PCM bytes one append event can carry (base64 grows 4/3) and stay under 15 MiB."""


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string, not {value!r}")


class _Resource:
    def __init__(self, client: RealtimeClient) -> None:
        self._client = client

    def _send(self, event: Dict[str, Any]) -> str:
        return self._client.send(event)


class SessionResource(_Resource):
    """``session.update``."""

    def update(self, session: Optional[Mapping[str, Any]] = None, **fields: Any) -> str:
        """Send ``session.update`` (a dict, or keyword fields) and remember it once applied.

        The remembered config is re-sent after a reconnect. Wait for ``session.updated`` with
        ``client.wait_for("session.updated")``: it raises :class:`ServerError` on rejection.
        """
        if session is not None and not isinstance(session, Mapping):
            raise TypeError("session must be a dict")
        body: Dict[str, Any] = dict(session or {})
        body.update(fields)
        if "type" not in body:
            body["type"] = self._client.intent
        return self._send({"type": "session.update", "session": body})


class InputAudioBufferResource(_Resource):
    """``input_audio_buffer.append`` / ``commit`` / ``clear``."""

    def __init__(self, client: RealtimeClient, sender: Sender) -> None:
        super().__init__(client)
        self._sender = sender

    def append(self, pcm16: bytes) -> str:
        """Append PCM16 mono little-endian 24 kHz audio (base64 is done here), or G.711 bytes
        when the session's ``audio.input.format`` is ``audio/pcmu``/``audio/pcma``.

        Audio over the 15 MiB event limit is split into several appends; the last
        ``event_id`` is returned. Never queued while reconnecting (raises
        :class:`NotConnectedError`); :func:`realtime_sync.audio.stream` buffers for you.

        Raises:
            TypeError: not bytes-like.
            ValueError: PCM16 with an odd number of bytes (PCM16 samples are 2 bytes).
        """
        if isinstance(pcm16, memoryview):
            pcm16 = pcm16.tobytes()
        if not isinstance(pcm16, (bytes, bytearray)):
            raise TypeError(
                f"audio must be bytes of PCM16 samples, not {type(pcm16).__name__}"
            )
        if len(pcm16) % 2 and not self._g711():
            raise ValueError(f"PCM16 audio has an even number of bytes; got {len(pcm16)}")
        if not pcm16:
            raise ValueError("audio is empty")
        event_id = ""
        for start in range(0, len(pcm16), MAX_APPEND_AUDIO_BYTES):
            chunk = bytes(pcm16[start:start + MAX_APPEND_AUDIO_BYTES])
            event_id = new_event_id()
            self._sender.send_append(append_frame(chunk, event_id), event_id, len(chunk))
        return event_id

    def _g711(self) -> bool:
        """Is the session's input format G.711 (one byte per sample)?"""
        config = self._client.session_config or {}
        audio = config.get("audio") if isinstance(config, Mapping) else None
        inp = audio.get("input") if isinstance(audio, Mapping) else None
        fmt = inp.get("format") if isinstance(inp, Mapping) else None
        return isinstance(fmt, Mapping) and fmt.get("type") in ("audio/pcmu", "audio/pcma")

    def commit(self) -> str:
        """Commit the buffer into a user item (needed when ``turn_detection`` is None)."""
        return self._send({"type": "input_audio_buffer.commit"})

    def clear(self) -> str:
        """Drop the audio buffered on the server."""
        return self._send({"type": "input_audio_buffer.clear"})


class ConversationItemResource(_Resource):
    """``conversation.item.create`` / ``delete`` / ``retrieve`` / ``truncate``."""

    def create(self, item: Mapping[str, Any], previous_item_id: Optional[str] = None) -> str:
        """Insert an item (``previous_item_id="root"``: at the beginning)."""
        if not isinstance(item, Mapping) or "type" not in item:
            raise TypeError("item must be a dict with a 'type' (message, function_call_output...)")
        event: Dict[str, Any] = {"type": "conversation.item.create", "item": dict(item)}
        if previous_item_id is not None:
            _check_str("previous_item_id", previous_item_id)
            event["previous_item_id"] = previous_item_id
        return self._send(event)

    def delete(self, item_id: str) -> str:
        """Delete an item."""
        _check_str("item_id", item_id)
        return self._send({"type": "conversation.item.delete", "item_id": item_id})

    def retrieve(self, item_id: str) -> str:
        """Ask for the server's copy of an item (answered by ``conversation.item.retrieved``)."""
        _check_str("item_id", item_id)
        return self._send({"type": "conversation.item.retrieve", "item_id": item_id})

    def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> str:
        """Cut an assistant item's audio at ``audio_end_ms`` (what the user actually heard)."""
        _check_str("item_id", item_id)
        if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
            raise ValueError("audio_end_ms must be an integer >= 0")
        if not isinstance(content_index, int) or content_index < 0:
            raise ValueError("content_index must be an integer >= 0")
        return self._send({
            "type": "conversation.item.truncate", "item_id": item_id,
            "content_index": content_index, "audio_end_ms": audio_end_ms,
        })


class ConversationResource(_Resource):
    """``client.conversation.item.*``."""

    def __init__(self, client: RealtimeClient) -> None:
        super().__init__(client)
        self.item = ConversationItemResource(client)


class ResponseResource(_Resource):
    """``response.create`` / ``response.cancel``."""

    def create(self, response: Optional[Mapping[str, Any]] = None, **fields: Any) -> str:
        """Ask the model to respond (optional ``response`` parameters or keyword fields)."""
        if response is not None and not isinstance(response, Mapping):
            raise TypeError("response must be a dict")
        body = dict(response or {})
        body.update(fields)
        event: Dict[str, Any] = {"type": "response.create"}
        if body:
            event["response"] = body
        return self._send(event)

    def cancel(self, response_id: Optional[str] = None) -> str:
        """Cancel the response in progress (or the one named)."""
        event: Dict[str, Any] = {"type": "response.cancel"}
        if response_id is not None:
            _check_str("response_id", response_id)
            event["response_id"] = response_id
        return self._send(event)


class OutputAudioBufferResource(_Resource):
    """``output_audio_buffer.clear`` (WebRTC/SIP sessions only)."""

    def clear(self) -> str:
        """Stop the server's output audio (WebRTC/SIP only; WebSocket servers reject it)."""
        return self._send({"type": "output_audio_buffer.clear"})
