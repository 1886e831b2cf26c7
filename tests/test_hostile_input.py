"""Hostile inputs on the client side (issue 20: items 9-13 and 15).

Every test makes its own bad input or runs its own small hostile server: a FIFO, an MP3 with
garbage spliced in, a frame holding a lone surrogate, 160k deltas, an absurd ``elapsed_ms``,
a keep-alive clock under load.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict

import pytest

import realtime_sync as rs
from realtime_sync.cli import main as cli_main

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-0123456789abcdefSECRET"
NOWHERE = "ws://127.0.0.1:9/v1/realtime"  # never connected to: the input fails first


def _outcome_unblocking(fifo: os.PathLike, call: Callable[[], Any]) -> Dict[str, Any]:
    """Run ``call`` on a thread; what it returned or raised. A call still blocked after 10 s
    (a deadlock guard, not a timing) is released by a writer opening the FIFO, and the test
    fails."""
    out: Dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            out["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        for _ in range(20):  # let every blocked open() of the FIFO see a writer, then EOF
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                break
        worker.join(10)
        pytest.fail("reading a FIFO blocked")
    return out


def test_transcribe_file_refuses_a_fifo_with_a_clear_error(tmp_path):
    fifo = tmp_path / "input.wav"
    os.mkfifo(fifo)
    out = _outcome_unblocking(fifo, lambda: rs.transcribe_file(fifo, url=NOWHERE, api_key=KEY))
    assert isinstance(out.get("error"), rs.AudioError)
    assert "not a regular file" in str(out["error"]) and str(fifo) in str(out["error"])


def test_the_cli_refuses_a_fifo_with_exit_code_1(tmp_path, capsys):
    fifo = tmp_path / "input.mp3"
    os.mkfifo(fifo)
    out = _outcome_unblocking(fifo, lambda: cli_main(
        ["transcribe", str(fifo), "--url", NOWHERE, "--api-key", KEY]))
    assert out.get("result") == 1
    assert "not a regular file" in capsys.readouterr().err


def test_a_batch_reports_a_fifo_as_that_files_error_and_goes_on(tmp_path):
    fifo = tmp_path / "input.wav"
    os.mkfifo(fifo)
    out = _outcome_unblocking(fifo, lambda: rs.transcribe_files([fifo], url=NOWHERE,
                                                                 api_key=KEY))
    [result] = out["result"]
    assert isinstance(result.error, rs.AudioError) and "not a regular file" in str(result.error)


# -- item 11: a corrupt stretch in an MP3 ------------------------------------------------------

SPEECH = os.path.join(os.path.dirname(__file__), "data", "speech", "fox_24k_mono16.wav")


def _mp3_of_speech(seconds: float) -> bytes:
    """``seconds`` of espeak-ng speech (the fox sentence, repeated) as an MP3 made by PyAV."""
    av = pytest.importorskip("av")
    import io
    import wave

    import numpy as np

    with wave.open(SPEECH) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    pcm = np.tile(pcm, int(seconds * rate / len(pcm)) + 1)[: int(seconds * rate)]
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        for i in range(0, len(pcm), 1152):
            frame = av.AudioFrame.from_ndarray(pcm[None, i:i + 1152], format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


@pytest.fixture(scope="module")
def corrupt_mp3(tmp_path_factory):
    """A 12 s MP3 of speech with 30 kB of random bytes spliced into its middle."""
    import random

    clean = _mp3_of_speech(12.0)
    garbage = random.Random(20).randbytes(30_000) if hasattr(random.Random, "randbytes") \
        else bytes(random.Random(20).getrandbits(8) for _ in range(30_000))
    folder = tmp_path_factory.mktemp("mp3")
    (folder / "clean.mp3").write_bytes(clean)
    path = folder / "corrupt.mp3"
    middle = len(clean) // 2
    path.write_bytes(clean[:middle] + garbage + clean[middle:])
    return path


def _read_all(source) -> int:
    total = 0
    while True:
        chunk = source.read(2400)
        if not chunk:
            return total
        total += len(chunk)


def test_a_corrupt_stretch_in_an_mp3_is_skipped_counted_and_warned_once(corrupt_mp3, caplog):
    from realtime_sync.audio import FileSource

    with FileSource(corrupt_mp3.parent / "clean.mp3") as clean:
        clean_ms = _read_all(clean) // 48
    with caplog.at_level("WARNING", logger="realtime_sync.audio"), \
            FileSource(corrupt_mp3) as source:
        got_ms = _read_all(source) // 48
        dropped = source.dropped_ms
    assert 0 < dropped < 2000  # a few undecodable packets, not the rest of the file
    # every good packet is kept, and the skipped ones became silence of their length
    assert clean_ms - 100 <= got_ms <= clean_ms + dropped + 100
    warnings = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(warnings) == 1 and str(corrupt_mp3) in warnings[0]
    assert f"skipped {dropped} ms" in warnings[0]


def test_transcribe_file_transcribes_both_sides_of_a_corrupt_stretch(corrupt_mp3):
    from realtime_sync.testing import FakeRealtimeServer

    with FakeRealtimeServer() as fake:  # its recogniser says how much audio each turn had
        transcript = rs.transcribe_file(corrupt_mp3, url=fake.url, api_key="sk-local",
                                        turn_detection=None, timeout=30)
    [segment] = transcript.segments
    assert segment.error is None
    assert int(segment.text.split()[0]) >= 11_900  # the whole 12 s, not the first half


def test_an_mp3_corrupt_all_over_is_read_with_a_bounded_number_of_warnings(corrupt_mp3,
                                                                         tmp_path, caplog):
    import random

    import av

    from realtime_sync.audio import FileSource

    clean = corrupt_mp3.parent / "clean.mp3"
    data = bytearray(clean.read_bytes())
    rnd = random.Random(7)
    with av.open(str(clean)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.audio[0])
                   if p.size and p.pos is not None and p.pos >= 0]
    for pos, size in packets[::3]:  # every third packet's payload, its header kept
        data[pos + 4:pos + size] = bytes(rnd.getrandbits(8) for _ in range(size - 4))
    path = tmp_path / "pocked.mp3"
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="realtime_sync.audio"), FileSource(path) as source:
        _read_all(source)
        dropped = source.dropped_ms
    warnings = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert dropped > 0 and len(warnings) <= 6
    assert f"skipped {dropped} ms of undecodable audio in all" in warnings[-1]
