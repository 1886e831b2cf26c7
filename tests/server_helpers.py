"""Helpers for the local-server tests: a plain websocket-client peer and synthetic audio.

The server tests drive the server with ``websocket.create_connection`` (websocket-client),
not with the library's client, so they specify the server on its own.
"""

from __future__ import annotations

import array
import base64
import json
import math
import random
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import websocket

KEY = "sk-local"


def pcm(samples: List[int]) -> bytes:
    """PCM16 little-endian bytes from sample values."""
    arr = array.array("h", samples)
    if sys.byteorder == "big":
        arr.byteswap()
    return arr.tobytes()


def tone(ms: int, freq: float = 440.0, amplitude: float = 0.3) -> bytes:
    """A sine tone, PCM16 mono 24 kHz (well above the default VAD threshold)."""
    amp = 32767 * amplitude
    return pcm([int(amp * math.sin(2 * math.pi * freq * i / 24000)) for i in range(24 * ms)])


def noise(ms: int, amplitude: float = 0.2, seed: int = 1) -> bytes:
    """A uniform noise burst, PCM16 mono 24 kHz."""
    rnd = random.Random(seed)
    amp = int(32767 * amplitude)
    return pcm([rnd.randint(-amp, amp) for _ in range(24 * ms)])


def silence(ms: int) -> bytes:
    """Digital silence, PCM16 mono 24 kHz."""
    return bytes(48 * ms)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Peer:
    """A websocket-client connection speaking JSON events, with a log of what it received."""

    def __init__(self, url: str, *, intent: Optional[str] = "transcription",
                 model: Optional[str] = None, key: Optional[str] = KEY,
                 headers: Optional[List[str]] = None, timeout: float = 5.0) -> None:
        query = []
        if intent:
            query.append(f"intent={intent}")
        if model:
            query.append(f"model={model}")
        full = url + ("?" + "&".join(query) if query else "")
        hdrs = list(headers or [])
        if key is not None:
            hdrs.append(f"Authorization: Bearer {key}")
        self.ws = websocket.create_connection(full, header=hdrs, timeout=timeout)
        self.events: List[Dict[str, Any]] = []
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None

    def send(self, event: Dict[str, Any]) -> None:
        self.ws.send(json.dumps(event))

    def append(self, audio: bytes, chunk_ms: int = 100) -> None:
        step = 48 * chunk_ms
        for i in range(0, len(audio), step):
            self.send({"type": "input_audio_buffer.append", "audio": b64(audio[i:i + step])})

    def recv(self, timeout: float = 5.0) -> Optional[Dict[str, Any]]:
        """Next event; None when the socket closed (close code kept in ``close_code``).

        Raises ``websocket.WebSocketTimeoutException`` on timeout.
        """
        self.ws.settimeout(timeout)
        opcode, data = self.ws.recv_data(control_frame=False)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            if len(data) >= 2:
                self.close_code = int.from_bytes(data[:2], "big")
                self.close_reason = data[2:].decode("utf-8", "replace")
            else:
                self.close_code = 1005
            self.ws.shutdown()  # like a real client: close the TCP connection after the close
            return None
        event = json.loads(data)
        self.events.append(event)
        return event  # type: ignore[no-any-return]

    def until(self, type_: str, timeout: float = 5.0,
              where: Optional[Callable[[Dict[str, Any]], bool]] = None
              ) -> List[Dict[str, Any]]:
        """Receive events up to and including the first ``type_`` (matching ``where``)."""
        deadline = time.monotonic() + timeout
        got: List[Dict[str, Any]] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {type_} within {timeout} s; got "
                                     f"{[e['type'] for e in got]}")
            event = self.recv(remaining)
            if event is None:
                raise AssertionError(f"socket closed ({self.close_code}) before {type_}; got "
                                     f"{[e['type'] for e in got]}")
            got.append(event)
            if event["type"] == type_ and (where is None or where(event)):
                return got

    def expect(self, type_: str, timeout: float = 5.0) -> Dict[str, Any]:
        """The next event, which must be of ``type_``."""
        event = self.recv(timeout)
        assert event is not None, f"socket closed ({self.close_code}), wanted {type_}"
        assert event["type"] == type_, event
        return event

    def until_closed(self, timeout: float = 5.0) -> List[Dict[str, Any]]:
        """Receive events until the server's close frame; return them."""
        deadline = time.monotonic() + timeout
        got: List[Dict[str, Any]] = []
        while True:
            event = self.recv(max(deadline - time.monotonic(), 0.01))
            if event is None:
                return got
            got.append(event)

    def quiet(self, seconds: float) -> List[Dict[str, Any]]:
        """Collect whatever arrives within ``seconds`` (nothing is an acceptable answer)."""
        deadline = time.monotonic() + seconds
        got: List[Dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                event = self.recv(max(deadline - time.monotonic(), 0.01))
            except websocket.WebSocketTimeoutException:
                break
            if event is None:
                break
            got.append(event)
        return got

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


def configure(peer: Peer, model: str = "gpt-transcribe", turn_detection: Any = None,
              **extra: Any) -> Dict[str, Any]:
    """Turn transcription on (VAD off unless given) and return ``session.updated``."""
    session: Dict[str, Any] = {"type": "transcription", "audio": {"input": {
        "transcription": {"model": model}, "turn_detection": turn_detection}}}
    session.update(extra)
    peer.send({"type": "session.update", "session": session})
    return peer.expect("session.updated")


def types(events: List[Dict[str, Any]]) -> List[str]:
    return [e["type"] for e in events]
