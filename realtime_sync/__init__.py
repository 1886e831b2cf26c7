"""realtime_sync: a synchronous, threaded client for the OpenAI Realtime API (GA) over WebSocket.

Live transcription first, voice conversations second, without asyncio::

    import realtime_sync as rs
    with rs.RealtimeClient(intent="transcription") as client:
        ...
"""

from __future__ import annotations

from typing import Any

from ._core.backoff import Backoff
from ._core.options import Keepalive, Proxy
from ._core.transport import CloseCause
from .client import RealtimeClient
from .errors import (
    AudioError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    DeadlockError,
    NotConnectedError,
    RealtimeSyncError,
    ServerError,
    TimeoutError,
)
from .events import Event

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "RealtimeClient",
    "Backoff",
    "Keepalive",
    "Proxy",
    "CloseCause",
    "Event",
    "RealtimeSyncError",
    "ConnectError",
    "AuthenticationError",
    "ConnectionLostError",
    "NotConnectedError",
    "ServerError",
    "TimeoutError",
    "DeadlockError",
    "ConfigurationError",
    "AudioError",
    "Transcriber",
    "Transcript",
    "Segment",
    "transcribe_file",
    "transcribe_files",
    "FileResult",
    "Translator",
    "Translation",
    "Cue",
    "translate_file",
    "LiveSession",
    "LiveSegment",
    "LiveResult",
    "LiveDelegation",
    "Conversation",
    "Response",
    "audio",
    "gui",
    "captions",
    "models",
]

_LAZY = {
    "Transcriber": ("transcription", "Transcriber"),
    "Transcript": ("transcription", "Transcript"),
    "Segment": ("transcription", "Segment"),
    "transcribe_file": ("transcription", "transcribe_file"),
    "transcribe_files": ("batch", "transcribe_files"),
    "FileResult": ("batch", "FileResult"),
    "Translator": ("translation", "Translator"),
    "Translation": ("translation", "Translation"),
    "Cue": ("translation", "Cue"),
    "translate_file": ("translation", "translate_file"),
    "LiveSession": ("live", "LiveSession"),
    "LiveSegment": ("live", "LiveSegment"),
    "LiveResult": ("live", "LiveResult"),
    "LiveDelegation": ("live", "LiveDelegation"),
    "Conversation": ("conversation", "Conversation"),
    "Response": ("conversation", "Response"),
}
_SUBMODULES = {"audio", "gui", "captions", "testing", "server", "transcription", "conversation",
               "models", "translation", "batch", "live"}


def __getattr__(name: str) -> Any:
    """Import the heavier parts on first use, so ``import realtime_sync`` stays light."""
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'realtime_sync' has no attribute {name!r}")
