"""Audio files for a live session: which wire format a WAV file is sent in, and its source.

A mono 8 kHz G.711 WAV (μ-law/A-law) is sent as it is; everything else is read as PCM16
24 kHz (:class:`realtime_sync.audio.FileSource`).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Union

from ..errors import ConfigurationError

__all__ = ["open_audio", "wav_format"]


def wav_format(path: Union[str, os.PathLike], options: Dict[str, Any]) -> str:
    """The ``audio_format`` a WAV file is sent in (set in ``options``): G.711 files as they
    are, PCM files as PCM16 24 kHz.

    Raises:
        ConfigurationError: ``options["audio_format"]`` does not fit the file.
    """
    from ..audio._g711 import FORMATS, sniff_wav

    wanted = options.get("audio_format", "pcm")
    g711 = sniff_wav(path)
    if g711 is not None:
        if wanted not in ("pcm", g711):
            raise ConfigurationError(f"{path} holds {g711!r} (G.711) audio, not {wanted!r}")
        options["audio_format"] = g711
    elif wanted in FORMATS and wanted != "pcm":
        raise ConfigurationError(
            f"audio_format={wanted!r} needs a G.711 WAV file; {path} is PCM (omit audio_format "
            "to send it as PCM16 24 kHz, or convert it, e.g. `sox in.wav -e u-law -r 8000 "
            "out.wav`)")
    return str(options.get("audio_format", "pcm"))


def open_audio(path: Union[str, os.PathLike], realtime: bool, chunk_ms: int,
               options: Dict[str, Any]) -> Any:
    """The file's source and the frames per read (``options["audio_format"]`` set as by
    :func:`wav_format`)."""
    from ..audio import FileSource
    from ..audio._g711 import G711Wav

    if wav_format(path, options) != "pcm":
        try:
            return G711Wav(path, realtime=realtime), 8 * chunk_ms
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    return FileSource(str(path), realtime=realtime), 24 * chunk_ms
