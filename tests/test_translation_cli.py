"""``realtime-sync translate`` and :func:`realtime_sync.translate_file` against the local
server's scripted translation engine, ``--speak`` through the virtual sound card, and the
offline refusals."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from test_audio_device import MonitorRecorder, play_into_mic, rig  # noqa: F401 - rig fixture

import realtime_sync as rs
from realtime_sync.cli import main
from realtime_sync.server import RealtimeServer, ScriptedTranslator, tone

pytestmark = pytest.mark.timeout(120)

PHRASES = ["Hola mundo.", "Adiós amigos."]
SOURCES = ["Hello world.", "Goodbye friends."]


def write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(pcm)
    return path


@pytest.fixture
def speech(tmp_path) -> Path:
    """Two phrases: tones at 0-600 ms and 1000-1400 ms."""
    return write_wav(tmp_path / "speech.wav",
                     tone(600) + bytes(48 * 400) + tone(400) + bytes(48 * 200))


@pytest.fixture
def srv():
    with RealtimeServer(translator=ScriptedTranslator(PHRASES, SOURCES)) as s:
        yield s


def test_translate_a_file_prints_the_translation(srv, speech, capsys):
    assert main(["translate", str(speech), "--to", "es", "--url", srv.url]) == 0
    assert capsys.readouterr().out.splitlines() == ["Hola mundo.", "Adiós amigos."]


def test_captions_are_written_cue_by_cue_with_times(srv, speech, tmp_path, capsys):
    out = tmp_path / "es.srt"
    assert main(["translate", str(speech), "--to", "es", "--url", srv.url, "--source-text",
                 "--format", "srt", "--output", str(out), "--min-cue-duration", "0"]) == 0
    assert out.read_text(encoding="utf-8") == (
        "1\n00:00:00,000 --> 00:00:01,000\nHola mundo.\n\n"
        "2\n00:00:01,000 --> 00:00:02,000\nAdiós amigos.\n\n")  # a cue lasts at least 1 s
    source = (tmp_path / "es.source.srt").read_text(encoding="utf-8")
    assert "Hello world." in source and "00:00:01,000" in source
    printed = capsys.readouterr().out
    assert "Hola mundo." in printed and "[Hello world.]" in printed


def test_jsonl_to_stdout(srv, speech, capsys):
    import json

    assert main(["translate", str(speech), "--to", "es", "--url", srv.url,
                 "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["text"], r["start_ms"]) for r in records] == [("Hola mundo.", 0),
                                                           ("Adiós amigos.", 1000)]


def test_translate_file_gives_what_the_command_prints(srv, speech):
    result = rs.translate_file(speech, to="es", url=srv.url, api_key="sk-local",
                               source_transcript=True, speech=True)
    assert result.text == "Hola mundo. Adiós amigos."
    assert result.source_text == "Hello world. Goodbye friends."
    assert [(c.start_ms, c.end_ms) for c in result.cues] == [(0, 1000), (1000, 2000)]
    assert result.audio is not None and len(result.audio) == 48 * (200 * 5)  # a tone per frame
    assert result.language == "es"


def test_usage_errors_exit_2_in_one_line(speech, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["translate", str(speech)]) == 2  # --to is required
    capsys.readouterr()
    assert main(["translate", "--to", "es"]) == 2
    assert main(["translate", "/no/such.wav", "--to", "es"]) == 2
    capsys.readouterr()
    assert main(["translate", str(speech), "--to", "es"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OPENAI_API_KEY" in err[0] and "--local" in err[0]


def test_offline_refuses_a_target_other_than_english_naming_what_works(speech, capsys):
    assert main(["translate", str(speech), "--to", "es", "--local"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--to en" in err[0] and "gpt-realtime-translate" in err[0]


def test_a_refused_language_is_a_one_line_error(speech, capsys):
    with RealtimeServer(translator=ScriptedTranslator(PHRASES, languages=["es"])) as srv:
        assert main(["translate", str(speech), "--to", "xx", "--url", srv.url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot translate into 'xx'" in err[0]


@pytest.mark.audio_device
def test_speak_plays_the_translated_speech_through_the_speaker(rig, srv, speech):  # noqa: F811
    np = pytest.importorskip("numpy")
    with MonitorRecorder() as rec:
        assert main(["translate", str(speech), "--to", "es", "--url", srv.url,
                     "--speak"]) == 0
    pcm = np.frombuffer(rec.data[: len(rec.data) - len(rec.data) % 2], dtype="<i2")
    assert len(pcm), "nothing recorded from the virtual speaker"
    # the scripted engine's 660 Hz tone (5 voiced frames = 1 s) came out of the speaker; the
    # virtual card is shared, so look only at 640-680 Hz (other tests may play other sounds)
    x = pcm.astype(np.float64)
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / 24000)
    spectrum[(freqs < 640) | (freqs > 680)] = 0
    band = np.fft.irfft(spectrum, len(x))
    power = np.convolve(band ** 2, np.ones(240) / 240, "valid")
    assert (np.sqrt(power) > 1500).sum() / 24000 >= 0.8  # about a second of tone


@pytest.mark.audio_device
def test_speaker_survives_a_flush_while_playing(rig, caplog):  # noqa: F811
    """--speak stops the speaker while it may still play (Ctrl-C, an error): a flush in the
    middle of playback must leave the player thread alive and silent."""
    import time

    from realtime_sync.audio import Speaker

    with Speaker() as speaker:
        speaker.feed(tone(1500))
        deadline = time.monotonic() + 10
        while speaker.played_ms < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        speaker.flush()
        time.sleep(0.3)
        assert speaker._thread is not None and speaker._thread.is_alive()
        speaker.feed(tone(300))  # and it plays again
        deadline = time.monotonic() + 10
        while speaker.queued_ms > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "speaker thread failed" not in caplog.text


@pytest.mark.audio_device
def test_listen_translates_the_virtual_microphone(rig, srv):  # noqa: F811
    with rs.Translator(to="es", url=srv.url, api_key="sk-local") as tr:
        tr.listen()
        play_into_mic(bytes(48 * 300) + tone(800, amplitude=0.5) + bytes(48 * 600))
        result = tr.finish(timeout=20)
    assert result.text == "Hola mundo."
    assert result.cues[0].start_ms >= 200  # after the leading silence, on the mic's clock


@pytest.mark.audio_device
def test_translate_the_virtual_microphone_until_ctrl_c(rig):  # noqa: F811
    """`realtime-sync translate --mic` against `realtime-sync serve` (scripted translation):
    speech played into the virtual microphone comes out as a line; Ctrl-C ends with 0."""
    import os
    import signal
    import subprocess
    import sys

    cli = [sys.executable, "-m", "realtime_sync"]
    env = dict(os.environ)
    server = subprocess.Popen(cli + ["serve", "--port", "0"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("ws://"), url
        proc = subprocess.Popen(cli + ["translate", "--mic", "--to", "es", "--url", url],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "listening" in line, line + proc.stderr.read()
            play_into_mic(tone(800, amplitude=0.5) + bytes(48 * 800))
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    assert proc.returncode == 0, err
    assert "ms translated." in out, out + err
