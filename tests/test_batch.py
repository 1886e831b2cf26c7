"""Many files at once: ``transcribe_files`` and ``realtime-sync transcribe a b c --jobs N``,
against the local server with a recogniser that takes its time and counts how many turns it
transcribes at once (one turn per file: ``turn_detection=None`` commits each file's tail)."""

from __future__ import annotations

import math
import re
import threading
import time
import wave
from array import array
from pathlib import Path
from typing import List

import pytest

import realtime_sync as rs
from realtime_sync.cli import main
from realtime_sync.server import ScriptedRecognizer
from realtime_sync.server._recognizer import describe_audio
from realtime_sync.testing import FakeRealtimeServer

RATE = 24000


def write_tone(path: Path, ms: int) -> str:
    n = RATE * ms // 1000
    pcm = array("h", (int(12000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return str(path)


class SlowCountingRecognizer(ScriptedRecognizer):
    """Says how long each turn is, after sleeping 1 ms per ms of audio; records the largest
    number of turns in transcription at the same time (across all sessions)."""

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()
        super().__init__(self._slowly)

    def _slowly(self, audio: bytes) -> str:
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(len(audio) / 48 / 1000)
        finally:
            with self._count_lock:
                self.active -= 1
        return describe_audio(audio)


@pytest.fixture
def files(tmp_path):
    # the first file takes longest: later files finish first
    return [write_tone(tmp_path / f"f{i}.wav", ms) for i, ms in enumerate((900, 300, 500, 400))]


def ms_of(result: rs.FileResult) -> int:
    assert result.transcript is not None
    return int(re.findall(r"(\d+) ms of audio", result.transcript.text)[0])


def test_results_keep_input_order_and_at_most_jobs_run_at_once(files):
    rec = SlowCountingRecognizer()
    seen: List[str] = []
    with FakeRealtimeServer(recognizer=rec) as srv:
        results = rs.transcribe_files(
            files, jobs=2, url=srv.url, api_key="sk-local", turn_detection=None,
            on_result=lambda r: seen.append(r.path), progress=False)
        sessions = srv.connection_count
    assert [r.path for r in results] == files == seen
    assert [ms_of(r) for r in results] == [900, 300, 500, 400]
    assert all(r.ok for r in results)
    assert rec.max_active == 2  # in parallel, and never more than jobs
    assert sessions == len(files)  # one session per file


def test_one_job_runs_the_files_one_after_another(files):
    rec = SlowCountingRecognizer()
    with FakeRealtimeServer(recognizer=rec) as srv:
        results = rs.transcribe_files(files[:3], jobs=1, url=srv.url, api_key="sk-local",
                                      turn_detection=None, progress=False)
    assert rec.max_active == 1
    assert [ms_of(r) for r in results] == [900, 300, 500]


def test_a_failing_file_is_reported_and_the_batch_goes_on(files, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEnot audio at all")
    paths = [files[0], str(tmp_path / "missing.wav"), str(broken), files[1]]
    with FakeRealtimeServer() as srv:
        results = rs.transcribe_files(paths, jobs=3, url=srv.url, api_key="sk-local",
                                      turn_detection=None, progress=False)
    assert [r.ok for r in results] == [True, False, False, True]
    assert [r.path for r in results] == paths
    assert ms_of(results[0]) == 900 and ms_of(results[3]) == 300
    assert results[1].transcript is None and results[1].error is not None


def test_a_server_that_refuses_fails_every_file_without_hanging(files):
    results = rs.transcribe_files(files[:2], jobs=2, url="ws://127.0.0.1:9/v1/realtime",
                                  api_key="sk-local", turn_detection=None, progress=False,
                                  reconnect=False)
    assert [r.ok for r in results] == [False, False]
    assert all(isinstance(r.error, rs.RealtimeSyncError) for r in results)


def test_one_caption_file_per_input(files, tmp_path):
    out = tmp_path / "captions"
    with FakeRealtimeServer() as srv:
        results = rs.transcribe_files(files[:2], jobs=2, captions="srt", output_dir=out,
                                      url=srv.url, api_key="sk-local", turn_detection=None,
                                      progress=False)
    assert [Path(r.output).name for r in results] == ["f0.srt", "f1.srt"]
    assert "900 ms of audio" in (out / "f0.srt").read_text()
    assert "-->" in (out / "f1.srt").read_text()


def test_bad_batch_arguments_are_refused_before_anything_starts(files, tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        rs.transcribe_files(files, jobs=0)
    with pytest.raises(ValueError, match="caption format"):
        rs.transcribe_files(files, captions="docx")
    (tmp_path / "other").mkdir()
    twin = write_tone(tmp_path / "other" / "f0.wav", 200)
    with pytest.raises(ValueError, match="same caption file"):
        rs.transcribe_files([files[0], twin], captions="vtt", output_dir=tmp_path / "out")


def test_one_progress_bar_for_the_whole_batch(files, monkeypatch):
    tqdm_module = pytest.importorskip("tqdm")
    bars = []

    class Recorded(tqdm_module.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

        def close(self):
            self.final_n = self.n
            super().close()

    monkeypatch.setattr(tqdm_module, "tqdm", Recorded)
    with FakeRealtimeServer() as srv:
        rs.transcribe_files(files, jobs=2, url=srv.url, api_key="sk-local",
                            turn_detection=None, progress=True)
    assert len(bars) == 1  # one bar, no bar per file
    assert bars[0].total == 2100  # ms of audio in all files
    assert bars[0].final_n == 2100


# -- the command line ------------------------------------------------------------------------

def test_cli_prints_transcripts_in_input_order_and_exits_1_when_one_failed(files, tmp_path,
                                                                           capsys):
    missing = str(tmp_path / "missing.wav")
    with FakeRealtimeServer() as srv:
        code = main(["transcribe", files[0], missing, files[1], "--jobs", "2",
                     "--url", srv.url, "--no-vad"])
    out, err = capsys.readouterr()
    assert code == 1
    headers = re.findall(r"==> (.+?) <==", out)
    assert headers == [files[0], files[1]]
    assert out.index("900 ms of audio") < out.index("300 ms of audio")
    assert "missing.wav" in err and "1 of 3 files failed" in err


def test_cli_writes_one_caption_file_per_input(files, tmp_path, capsys):
    out_dir = tmp_path / "subs"
    with FakeRealtimeServer() as srv:
        code = main(["transcribe", *files[:3], "-j", "3", "--format", "vtt",
                     "--output", str(out_dir), "--url", srv.url, "--no-vad"])
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["f0.vtt", "f1.vtt", "f2.vtt"]
    assert (out_dir / "f2.vtt").read_text().startswith("WEBVTT")
    assert capsys.readouterr().out.count(" -> ") == 3


def test_cli_jobs_must_be_positive(files):
    assert main(["transcribe", *files, "--jobs", "0"]) == 2


def test_ctrl_c_stops_the_batch_promptly(tmp_path):
    import signal
    import subprocess
    import sys

    paths = [write_tone(tmp_path / f"long{i}.wav", 20_000) for i in range(3)]
    script = (
        "import sys, realtime_sync as rs\n"
        "from realtime_sync.testing import FakeRealtimeServer\n"
        "with FakeRealtimeServer() as srv:\n"
        "    print('started', flush=True)\n"
        "    try:\n"
        f"        rs.transcribe_files({paths!r}, jobs=2, url=srv.url, api_key='sk-local',\n"
        "                            turn_detection=None, realtime=True, progress=False)\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted', flush=True)\n"
        "        sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).resolve().parent.parent))
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # far less than the 40 s of audio
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in out


# -- resumable batches, whole caption files, the Ray extra ---------------------------------

def test_resume_skips_inputs_whose_caption_file_exists(files, tmp_path):
    out = tmp_path / "subs"
    out.mkdir()
    (out / "f0.srt").write_text("1\n00:00:00,000 --> 00:00:00,900\nkept\n")
    (out / ".f1.srt.0123456789ab.partial").write_text("1\n")  # left by a crash mid-write
    seen: List[str] = []
    with FakeRealtimeServer() as srv:
        results = rs.transcribe_files(
            files[:3], jobs=2, captions="srt", output_dir=out, resume=True, url=srv.url,
            api_key="sk-local", turn_detection=None, progress=False,
            on_result=lambda r: seen.append(r.path))
        sessions = srv.connection_count
    assert seen == files[:3]
    assert [r.skipped for r in results] == [True, False, False]
    assert results[0].transcript is None and results[0].ok
    assert results[0].output == str(out / "f0.srt")
    assert sessions == 2  # f0 was not transcribed again
    assert "kept" in (out / "f0.srt").read_text()
    assert "300 ms of audio" in (out / "f1.srt").read_text()


def test_resume_needs_captions(files):
    with pytest.raises(ValueError, match="resume needs captions"):
        rs.transcribe_files(files, resume=True)
    assert main(["transcribe", *files, "--resume", "--url", "ws://127.0.0.1:9"]) == 2
    assert main(["transcribe", *files, "--cluster-upload", "--url", "ws://127.0.0.1:9"]) == 2


def test_a_caption_file_is_written_whole_or_not_at_all(files, tmp_path, monkeypatch):
    from realtime_sync import captions

    real = captions.open_writer

    def failing_writer(target, format=None):  # noqa: A002
        writer = real(target, format)

        def write_all(segments):
            writer.write(segments[0])  # the first cue reaches the disk, then the disk fills
            raise OSError(28, "No space left on device")
        writer.write_all = write_all
        return writer

    monkeypatch.setattr(captions, "open_writer", failing_writer)
    out = tmp_path / "subs"
    with FakeRealtimeServer() as srv:
        results = rs.transcribe_files(files[:1], captions="srt", output_dir=out, url=srv.url,
                                      api_key="sk-local", turn_detection=None, progress=False)
    assert isinstance(results[0].error, OSError)
    assert list(out.iterdir()) == []  # no half file that resume would take as done


def test_ctrl_c_hands_back_what_finished(tmp_path):
    import signal
    import subprocess
    import sys

    short = write_tone(tmp_path / "short.wav", 200)
    paths = [short] + [write_tone(tmp_path / f"long{i}.wav", 20_000) for i in range(2)]
    script = (
        "import sys, realtime_sync as rs\n"
        "from realtime_sync.testing import FakeRealtimeServer\n"
        "with FakeRealtimeServer() as srv:\n"
        "    try:\n"
        f"        rs.transcribe_files({paths!r}, jobs=2, url=srv.url, api_key='sk-local',\n"
        "                            turn_detection=None, realtime=True, progress=False,\n"
        "                            on_result=lambda r: print('done', r.path, flush=True))\n"
        "    except rs.batch.BatchInterrupted as exc:\n"
        "        print([(r.ok, type(r.error).__name__) for r in exc.results], flush=True)\n"
        "        sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).resolve().parent.parent))
    try:
        assert proc.stdout.readline().strip() == f"done {short}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "[(True, 'NoneType'), (False, 'KeyboardInterrupt'), (False, 'KeyboardInterrupt')]" \
        in out


def test_ray_is_never_imported_by_the_package_and_its_absence_names_the_extra(files):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import realtime_sync as rs\n"
        "rs.transcribe_files, rs.FileResult, rs.batch.OfflineEngine\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
        "sys.modules['ray'] = None  # not installed\n"
        "try:\n"
        f"    rs.transcribe_files({files[:1]!r}, cluster='local', progress=False)\n"
        "except rs.ConfigurationError as exc:\n"
        "    print('ERR', exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "realtime-sync[ray]"' in proc.stdout
    assert proc.stdout.count("\n") == 1
