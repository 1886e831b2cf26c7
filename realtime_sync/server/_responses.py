"""Conversation responses of the local server: what the "model" says, and the GA event cycle.

A :class:`Responder` decides the outputs of one ``response.create`` (text, audio with a
transcript, function calls); :func:`run_response` turns them into the GA event sequence
(``response.created`` ... ``response.done``, ``rate_limits.updated``). Responses run on the
session's response worker thread (``rs-server-response-*``), never on the read loop.
"""

from __future__ import annotations

import base64
import copy
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Union

from .._core.wire import BYTES_PER_MS
from . import _mcp
from ._recognizer import split_words

__all__ = [
    "Text",
    "Audio",
    "FunctionCall",
    "McpCall",
    "Output",
    "OUTPUT_TYPES",
    "ResponseRequest",
    "Responder",
    "EchoResponder",
    "ScriptedResponder",
    "tone",
    "run_response",
]

AUDIO_CHUNK_MS = 100


@dataclass
class Text:
    """An assistant message with one ``output_text`` part."""

    text: str


@dataclass
class Audio:
    """An assistant message with one ``output_audio`` part: PCM16 24 kHz audio + transcript."""

    pcm: bytes
    transcript: str = ""


@dataclass
class FunctionCall:
    """A ``function_call`` item; ``arguments`` is the JSON text the model "wrote"."""

    name: str
    arguments: str = "{}"
    call_id: Optional[str] = None


@dataclass
class McpCall:
    """A call of a tool on a remote MCP server of the session (``type: "mcp"`` in tools).

    When the server's ``require_approval`` asks for it and the client has not answered, the
    response carries an ``mcp_approval_request`` item instead; once the client added an
    ``mcp_approval_response`` (approve) and asked for a new response, the same scripted
    ``McpCall`` runs: ``response.mcp_call*`` events and an ``mcp_call`` item whose ``output``
    is :attr:`output` (or whose ``error`` is :attr:`error`). A denied request gives an
    assistant message saying so.
    """

    server_label: str
    name: str
    arguments: str = "{}"
    output: str = ""
    error: Optional[str] = None


Output = Union[Text, Audio, FunctionCall, McpCall]
OUTPUT_TYPES = (Text, Audio, FunctionCall, McpCall)
"""The classes a responder may return."""


@dataclass
class ResponseRequest:
    """What a responder sees: the conversation so far and the effective response settings."""

    items: List[Dict[str, Any]]
    session: Dict[str, Any]
    response: Dict[str, Any] = field(default_factory=dict)

    @property
    def output_modalities(self) -> List[str]:
        """``["audio"]`` or ``["text"]``: the response's, else the session's."""
        mods = self.response.get("output_modalities") or self.session.get("output_modalities")
        return list(mods or ["audio"])

    @property
    def instructions(self) -> str:
        """The response's instructions, else the session's."""
        return str(self.response.get("instructions") or self.session.get("instructions") or "")

    def last_user_text(self) -> Optional[str]:
        """Text of the newest user message (``input_text`` or an audio transcript), if any."""
        for item in reversed(self.items):
            if item.get("type") == "message" and item.get("role") == "user":
                texts = []
                for part in item.get("content") or []:
                    value = part.get("text") if part.get("type") == "input_text" else \
                        part.get("transcript")
                    if value:
                        texts.append(str(value))
                return " ".join(texts)
            if item.get("type") == "function_call_output":
                return str(item.get("output") or "")
        return None


class Responder(Protocol):
    """Decides the outputs of one response (called on the response worker thread)."""

    def respond(self, request: ResponseRequest) -> Sequence[Output]:
        """Return the outputs, in order."""
        ...


def tone(ms: int, freq: float = 440.0, amplitude: float = 0.3) -> bytes:
    """A sine tone as PCM16 mono 24 kHz little-endian bytes (no numpy)."""
    import array
    import sys

    n = 24 * max(int(ms), 0)
    amp = 32767.0 * amplitude
    step = 2.0 * math.pi * freq / 24000.0
    samples = array.array("h", (int(amp * math.sin(step * i)) for i in range(n)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


class EchoResponder:
    """The default responder: answers with the last user text ("You said: ...").

    With ``output_modalities == ["audio"]`` it answers with audio (a tone, 60 ms per
    character, at most 3 s) whose transcript is that text.
    """

    delta_interval = 0.0

    def respond(self, request: ResponseRequest) -> Sequence[Output]:
        """Echo the last user text (response worker thread)."""
        said = request.last_user_text()
        text = f"You said: {said}" if said else "Hello from the local realtime server."
        if "audio" in request.output_modalities:
            return [Audio(tone(min(60 * len(text), 3000)), text)]
        return [Text(text)]


Reply = Union[Output, str, Sequence[Output], Callable[[ResponseRequest], Any]]


class ScriptedResponder:
    """Answers responses with what a test scripted, in order; then falls back to echoing.

    Each reply is an :data:`Output`, a plain string (a :class:`Text`), a list of outputs, or a
    callable ``request -> any of those``. Add more with :meth:`add`. ``delta_interval`` is
    the pause between two delta events (lets a test cancel a response in mid-flight).
    Thread-safe.
    """

    def __init__(self, replies: Iterable[Reply] = (), *, delta_interval: float = 0.0,
                 fallback: Optional[Responder] = None) -> None:
        self._replies: List[Reply] = list(replies)
        self._lock = threading.Lock()
        self.delta_interval = delta_interval
        self.fallback: Responder = fallback or EchoResponder()
        self.requests: List[ResponseRequest] = []

    def add(self, *replies: Reply) -> None:
        """Queue more replies (any thread)."""
        with self._lock:
            self._replies.extend(replies)

    def respond(self, request: ResponseRequest) -> Sequence[Output]:
        """Pop the next scripted reply (response worker thread)."""
        with self._lock:
            self.requests.append(request)
            reply: Optional[Reply] = self._replies.pop(0) if self._replies else None
        if reply is None:
            return self.fallback.respond(request)
        if callable(reply) and not isinstance(reply, OUTPUT_TYPES):
            reply = reply(request)
        return _as_outputs(reply)


def _as_outputs(reply: Any) -> List[Output]:
    if isinstance(reply, str):
        return [Text(reply)]
    if isinstance(reply, OUTPUT_TYPES):
        return [reply]
    return [Text(r) if isinstance(r, str) else r for r in reply]


class ResponseHost(Protocol):
    """What :func:`run_response` needs from a session."""

    def emit(self, event: Dict[str, Any]) -> None:
        """Send one server event."""
        ...

    def new_id(self, prefix: str) -> str:
        """A fresh id such as ``item_...``."""
        ...

    def insert_item(self, item: Dict[str, Any]) -> Optional[str]:
        """Append an item to the conversation and return its previous_item_id."""
        ...

    def update_item(self, item: Dict[str, Any], audio: Optional[bytes] = None) -> None:
        """Store the final form of an item (and its audio, for retrieve/truncate)."""
        ...


def _tokens(chars: int) -> int:
    return max(int(math.ceil(chars / 4.0)), 0)


class _Run:
    """One response's event cycle (runs on the response worker thread)."""

    def __init__(self, host: ResponseHost, response: Dict[str, Any], cancelled: threading.Event,
                 in_conversation: bool, delta_interval: float) -> None:
        self.host = host
        self.response = response
        self.rid = response["id"]
        self.cancelled = cancelled
        self.in_conversation = in_conversation
        self.delta_interval = delta_interval
        self.out_text = 0
        self.out_audio_ms = 0

    def emit(self, type_: str, **fields: Any) -> None:
        fields["type"] = type_
        self.host.emit(fields)

    def pause(self) -> bool:
        """Wait between deltas; True when the response was cancelled meanwhile."""
        if self.delta_interval > 0:
            self.cancelled.wait(self.delta_interval)
        return self.cancelled.is_set()

    def open_item(self, index: int, item: Dict[str, Any]) -> Optional[str]:
        self.emit("response.output_item.added", response_id=self.rid, output_index=index,
                  item=copy.deepcopy(item))
        prev = None
        if self.in_conversation:
            prev = self.host.insert_item(copy.deepcopy(item))
            self.emit("conversation.item.added", previous_item_id=prev,
                      item=copy.deepcopy(item))
        return prev

    def close_item(self, index: int, item: Dict[str, Any], prev: Optional[str],
                   audio: Optional[bytes] = None, status: bool = True) -> None:
        if status:  # MCP items carry no status
            item["status"] = "incomplete" if self.cancelled.is_set() else "completed"
        if self.in_conversation:
            self.host.update_item(copy.deepcopy(item), audio)
            self.emit("conversation.item.done", previous_item_id=prev, item=copy.deepcopy(item))
        self.emit("response.output_item.done", response_id=self.rid, output_index=index,
                  item=copy.deepcopy(item))
        self.response["output"].append(copy.deepcopy(item))

    def message(self, index: int, out: Union[Text, Audio]) -> None:
        item_id = self.host.new_id("item")
        item: Dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "message",
                                "status": "in_progress", "role": "assistant", "content": []}
        prev = self.open_item(index, item)
        where = {"response_id": self.rid, "item_id": item_id, "output_index": index,
                 "content_index": 0}
        if isinstance(out, Text):
            self.emit("response.content_part.added", part={"type": "text", "text": ""}, **where)
            sent = ""
            for word in split_words(out.text):
                if self.pause():
                    break
                self.emit("response.output_text.delta", delta=word, **where)
                sent += word
            self.out_text += len(sent)
            self.emit("response.output_text.done", text=sent, **where)
            self.emit("response.content_part.done", part={"type": "text", "text": sent}, **where)
            item["content"] = [{"type": "output_text", "text": sent}]
            self.close_item(index, item, prev)
            return
        self.emit("response.content_part.added", part={"type": "audio", "transcript": ""},
                  **where)
        step = AUDIO_CHUNK_MS * BYTES_PER_MS
        chunks = [out.pcm[i:i + step] for i in range(0, len(out.pcm), step)]
        words = split_words(out.transcript)
        n = max(len(chunks), len(words))
        sent_audio = 0
        transcript = ""
        for i in range(n):
            if self.pause():
                break
            # Transcript deltas run slightly ahead of the audio, as OpenAI's do.
            lo, hi = -((-i * len(words)) // n), -((-(i + 1) * len(words)) // n)  # ceil
            for word in words[lo:hi]:
                self.emit("response.output_audio_transcript.delta", delta=word, **where)
                transcript += word
            lo, hi = (i * len(chunks)) // n, ((i + 1) * len(chunks)) // n
            for chunk in chunks[lo:hi]:
                self.emit("response.output_audio.delta",
                          delta=base64.b64encode(chunk).decode("ascii"), **where)
                sent_audio += len(chunk)
        self.out_audio_ms += sent_audio // BYTES_PER_MS
        self.out_text += len(transcript)
        self.emit("response.output_audio.done", **where)
        self.emit("response.output_audio_transcript.done", transcript=transcript, **where)
        self.emit("response.content_part.done", part={"type": "audio", "transcript": transcript},
                  **where)
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        self.close_item(index, item, prev, audio=out.pcm[:sent_audio])

    def function_call(self, index: int, out: FunctionCall) -> None:
        item_id = self.host.new_id("item")
        call_id = out.call_id or self.host.new_id("call")
        item: Dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "function_call",
                                "status": "in_progress", "name": out.name, "call_id": call_id,
                                "arguments": ""}
        prev = self.open_item(index, item)
        where = {"response_id": self.rid, "item_id": item_id, "output_index": index,
                 "call_id": call_id}
        sent = ""
        size = max(len(out.arguments) // 4, 8)
        for i in range(0, len(out.arguments), size):
            if self.pause():
                break
            piece = out.arguments[i:i + size]
            self.emit("response.function_call_arguments.delta", delta=piece, **where)
            sent += piece
        self.out_text += len(sent)
        self.emit("response.function_call_arguments.done", name=out.name, arguments=sent,
                  **where)
        item["arguments"] = sent
        self.close_item(index, item, prev)


    def mcp(self, index: int, out: McpCall, request: Optional[ResponseRequest]) -> None:
        session = request.session if request is not None else {}
        items = request.items if request is not None else []
        config = _mcp.mcp_tools(session).get(out.server_label)
        approval = _mcp.find_approval(items, out.server_label, out.name)
        if config is not None and approval is None and _mcp.needs_approval(config, out.name):
            request_item: Dict[str, Any] = {
                "id": self.host.new_id("mcpr"), "object": "realtime.item",
                "type": "mcp_approval_request", "server_label": out.server_label,
                "name": out.name, "arguments": out.arguments}
            prev = self.open_item(index, request_item)
            self.close_item(index, request_item, prev, status=False)
            return
        if approval is not None and not approval["approve"]:
            self.message(index, Text(f"The call to {out.name} was not approved."))
            return
        item_id = self.host.new_id("mcp")
        item: Dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "mcp_call",
                                "server_label": out.server_label, "name": out.name,
                                "arguments": "", "approval_request_id":
                                    approval["request_id"] if approval else None,
                                "output": None, "error": None}
        prev = self.open_item(index, item)
        where = {"response_id": self.rid, "item_id": item_id, "output_index": index}
        if not self.pause():
            self.emit("response.mcp_call_arguments.delta", delta=out.arguments, **where)
        self.emit("response.mcp_call_arguments.done", arguments=out.arguments, **where)
        item["arguments"] = out.arguments
        self.emit("response.mcp_call.in_progress", item_id=item_id, output_index=index)
        if config is None:
            item["error"] = {"type": "protocol_error", "code": -32602,
                             "message": f"no MCP server labelled {out.server_label!r}"}
        elif out.error is not None:
            item["error"] = {"type": "tool_execution_error", "message": out.error}
        else:
            item["output"] = out.output
        done = "response.mcp_call.failed" if item["error"] else "response.mcp_call.completed"
        self.emit(done, item_id=item_id, output_index=index)
        self.out_text += len(out.arguments)
        self.close_item(index, item, prev, status=False)


def run_response(host: ResponseHost, response: Dict[str, Any], outputs: Sequence[Output],
                 cancelled: threading.Event, *, in_conversation: bool = True,
                 input_chars: int = 0, input_audio_ms: int = 0, delta_interval: float = 0.0,
                 before_done: Callable[[], str] = lambda: "client_cancelled",
                 request: Optional[ResponseRequest] = None) -> None:
    """Emit the events of one response after ``response.created`` was sent.

    ``response`` is the response object already announced (status ``in_progress``, empty
    ``output``); it is completed in place. ``before_done()`` runs just before
    ``response.done`` is sent and returns the cancellation reason. Runs on the response
    worker thread.
    """
    run = _Run(host, response, cancelled, in_conversation, delta_interval)
    for index, out in enumerate(outputs):
        if cancelled.is_set():
            break
        if isinstance(out, FunctionCall):
            run.function_call(index, out)
        elif isinstance(out, McpCall):
            run.mcp(index, out, request)
        elif isinstance(out, (Text, Audio)):
            run.message(index, out)
        else:
            raise TypeError(f"responder returned {type(out).__name__}, not an Output")
    reason = before_done()
    if cancelled.is_set():
        response["status"] = "cancelled"
        response["status_details"] = {"type": "cancelled", "reason": reason,
                                      "error": None}
    else:
        response["status"] = "completed"
    in_text = _tokens(input_chars)
    in_audio = int(math.ceil(input_audio_ms / 100.0))
    out_text = _tokens(run.out_text)
    out_audio = int(math.ceil(run.out_audio_ms / 50.0))
    response["usage"] = {
        "total_tokens": in_text + in_audio + out_text + out_audio,
        "input_tokens": in_text + in_audio,
        "output_tokens": out_text + out_audio,
        "input_token_details": {
            "text_tokens": in_text, "audio_tokens": in_audio, "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }
    run.emit("response.done", response=copy.deepcopy(response))
    time.sleep(0)  # let the reader see response.done before the rate limits, like OpenAI
    run.emit("rate_limits.updated", rate_limits=[
        {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
        {"name": "tokens", "limit": 40000, "remaining": 40000 - min(
            response["usage"]["total_tokens"], 40000), "reset_seconds": 0.5},
    ])
