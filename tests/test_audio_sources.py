"""Audio sources: WavSource (any WAV → 24 kHz mono PCM16), BytesSource, pacing."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from realtime_sync.audio import AudioSource, BytesSource, WavSource, convert
from realtime_sync.errors import AudioError

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech"
FOX = SPEECH / "fox_24k_mono16.wav"  # 24 kHz mono 16-bit
ONE_TWO_THREE = SPEECH / "one_two_three_22k.wav"  # 22050 Hz mono 16-bit (espeak-ng native)


def wav_frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def write_wav(path: Path, data: bytes, rate: int, channels: int, width: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def read_all(src: AudioSource, frames: int = 1200) -> bytes:
    parts = []
    while True:
        chunk = src.read(frames)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def to_width(x16: np.ndarray, width: int) -> bytes:
    x = x16.astype(np.int64)
    if width == 1:
        return ((x >> 8) + 128).astype(np.uint8).tobytes()
    if width == 3:
        v = (x << 8) & 0xFFFFFF
        return np.stack([v & 0xFF, (v >> 8) & 0xFF, v >> 16], axis=1).astype(np.uint8).tobytes()
    if width == 4:
        return (x << 16).astype("<i4").tobytes()
    return x.astype("<i2").tobytes()


def test_wire_format_wav_is_read_byte_for_byte_in_exact_chunks():
    expected = wav_frames(FOX)
    with WavSource(FOX) as src:
        assert isinstance(src, AudioSource)
        sizes = []
        parts = []
        while True:
            chunk = src.read(1000)
            if not chunk:
                break
            sizes.append(len(chunk))
            parts.append(chunk)
        assert src.read(1000) == b""
    assert b"".join(parts) == expected
    assert all(s == 2000 for s in sizes[:-1]) and 0 < sizes[-1] <= 2000
    assert src.duration == pytest.approx(len(expected) / 2 / 24000)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [16000, 24000, 44100, 48000])
def test_any_integer_pcm_wav_is_converted_like_one_shot_conversion(tmp_path, rate, channels, width):
    speech = np.frombuffer(wav_frames(FOX), dtype="<i2")[:24000]
    stereo = np.repeat(speech[:, None], channels, axis=1).reshape(-1)
    data = to_width(stereo, width)
    path = write_wav(tmp_path / "in.wav", data, rate, channels, width)
    with WavSource(path) as src:
        assert (src.source_rate, src.source_channels, src.source_sample_width) == (
            rate,
            channels,
            width,
        )
        got = read_all(src, 777)
    want = convert(data, rate=rate, channels=channels, sample_width=width)
    assert got == want
    assert len(got) // 2 == (2 * 24000 * 24000 + rate) // (2 * rate)
    if rate == 24000 and width >= 2:
        assert got == speech.astype("<i2").tobytes()  # mixing identical channels is lossless


def test_espeak_native_rate_file_is_resampled_to_24k():
    with WavSource(ONE_TWO_THREE) as src:
        got = np.frombuffer(read_all(src), dtype="<i2").astype(np.float64)
    src_pcm = np.frombuffer(wav_frames(ONE_TWO_THREE), dtype="<i2").astype(np.float64)
    assert len(got) == (2 * len(src_pcm) * 24000 + 22050) // (2 * 22050)
    rms_in, rms_out = np.sqrt(np.mean(src_pcm**2)), np.sqrt(np.mean(got**2))
    assert rms_out == pytest.approx(rms_in, rel=0.02)


def test_bytes_source_returns_its_bytes_and_drops_an_odd_byte():
    data = bytes(range(200)) * 13 + b"\x07"
    with BytesSource(data) as src:
        assert read_all(src, 50) == data[:-1]


def test_realtime_pacing_never_runs_ahead_of_the_clock():
    src = BytesSource(b"\0\0" * 7200, realtime=True)  # 300 ms
    start = time.monotonic()
    got = 0
    while True:
        chunk = src.read(1200)  # 50 ms
        if not chunk:
            break
        got += len(chunk) // 2
        # a microphone cannot deliver audio before it has been captured
        assert time.monotonic() - start >= got / 24000 - 0.002
    assert got == 7200
    assert src.position_ms == pytest.approx(300.0)


def test_close_wakes_a_paced_read_in_another_thread():
    src = BytesSource(b"\0\0" * 24000 * 60, realtime=True)
    results = []
    t = threading.Thread(target=lambda: results.append(src.read(24000 * 30)))
    t.start()
    time.sleep(0.05)
    src.close()
    t.join(timeout=10)
    assert not t.is_alive()
    assert results == [b""]
    assert src.read(10) == b""


def test_wav_source_close_is_idempotent_and_reads_nothing_after():
    src = WavSource(FOX)
    assert src.read(10)
    src.close()
    src.close()
    assert src.closed
    assert src.read(10) == b""


def test_missing_file_and_non_wav_raise_audio_error(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        WavSource(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not a wav file at all")
    with pytest.raises(AudioError, match="WAV"):
        WavSource(bad)


def test_float_wav_is_decoded_with_pyav(tmp_path):
    pytest.importorskip("av")
    samples = np.full(2400, 0.25, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 24000, 24000 * 4, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(samples)) + samples
    path = tmp_path / "float.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with WavSource(path) as src:
        pcm = np.frombuffer(src.read(10**6), dtype="<i2")
    assert len(pcm) == 2400 and abs(int(pcm[1200]) - 8192) <= 1


def test_read_rejects_non_positive_frame_counts():
    with BytesSource(b"\0\0" * 10) as src, pytest.raises(ValueError):
        src.read(0)


def _run_without(modules: str, code: str) -> subprocess.CompletedProcess:
    prelude = f"import sys\nfor m in {modules.split()!r}:\n    sys.modules[m] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_package_imports_and_wire_wav_works_without_numpy_soxr_pyaudio():
    code = f"""
    import realtime_sync.audio as audio
    src = audio.WavSource({str(FOX)!r})
    data = b""
    while True:
        chunk = src.read(4800)
        if not chunk:
            break
        data += chunk
    import wave
    with wave.open({str(FOX)!r}) as w:
        assert data == w.readframes(w.getnframes())
    try:
        audio.WavSource({str(ONE_TWO_THREE)!r})
    except Exception as exc:
        print("ERR", type(exc).__name__, exc)
    try:
        audio.Microphone()
    except Exception as exc:
        print("MIC", type(exc).__name__, exc)
    """
    proc = _run_without("numpy soxr pyaudio", code)
    assert proc.returncode == 0, proc.stderr
    assert "ERR AudioError" in proc.stdout and "pip install 'realtime-sync[audio]'" in proc.stdout
    assert "MIC AudioError" in proc.stdout and "realtime-sync[audio]" in proc.stdout


def test_importing_the_audio_package_loads_no_heavy_module():
    code = """
    import sys
    import realtime_sync.audio as audio
    audio.WavSource, audio.stream, audio.AudioStream, audio.Speaker, audio.Microphone
    heavy = [m for m in ("numpy", "soxr", "pyaudio", "websockets") if m in sys.modules]
    print("HEAVY", heavy)
    """
    proc = _run_without("", code)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_24_bit_extensible_wavs_from_sox_are_read_on_every_python():
    """sox and ffmpeg write WAVE_FORMAT_EXTENSIBLE headers for 24/32-bit PCM; the wave module
    of Python < 3.12 refuses them, WavSource reads them."""
    pytest.importorskip("soxr")
    path = SPEECH / "tone_24bit_48k_stereo_extensible.wav"
    with WavSource(path) as src:
        assert (src.source_rate, src.source_channels, src.source_sample_width) == (48000, 2, 3)
        pcm = b""
        while True:
            chunk = src.read(4800)
            if not chunk:
                break
            pcm += chunk
    assert len(pcm) == 4800 * 2  # 0.2 s at 24 kHz
