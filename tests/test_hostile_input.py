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


# -- item 9: a frame that does not parse --------------------------------------------------------

@pytest.fixture(params=["orjson", "stdlib"])
def json_backend(request, monkeypatch):
    """Run the test with each JSON backend the client may have."""
    from realtime_sync._core import json_codec

    if request.param == "orjson":
        orjson = pytest.importorskip("orjson")
        monkeypatch.setattr(json_codec, "_loads", orjson.loads)
    else:
        monkeypatch.setattr(json_codec, "_loads", json_codec._stdlib_loads)
    return request.param


LONE_SURROGATE = '"I \\ud800 you"'  # valid JSON text, but not Unicode: orjson refuses it


def _transcription_server(bad_turn: int, turns: int):
    """A server that commits every commit and completes each turn at once; turn ``bad_turn``
    (1-based) gets a ``completed`` frame whose transcript holds a lone surrogate."""
    from tests.hostile import HostileServer, answer_update, created, send

    def script(ws, n, server):
        created(ws, "sess_1", "transcription")
        answer_update(server, ws)
        for i in range(1, turns + 1):
            server.until(ws, "input_audio_buffer.commit")
            send(ws, {"type": "input_audio_buffer.committed", "event_id": f"c{i}",
                      "item_id": f"item_{i}", "previous_item_id": f"item_{i - 1}" if i > 1
                      else None})
            if i == bad_turn:
                ws.send('{"type":"conversation.item.input_audio_transcription.completed",'
                        f'"event_id":"t{i}","item_id":"item_{i}","content_index":0,'
                        f'"transcript":{LONE_SURROGATE}}}')
            else:
                send(ws, {"type": "conversation.item.input_audio_transcription.completed",
                          "event_id": f"t{i}", "item_id": f"item_{i}", "content_index": 0,
                          "transcript": f"turn {i}"})
        server.absorb(ws)

    return HostileServer(script)


def test_an_unparsable_completed_fails_its_turn_and_later_turns_flow(json_backend, caplog):
    errors = []
    with _transcription_server(bad_turn=2, turns=3) as srv:
        tr = rs.Transcriber(turn_detection=None, url=srv.url, api_key=KEY)
        tr.on("client.protocol_error", errors.append)
        with tr:
            for _ in range(3):
                tr.feed(bytes(48 * 200))
                tr.commit()
            transcript = tr.finish(timeout=20)
            stats = tr.client.stats()
    assert [s.item_id for s in transcript.segments] == ["item_1", "item_2", "item_3"]
    assert [s.text for s in transcript.segments] == ["turn 1", "", "turn 3"]
    failed = transcript.segments[1]
    assert failed.final and failed.error["code"] == "unparsable_event"
    assert stats["protocol_errors"] == 1 and len(errors) == 1
    assert errors[0]["item_id"] == "item_2"
    assert errors[0]["event_type"] == "conversation.item.input_audio_transcription.completed"
    assert "Traceback" not in caplog.text


def test_the_cli_does_not_hang_on_an_unparsable_completed(json_backend, tmp_path, capsys):
    srt = tmp_path / "out.srt"
    with _transcription_server(bad_turn=1, turns=1) as srv:
        out = _in_thread(lambda: cli_main(
            ["transcribe", SPEECH, "--url", srv.url, "--api-key", KEY, "--no-vad",
             "-o", str(srt)]))
    assert out.get("result") == 1, out  # it ended, and says a turn failed
    srt.read_text(encoding="utf-8")  # written, valid UTF-8 (the failed turn has no cue)
    err = capsys.readouterr().err
    assert "1 of 1 turns failed" in err and "could not be read" in err


def _in_thread(call: Callable[[], Any], guard: float = 30) -> Dict[str, Any]:
    out: Dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            out["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(guard)  # a deadlock guard, not a timing
    if worker.is_alive():
        pytest.fail("the call hung")
    return out


BAD_FRAMES = [
    '{"type":"x.deep","v":' + "[" * 100_000 + "]" * 100_000 + "}",  # 100,000 levels deep
    '{"type":"x.nan","v":NaN}',
    '{"type":"x.lone","v":"\\udfff"}',
]


def test_frames_both_parsers_refuse_are_each_counted_and_the_session_goes_on(json_backend,
                                                                            caplog):
    from tests.hostile import HostileServer, created, send

    def script(ws, n, server):
        created(ws, "sess_1")
        for frame in BAD_FRAMES:
            ws.send(frame)
        # a text frame holding an encoded surrogate: not UTF-8
        ws.send(b'{"type":"x.utf8","v":"\xed\xa0\x80"}', text=True)
        send(ws, {"type": "x.after", "event_id": "ok"})
        server.absorb(ws)

    errors = []
    with HostileServer(script) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY)
        client.on("client.protocol_error", errors.append)  # before any frame can come
        with client:
            client.wait_for("x.after", timeout=10)
            assert client.flush(5)
            count = client.stats()["protocol_errors"]
    assert count == len(errors) == 4
    assert [e.get("event_type") for e in errors] == ["x.deep", "x.nan", "x.lone", "x.utf8"]
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


def test_orjson_and_the_stdlib_parser_accept_and_refuse_the_same_frames():
    orjson = pytest.importorskip("orjson")
    from realtime_sync._core import json_codec

    frames = [f.encode() for f in BAD_FRAMES] + [
        b'{"a":"\xed\xa0\x80"}', b'\xef\xbb\xbf{"a":1}', b'{"a":-Infinity}', b'{"a":1}\x00',
        b'{"\\ud800":1}', b'[' * 2000 + b']' * 2000, b'{"a":"\\ud83d\\ude00"}',
        b'{"a":"\\\\ud800"}', b' {"a": [1, 2.5, "x", null, true]} ', b'[' * 500 + b']' * 500,
        b'{"a":"\\u0000\\n\xc3\xa9"}', b'"\\ud800"', b'{"a":"\x01"}',
    ]

    def outcome(loads, frame):
        try:
            return ("ok", loads(frame))
        except ValueError:
            return ("refused", None)

    for frame in frames:
        saved = json_codec._loads
        try:
            json_codec._loads = orjson.loads
            with_orjson = outcome(json_codec.loads, frame)
            json_codec._loads = json_codec._stdlib_loads
            with_stdlib = outcome(json_codec.loads, frame)
        finally:
            json_codec._loads = saved
        assert with_orjson == with_stdlib, frame[:40]


# -- items 12, 13, 15: a hostile translation server ---------------------------------------------

def _translation_server(script_after_update):
    """A translation server: session.created, session.updated, then the test's script."""
    from tests.hostile import HostileServer, answer_update, created

    def script(ws, n, server):
        created(ws, "sess_t", "translation")
        answer_update(server, ws)
        script_after_update(ws, server)
        server.absorb(ws)

    return HostileServer(script)


def _delta(elapsed_ms, text):
    import json

    return json.dumps({"type": "session.output_transcript.delta", "delta": text,
                       "elapsed_ms": elapsed_ms})


def test_a_flood_of_deltas_without_spaces_is_handled_in_linear_time():
    from realtime_sync.translation import MAX_CUE_CHARS, ORPHAN_CHARS

    n = 20_000
    sent = threading.Event()

    def flood(ws, server):
        server.until(ws, "session.input_audio_buffer.append")  # the translator is started
        for i in range(n):
            ws.send(_delta(0, "字" if i % 2 else "x"))
        ws.send(_delta(0, "。"))
        sent.set()

    shown = []
    last = threading.Event()
    with _translation_server(flood) as srv:
        def on_text(cue):
            shown.append(len(cue.text))
            if cue.text.endswith("。"):
                last.set()

        tr = rs.Translator(to="zh", url=srv.url, api_key=KEY, keepalive=False, on_text=on_text)
        with tr:
            tr.feed(bytes(48 * 200))
            assert sent.wait(30) and last.wait(30)
            text = tr.text
            cues = tr.translation.cues
    assert text == "x字" * (n // 2) + "。"  # nothing lost
    # a cue never grows past its size, so each delta's work (and what on_text is shown) is
    # bounded: linear in the text, not quadratic
    assert max(len(c.text) for c in cues) <= MAX_CUE_CHARS + ORPHAN_CHARS
    assert max(shown) <= MAX_CUE_CHARS + ORPHAN_CHARS
    assert sum(shown) <= 2 * (MAX_CUE_CHARS + ORPHAN_CHARS) * (n + 1)


def test_160k_deltas_cost_a_bounded_amount_each():
    """The issue's figure: 160k one-character deltas with no space. The work per delta is
    measured by what it hands on (the changed cues' text), which was the whole growing cue
    (160k * 80k characters in all) and is now bounded by the size of a cue."""
    from realtime_sync.translation import MAX_CUE_CHARS, ORPHAN_CHARS, _Cues

    cues = _Cues(source=False)
    handed_on = 0
    for i in range(160_000):
        for cue in cues.add("x", i // 5):
            handed_on += len(cue.text)
    assert len(cues.text) == 160_000 and str(cues.text) == "x" * 160_000
    assert handed_on <= (MAX_CUE_CHARS + ORPHAN_CHARS) * 160_000  # linear: was 1.28e10
    assert all(len(c.text) <= MAX_CUE_CHARS + ORPHAN_CHARS for c in cues.done)


def test_a_single_huge_delta_is_cut_into_cues_without_quadratic_copying():
    from realtime_sync.translation import MAX_CUE_CHARS, ORPHAN_CHARS, _Cues

    cues = _Cues(source=False)
    changed = cues.add("y" * 1_000_000, 0)
    assert sum(len(c.text) for c in changed) == 1_000_000  # each cue once, nothing lost
    assert all(len(c.text) <= MAX_CUE_CHARS + ORPHAN_CHARS for c in changed)


def test_an_absurd_elapsed_ms_is_bounded_by_the_audio_fed_and_reported_once():
    from realtime_sync.captions import render
    from realtime_sync.translation import MAX_READING_MS

    def absurd(ws, server):
        for _ in range(5):  # 1 s of audio had
            server.until(ws, "session.input_audio_buffer.append")
        ws.send(_delta(500, "Hola "))
        ws.send(_delta(1e300, "mundo."))
        ws.send(_delta(1e300, " Otra"))
        ws.send(_delta(10**18, " vez."))

    errors = []
    done = threading.Event()
    with _translation_server(absurd) as srv:
        tr = rs.Translator(to="es", url=srv.url, api_key=KEY, keepalive=False,
                           on_text=lambda cue: done.set() if cue.text == "Otra vez." else None)
        tr.on("client.protocol_error", errors.append)
        with tr:
            tr.feed(bytes(48 * 1000))
            assert done.wait(10)
            cues = tr.translation.cues
            fed_ms = tr.fed_ms
    assert [c.text for c in cues] == ["Hola mundo.", "Otra vez."]
    assert all(c.start_ms <= fed_ms and c.end_ms <= fed_ms + MAX_READING_MS for c in cues)
    assert cues[0].start_ms == 500  # a sane time is kept as it is
    assert len(errors) == 1 and "elapsed_ms" in errors[0]["message"]
    srt = render(cues, "srt")
    assert "00:00:0" in srt and "e+" not in srt  # times a player can use


def test_keepalive_silence_is_at_most_one_frame_late_and_never_skips_when_ticks_come_late():
    """The clock's arithmetic on a busy machine: ticks that come up to 1.5 s late (simulated
    times, so the test is exact) while a speaker sometimes feeds audio."""
    import random

    from realtime_sync.translation import (
        FRAME_BYTES,
        FRAME_MS,
        Translator,
        _keepalive_silence,
        _Schedule,
    )

    rnd = random.Random(15)
    schedule = _Schedule(FRAME_MS / 2000)
    now, fed, silence = 0.0, 0, 0
    period = FRAME_MS / 2000
    for _ in range(3000):
        wait = schedule.wait(now)
        assert 0 < wait <= period + 1e-9
        assert abs(round((now + wait) / period) * period - (now + wait)) < 1e-6  # on the grid
        late = rnd.uniform(0, 1.5) if rnd.random() < 0.1 else rnd.uniform(0, 0.01)
        now += wait + late
        if rnd.random() < 0.2:  # a speaker feeds a little, sometimes ahead of the clock
            fed += 48 * rnd.choice([20, 50, 200, 600])
        add = _keepalive_silence(now, fed, Translator.idle_slack_ms)
        assert add >= 0 and add % FRAME_BYTES == 0  # whole frames only
        fed += add
        silence += add
        wall = int(now * 1000) * 48
        # at most one frame behind the wall clock after every tick, however late it came:
        # every frame of silence the wall clock passed is there (none skipped)
        assert wall - fed <= FRAME_BYTES
        if add:
            assert wall - fed >= 0  # silence never runs ahead of the wall clock
    assert silence > 0


def test_the_keepalive_keeps_the_idle_stream_on_the_wall_clock_while_the_process_is_busy():
    import time

    stop = threading.Event()

    def hog() -> None:  # pure-Python load competing for the interpreter
        while not stop.is_set():
            sum(range(1000))

    hogs = [threading.Thread(target=hog, daemon=True) for _ in range(3)]
    with _translation_server(lambda ws, server: None) as srv:
        tr = rs.Translator(to="es", url=srv.url, api_key=KEY)
        with tr:
            for h in hogs:
                h.start()
            try:
                began = time.monotonic()
                time.sleep(1.5)
                idle_ms = (time.monotonic() - began) * 1000
                silence_ms = tr.silence_ms
            finally:
                stop.set()
                for h in hogs:
                    h.join()
    # generous guard (the design keeps it within one frame and a tick: 300 ms)
    assert silence_ms >= idle_ms - 1000


def test_a_riff_header_whose_chunk_runs_past_the_end_is_an_audio_error(tmp_path):
    """The stdlib wave module raises a bare RuntimeError when a chunk size points past the end
    of the file: it is refused as audio FFmpeg cannot decode, never a bare RuntimeError."""
    pytest.importorskip("av")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x20\x00\x00\x00WAVEnot audio at all, just text")
    from realtime_sync.audio import FileSource

    with pytest.raises(rs.AudioError, match="FFmpeg can decode"):
        FileSource(str(bad)).read(100)
