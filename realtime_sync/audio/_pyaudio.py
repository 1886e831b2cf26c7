"""PyAudio plumbing: lazy import, quiet initialisation, device lookup, error mapping.

PyAudio is optional (the ``audio`` extra). PortAudio's ALSA and JACK back ends print dozens
of lines of C-level noise on stderr while devices are probed; :func:`quiet_stderr` points file
descriptor 2 at /dev/null around those calls (set ``REALTIME_SYNC_AUDIO_DEBUG=1`` to see it).
Every PortAudio ``OSError`` is turned into :class:`~realtime_sync.errors.AudioError` with a
message that says what is wrong with the device and how to list devices.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from ..errors import AudioError

__all__ = ["list_devices", "import_pyaudio", "quiet_stderr", "open_pyaudio", "find_device",
           "abort_stream"]

log = logging.getLogger(__name__)

LIST_HINT = "List devices with `realtime-sync devices` or rs.audio.list_devices()."
EXTRA_HINT = (
    "PyAudio is not installed; install the audio extra: pip install 'realtime-sync[audio]' "
    "(on Linux PortAudio's headers are needed to build it, e.g. apt-get install portaudio19-dev)"
)

# PortAudio error codes (portaudio.h, PaErrorCode)
PA_UNANTICIPATED_HOST_ERROR = -9999
PA_INVALID_CHANNEL_COUNT = -9998
PA_INVALID_SAMPLE_RATE = -9997
PA_INVALID_DEVICE = -9996
PA_SAMPLE_FORMAT_NOT_SUPPORTED = -9994
PA_BAD_STREAM_PTR = -9988
PA_TIMED_OUT = -9987
PA_DEVICE_UNAVAILABLE = -9985
PA_STREAM_IS_STOPPED = -9983
PA_INPUT_OVERFLOWED = -9981

_EXPLAIN = {
    PA_UNANTICIPATED_HOST_ERROR: "the audio system reported an error (device unplugged or "
    "sound server gone?)",
    PA_INVALID_CHANNEL_COUNT: "the device does not support this channel count",
    PA_INVALID_SAMPLE_RATE: "the device does not support this sample rate",
    PA_INVALID_DEVICE: "no such device, or it has no channels in this direction",
    PA_SAMPLE_FORMAT_NOT_SUPPORTED: "the device does not support 16-bit samples",
    PA_BAD_STREAM_PTR: "the stream was closed",
    PA_TIMED_OUT: "the device timed out",
    PA_DEVICE_UNAVAILABLE: "the device is busy or unavailable (used by another program?)",
    PA_STREAM_IS_STOPPED: "the stream is stopped",
}

_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_fd: Optional[int] = None


def import_pyaudio() -> Any:
    """Import and return the ``pyaudio`` module. Any thread.

    Raises:
        AudioError: PyAudio is not installed (the message names the ``audio`` extra).
    """
    try:
        import pyaudio
    except ImportError:
        raise AudioError(EXTRA_HINT) from None
    silence_library_messages()
    return pyaudio


_silenced: List[Any] = []  # the installed no-op handlers (kept alive for the C libraries)


def silence_library_messages() -> None:
    """Route ALSA's and JACK's own error/info messages to nowhere, for the whole process
    (``snd_lib_error_set_handler``, ``jack_set_error_function``): messages such as
    ``ALSA lib pcm.c: underrun occurred`` come from audio threads at any time, which a
    redirection of stderr around a call cannot catch. Once; ``REALTIME_SYNC_AUDIO_DEBUG=1``
    (``--debug``) keeps them. Any thread."""
    if _silenced or os.environ.get("REALTIME_SYNC_AUDIO_DEBUG") or not sys.platform.startswith(
            "linux"):
        return
    import ctypes
    import ctypes.util

    with _quiet_lock:
        if _silenced:
            return
        _silenced.append(True)
        # the handlers are variadic in C; a callback that ignores its arguments is safe
        alsa_handler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                        ctypes.c_int, ctypes.c_char_p)(_ignore)
        jack_handler = ctypes.CFUNCTYPE(None, ctypes.c_char_p)(_ignore)
        for lib_name, setters, handler in (
            ("asound", ("snd_lib_error_set_handler",), alsa_handler),
            ("jack", ("jack_set_error_function", "jack_set_info_function"), jack_handler),
        ):
            path = ctypes.util.find_library(lib_name)
            if not path:
                continue
            try:
                lib = ctypes.CDLL(path)
                for setter in setters:
                    getattr(lib, setter)(handler)
            except (OSError, AttributeError) as exc:
                log.debug("cannot silence %s messages: %s", lib_name, exc)
                continue
            _silenced.append((lib, handler))


def _ignore(*args: Any) -> None:
    """A message of ALSA or JACK: dropped (see :func:`silence_library_messages`)."""


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to file descriptor 2 for the duration of the block.

    Process-wide (it is the file descriptor that is redirected) and re-entrant across threads:
    the first entry redirects, the last exit restores. Python's ``sys.stderr`` is flushed first.
    Any thread.
    """
    global _quiet_depth, _saved_fd
    if os.environ.get("REALTIME_SYNC_AUDIO_DEBUG"):
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                sys.stderr.flush()
            except Exception:
                pass
            try:
                saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, 2)
                finally:
                    os.close(devnull)
                _saved_fd = saved
            except OSError:  # no fd 2 (e.g. pythonw): nothing to silence
                _saved_fd = None
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


def abort_stream(pyaudio: Any, stream: Any) -> bool:
    """Discard what an output ``stream`` still has buffered (PortAudio's ``Pa_AbortStream``,
    which PyAudio does not offer): True when done, False when this PyAudio has no way to
    (then stop the stream instead). The stream is left stopped; restart it. This module is
    the one place that reaches PyAudio's internals.

    Raises:
        OSError: PortAudio refused.
    """
    abort = getattr(getattr(pyaudio, "_portaudio", None), "abort_stream", None)
    if abort is None or getattr(stream, "_stream", None) is None:
        return False
    abort(stream._stream)
    # PyAudio did not see the low-level abort: without this, start_stream() thinks the
    # stream still runs and every later write fails (-9983)
    if hasattr(stream, "_is_running"):
        stream._is_running = False
    return True


def open_pyaudio() -> Any:
    """Create a ``pyaudio.PyAudio`` (initialises PortAudio) with its stderr noise silenced.

    The caller must call ``terminate()`` on it. Any thread.
    """
    pyaudio = import_pyaudio()
    with quiet_stderr():
        try:
            return pyaudio.PyAudio()
        except OSError as exc:
            raise AudioError(f"cannot initialise PortAudio: {describe(exc)}. {LIST_HINT}") from None


def error_code(exc: BaseException) -> Optional[int]:
    """The PortAudio error code carried by a PyAudio ``OSError`` (or ``None``)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    return None


def describe(exc: BaseException) -> str:
    """A human description of a PortAudio error, without the raw error number."""
    code = error_code(exc)
    if code in _EXPLAIN:
        return _EXPLAIN[code]
    text = getattr(exc, "strerror", None) or (exc.args[-1] if exc.args else "") or str(exc)
    return str(text).rstrip(".") or type(exc).__name__


def audio_error(what: str, exc: BaseException) -> AudioError:
    """Map a PortAudio ``OSError`` to an :class:`AudioError` (``.code`` keeps the number)."""
    err = AudioError(f"{what}: {describe(exc)}. {LIST_HINT}")
    err.code = error_code(exc)  # type: ignore[attr-defined]
    return err


def _device_dict(
    info: Dict[str, Any], default_in: Optional[int], default_out: Optional[int]
) -> Dict[str, Any]:
    index = int(info["index"])
    return {
        "index": index,
        "name": str(info["name"]),
        "max_input_channels": int(info["maxInputChannels"]),
        "max_output_channels": int(info["maxOutputChannels"]),
        "default_sample_rate": float(info["defaultSampleRate"]),
        "is_default_input": index == default_in,
        "is_default_output": index == default_out,
    }


def _default_index(pa: Any, kind: str) -> Optional[int]:
    try:
        if kind == "input":
            return int(pa.get_default_input_device_info()["index"])
        return int(pa.get_default_output_device_info()["index"])
    except (OSError, ValueError, KeyError):
        return None


def _devices(pa: Any) -> List[Dict[str, Any]]:
    with quiet_stderr():
        default_in = _default_index(pa, "input")
        default_out = _default_index(pa, "output")
        out = []
        for i in range(pa.get_device_count()):
            try:
                info = pa.get_device_info_by_index(i)
            except OSError:
                continue
            out.append(_device_dict(info, default_in, default_out))
    return out


def list_devices() -> List[Dict[str, Any]]:
    """The audio devices PortAudio sees; ``[]`` when there are none.

    Each entry: ``index``, ``name``, ``max_input_channels``, ``max_output_channels``,
    ``default_sample_rate``, ``is_default_input``, ``is_default_output``. Any thread.

    Raises:
        AudioError: PyAudio is not installed (the message names the ``audio`` extra).
    """
    pa = open_pyaudio()
    try:
        return _devices(pa)
    finally:
        with quiet_stderr():
            pa.terminate()


def find_device(pa: Any, device: Union[int, str, None], kind: str) -> Dict[str, Any]:
    """Resolve ``device`` (``None`` = default, an index, or a case-insensitive name substring)
    to a device dict (as in :func:`list_devices`) usable for ``kind`` ("input" or "output").

    Raises:
        AudioError: no such device, or it has no channels in that direction.
    """
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    noun = "input" if kind == "input" else "output"
    devices = _devices(pa)
    usable = [d for d in devices if d[key] > 0]
    if device is None:
        for d in devices:
            if d[f"is_default_{kind}"] and d[key] > 0:
                return d
        if usable:  # no default configured: the first device that can do it
            return usable[0]
        raise AudioError(f"No {noun} device found. {LIST_HINT}")
    if isinstance(device, bool) or not isinstance(device, (int, str)):
        raise TypeError("device must be None, an int index or a name substring")
    if isinstance(device, int):
        for d in devices:
            if d["index"] == device:
                if d[key] <= 0:
                    raise AudioError(
                        f"Audio device {device} ({d['name']!r}) has no {noun} channels. {LIST_HINT}"
                    )
                return d
        raise AudioError(f"No audio device with index {device}. {LIST_HINT}")
    needle = device.casefold()
    exact = [d for d in usable if d["name"].casefold() == needle]
    matches = exact or [d for d in usable if needle in d["name"].casefold()]
    if not matches:
        names = ", ".join(repr(d["name"]) for d in usable) or "none"
        raise AudioError(
            f"No {noun} device matches {device!r} ({noun} devices: {names}). {LIST_HINT}"
        )
    if len(matches) > 1:
        log.info(
            "%r matches %d %s devices; using %r", device, len(matches), noun, matches[0]["name"]
        )
    return matches[0]


def open_device(device: Union[int, str, None], kind: str,
                block_ms: int) -> Tuple[Any, Any, Dict[str, Any], Any, int, int]:
    """Open PyAudio and a ``kind`` ("input"/"output") stream on ``device`` (see
    :func:`find_device`, :func:`open_stream`); PyAudio is terminated again when that fails.

    Returns:
        (the pyaudio module, the PyAudio instance, the device info, stream, rate, channels).

    Raises:
        AudioError: no such device, or it cannot be opened.
    """
    pyaudio = import_pyaudio()
    pa = open_pyaudio()
    try:
        info = find_device(pa, device, kind)
        stream, rate, channels = open_stream(pyaudio, pa, info, kind, block_ms)
    except BaseException:
        with quiet_stderr():
            pa.terminate()
        raise
    return pyaudio, pa, info, stream, rate, channels


def release_device(stream: Any, pa: Any, conv: Any, close_after_failed_stop: bool = True) -> None:
    """Stop and close ``stream`` (None: none), close the resampler ``conv`` now (not at
    interpreter exit) and terminate ``pa``; the device's ``OSError`` is ignored. With
    ``close_after_failed_stop=False`` a stream whose stop failed is not closed either."""
    if conv is not None:
        conv.close()
    with quiet_stderr():
        if stream is not None:
            try:
                stream.stop_stream()
            except OSError:
                if not close_after_failed_stop:
                    stream = None
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if pa is not None:
            pa.terminate()


def open_stream(pyaudio: Any, pa: Any, info: Dict[str, Any], kind: str,
                block_ms: int) -> Any:
    """Open a 16-bit ``kind`` ("input"/"output") stream on device ``info``: at 24 kHz mono,
    else at the device's native rate (mono, then up to stereo) for the caller to convert.

    Returns:
        (stream, rate, channels).

    Raises:
        AudioError: the device refuses every format, or fails for another reason.
    """
    native = int(round(info["default_sample_rate"])) or 24000
    max_ch = max(1, int(info[f"max_{kind}_channels"]))
    last: Optional[BaseException] = None
    tried = set()
    for rate, channels in ((24000, 1), (native, 1), (native, min(2, max_ch))):
        if (rate, channels) in tried:
            continue
        tried.add((rate, channels))
        try:
            with quiet_stderr():
                stream = pa.open(
                    format=pyaudio.paInt16, channels=channels, rate=rate,
                    frames_per_buffer=max(1, rate * block_ms // 1000),
                    **{kind: True, f"{kind}_device_index": info["index"]},
                )
            return stream, rate, channels
        except (OSError, ValueError) as exc:
            last = exc
            if error_code(exc) not in (PA_INVALID_SAMPLE_RATE, PA_INVALID_CHANNEL_COUNT):
                break
            log.debug("%s %r refused %d Hz/%d ch: %s", kind, info["name"], rate, channels, exc)
    assert last is not None
    if error_code(last) == PA_SAMPLE_FORMAT_NOT_SUPPORTED:
        action = "record" if kind == "input" else "play"
        raise audio_error(f"{kind.capitalize()} device {info['name']!r} cannot {action} "
                          "16-bit audio", last)
    raise audio_error(f"Cannot open {kind} device {info['name']!r}", last)

