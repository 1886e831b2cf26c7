"""Audio for realtime_sync: sources, microphone, speaker, streaming into a client.

Wire format everywhere: 24 kHz mono PCM16 little-endian.

    from realtime_sync import audio
    with audio.FileSource("speech.mp3", realtime=True) as src:   # WAV, MP3, M4A, video, ...
        handle = audio.stream(client, src)        # thread "realtime-sync-audio"
        handle.join()

    mic = audio.Microphone()                      # PyAudio (the ``audio`` extra)
    handle = audio.stream(client, mic)

    speaker = audio.Speaker().attach(client)      # plays response.output_audio.delta

Importing this package needs neither PyAudio nor numpy nor soxr: they are imported when a
microphone/speaker is opened or a format conversion is needed, and a missing one raises
:class:`realtime_sync.AudioError` naming the ``audio`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:  # pragma: no cover
    from ._convert import StreamConverter, convert, resample
    from ._microphone import Microphone
    from ._pyaudio import list_devices
    from ._source import AudioSource, BytesSource, FileSource, WavSource
    from ._speaker import Speaker
    from ._stream import AudioStream, stream

__all__ = [
    "AudioSource",
    "FileSource",
    "WavSource",
    "BytesSource",
    "Microphone",
    "Speaker",
    "list_devices",
    "stream",
    "AudioStream",
    "resample",
    "convert",
    "StreamConverter",
]

_WHERE: Dict[str, str] = {
    "AudioSource": "_source",
    "FileSource": "_source",
    "WavSource": "_source",
    "BytesSource": "_source",
    "Microphone": "_microphone",
    "Speaker": "_speaker",
    "list_devices": "_pyaudio",
    "stream": "_stream",
    "AudioStream": "_stream",
    "resample": "_convert",
    "convert": "_convert",
    "StreamConverter": "_convert",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
