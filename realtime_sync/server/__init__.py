"""A local server speaking the OpenAI Realtime GA protocol: the test double and offline engine.

Needs the ``websockets`` package (extra ``realtime_sync[server]``); ``import realtime_sync``
alone never imports it.

    from realtime_sync.server import RealtimeServer, ScriptedRecognizer
    with RealtimeServer(recognizer=ScriptedRecognizer(["hello world"])) as srv:
        print(srv.url)   # ws://127.0.0.1:<port>/v1/realtime
"""

from __future__ import annotations

try:
    import websockets  # noqa: F401
except ImportError:  # one line naming the extra, not a traceback deep in the server
    from .._core.extras import MissingDependencyError

    raise MissingDependencyError(
        "websockets", "the local server (realtime_sync.server, --local, serve)") from None

from ._config import SessionError, apply_update, default_session
from ._engine import SileroVad, WhisperRecognizer, local_engine
from ._live import LiveScript, LiveServerSession
from ._recognizer import (
    Recognizer,
    ScriptedRecognizer,
    StreamingRecognizer,
    TranscriptionError,
    describe_audio,
    split_words,
)
from ._responses import (
    Audio,
    EchoResponder,
    FunctionCall,
    McpCall,
    Output,
    Responder,
    ResponseRequest,
    ScriptedResponder,
    Text,
    tone,
)
from ._server import Connection, RealtimeServer
from ._session import Session, expiry_message
from ._translation import (
    ScriptedTranslator,
    TranslationEngine,
    TranslationSession,
    TranslationStream,
    WhisperTranslator,
    local_translator,
    offline_translator,
)
from ._vad import EnergyVad, Vad, default_vad_factory

__all__ = [
    "RealtimeServer",
    "local_engine",
    "WhisperRecognizer",
    "SileroVad",
    "Connection",
    "Session",
    "Recognizer",
    "StreamingRecognizer",
    "ScriptedRecognizer",
    "TranscriptionError",
    "Vad",
    "EnergyVad",
    "default_vad_factory",
    "Responder",
    "ScriptedResponder",
    "EchoResponder",
    "ResponseRequest",
    "Text",
    "Audio",
    "FunctionCall",
    "McpCall",
    "Output",
    "SessionError",
    "apply_update",
    "default_session",
    "describe_audio",
    "split_words",
    "expiry_message",
    "tone",
    "ScriptedTranslator",
    "TranslationEngine",
    "TranslationStream",
    "TranslationSession",
    "WhisperTranslator",
    "local_translator",
    "offline_translator",
    "LiveScript",
    "LiveServerSession",
]
