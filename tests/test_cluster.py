"""Many files on Ray: ``transcribe_files(cluster=)`` and ``transcribe FILES --cluster``.

One local Ray instance (2 CPUs) and one two-node cluster simulated on this machine
(``ray.cluster_utils.Cluster``), each shared by a class of tests. Every Ray process stays on
127.0.0.1 (``_node_ip_address``, and Ray told that this machine is no cluster node reachable
from outside), with no dashboard, no usage reporting and a small object store. The actors
run the scripted local server, slowed down to take about as long as the audio.
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from array import array
from pathlib import Path
from typing import List

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # before Ray is imported
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")

import realtime_sync as rs  # noqa: E402
from realtime_sync.cli import main  # noqa: E402
from realtime_sync.testing import FakeRealtimeServer  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

# this module's functions build the actors' servers: send them by value, as a user's script
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

RATE = 24000
STORE = 80 * 1024 * 1024  # Ray's minimum: the machine is shared
ROOT = str(Path(__file__).resolve().parent.parent)


def write_tone(path: Path, ms: int) -> str:
    n = RATE * ms // 1000
    pcm = array("h", (int(12000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return str(path)


def _slowly(audio: bytes) -> str:
    """About as long as the audio lasts (half of it), then '<N> ms of audio'; a 700 ms
    turn kills the process transcribing it."""
    from realtime_sync.server._recognizer import describe_audio

    text = describe_audio(audio)
    if text.startswith("700 ms"):
        os._exit(3)  # a worker process that dies under the file
    time.sleep(len(audio) / 48 / 1000 / 2)
    return text


def slow_server() -> FakeRealtimeServer:
    """Runs inside each actor: the scripted local server with the slow recogniser."""
    from realtime_sync.server import ScriptedRecognizer

    return FakeRealtimeServer(recognizer=ScriptedRecognizer(_slowly))


def broken_server() -> FakeRealtimeServer:
    """Runs inside each actor: a server whose engine cannot load."""
    raise rs.ConfigurationError("no weights in this image")


def texts(results: List[rs.FileResult]) -> List[str]:
    return [r.transcript.text if r.transcript is not None else repr(r.error) for r in results]


def our_ray_sockets() -> List[str]:
    """Every TCP socket of this process's children (the Ray processes) not on loopback."""
    import ipaddress

    import psutil

    def loopback(ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1
        return (mapped or addr).is_loopback

    bad = []
    for proc in psutil.Process().children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            for addr in (c.laddr, c.raddr):
                if addr and not loopback(addr.ip):
                    bad.append(f"{proc.name()}: {addr.ip}:{addr.port} ({c.status})")
    return bad


@pytest.fixture
def files(tmp_path):
    # the first file takes longest: later files finish first
    return [write_tone(tmp_path / f"f{i}.wav", ms) for i, ms in enumerate((900, 300, 500, 400))]


# -- no Ray running in this process ------------------------------------------------------------

def test_an_unreachable_cluster_is_one_line_naming_its_address(files, capsys):
    assert not ray.is_initialized()
    code = main(["transcribe", *files[:2], "--cluster", "127.0.0.1:9", "--url",
                 "ws://127.0.0.1:9/v1/realtime"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0 and "127.0.0.1:9" in err and "Ray cluster" in err


def test_ctrl_c_cancels_the_job_and_reports_what_finished(tmp_path):
    short = write_tone(tmp_path / "short.wav", 300)
    longer = [write_tone(tmp_path / f"long{i}.wav", 20_000) for i in range(2)]
    with FakeRealtimeServer() as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "realtime_sync", "transcribe", short, *longer, "--cluster",
             "local", "--jobs", "2", "--url", srv.url, "--no-vad", "--realtime"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            start_new_session=True,  # its Ray instance: a small object store (shared machine)
            env={**os.environ, "RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES": str(STORE)})
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"==> {short} <=="  # Ray is up, 1 done
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)  # far less than the 40 s of audio left
        finally:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: 1 of 3 files finished" in err
    assert "long0" not in out and "long1" not in out
    deadline = time.monotonic() + 20  # its Ray instance went with it
    while time.monotonic() < deadline and _session_alive(proc.pid):
        time.sleep(0.5)
    assert not _session_alive(proc.pid)


def _session_alive(sid: int) -> bool:
    import psutil

    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


# -- a local Ray instance: ray.init(num_cpus=2) ------------------------------------------------

@pytest.fixture(scope="class")
def local_ray():
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
             object_store_memory=STORE, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.usefixtures("local_ray")
class TestLocalInstance:
    def test_results_keep_input_order_and_one_caption_file_each(self, files, tmp_path):
        seen: List[str] = []
        results = rs.transcribe_files(
            files, cluster="auto", server=slow_server, captions="srt",
            output_dir=tmp_path / "subs", on_result=lambda r: seen.append(r.path),
            turn_detection=None, progress=False)
        assert [r.path for r in results] == files == seen
        assert texts(results) == ["900 ms of audio", "300 ms of audio", "500 ms of audio",
                                  "400 ms of audio"]
        assert [r.attempts for r in results] == [1, 1, 1, 1]
        assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == [
            "f0.srt", "f1.srt", "f2.srt", "f3.srt"]
        assert "900 ms of audio" in (tmp_path / "subs" / "f0.srt").read_text()

    def test_every_ray_process_stays_on_loopback(self, files):
        rs.transcribe_files(files[:2], cluster="auto", server=slow_server,
                            turn_detection=None, progress=False)
        assert our_ray_sockets() == []

    def test_a_corrupt_file_is_reported_once_and_the_others_go_on(self, files, tmp_path):
        broken = tmp_path / "broken.mp3"
        broken.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 200)
        seen: List[rs.FileResult] = []
        results = rs.transcribe_files(
            [files[1], str(broken), files[3]], cluster="auto", server=slow_server,
            on_result=seen.append, turn_detection=None, progress=False)
        assert [r.ok for r in results] == [True, False, True]
        assert [r.path for r in seen] == [files[1], str(broken), files[3]]
        assert isinstance(results[1].error, rs.AudioError)
        assert results[1].attempts == 0  # never sent to an actor

    def test_a_path_a_worker_cannot_see_fails_that_file_saying_so(self, files):
        def on_result(result: rs.FileResult) -> None:
            if result.path == files[0]:
                os.unlink(files[1])  # gone before the only actor gets to it
        results = rs.transcribe_files(
            files[:3], jobs=1, cluster="auto", server=slow_server, on_result=on_result,
            turn_detection=None, progress=False)
        assert [r.ok for r in results] == [True, False, True]
        assert "not visible on the Ray worker" in str(results[1].error)
        assert "--cluster-upload" in str(results[1].error)
        assert results[1].attempts == 1  # the file's own failure: not retried

    def test_upload_sends_the_bytes_through_the_object_store(self, files):
        results = rs.transcribe_files(files, cluster="auto", server=slow_server, upload=True,
                                      turn_detection=None, progress=False)
        assert texts(results) == ["900 ms of audio", "300 ms of audio", "500 ms of audio",
                                  "400 ms of audio"]

    def test_a_file_that_kills_its_worker_is_retried_then_reported(self, files, tmp_path):
        poison = write_tone(tmp_path / "poison.wav", 700)
        results = rs.transcribe_files(
            [files[1], poison, files[3]], cluster="auto", server=slow_server, retries=1,
            turn_detection=None, progress=False)
        assert [r.ok for r in results] == [True, False, True]
        assert isinstance(results[1].error, rs.RealtimeSyncError)
        assert "died 2 times" in str(results[1].error)
        assert results[1].attempts == 2
        assert texts(results)[::2] == ["300 ms of audio", "400 ms of audio"]

    def test_resume_skips_the_files_whose_captions_are_complete(self, files, tmp_path):
        out = tmp_path / "subs"
        first = rs.transcribe_files(files[:1], cluster="auto", server=slow_server,
                                    captions="vtt", output_dir=out, turn_detection=None,
                                    progress=False)
        done = Path(first[0].output)
        done.write_text(done.read_text() + "NOTE kept\n")  # would be lost if redone
        (out / ".f1.vtt.0123456789ab.partial").write_text("WEBVTT\n")  # a crash mid-write
        results = rs.transcribe_files(files, cluster="auto", server=slow_server,
                                      captions="vtt", output_dir=out, resume=True,
                                      turn_detection=None, progress=False)
        assert [r.skipped for r in results] == [True, False, False, False]
        assert [r.attempts for r in results] == [0, 1, 1, 1]
        assert "NOTE kept" in done.read_text()
        assert "300 ms of audio" in (out / "f1.vtt").read_text()
        assert all(r.ok and Path(r.output).is_file() for r in results)

    def test_the_jobs_default_is_one_actor_per_cpu_the_cluster_offers(self, files):
        class Big:
            """A server recipe whose engine keeps 2 CPUs busy: one actor on 2 CPUs."""

            cpus = 2

            def __call__(self) -> FakeRealtimeServer:
                return slow_server()

        results = rs.transcribe_files(files[:2], cluster="auto", server=Big(),
                                      turn_detection=None, progress=False)
        assert texts(results) == ["900 ms of audio", "300 ms of audio"]

    @pytest.mark.local_engine
    def test_cli_local_cluster_loads_the_offline_engine_in_each_actor(self, tmp_path, capsys):
        from conftest import skip_or_fail

        if importlib.util.find_spec("faster_whisper") is None:
            skip_or_fail("the offline engine is not installed (pip install "
                         "'realtime-sync[local]')")
        speech = Path(ROOT) / "tests" / "data" / "engine"
        out = tmp_path / "subs"
        code = main(["transcribe", str(speech / "fox.wav"), str(speech / "weather.wav"),
                     "--local", "--model", "tiny.en", "--cluster", "auto", "--format", "srt",
                     "-o", str(out)])
        assert code == 0, capsys.readouterr().err
        assert "quick brown fox" in (out / "fox.srt").read_text().lower()
        assert "weather" in (out / "weather.srt").read_text().lower()

    def test_a_server_that_cannot_start_fails_every_file_with_its_reason(self, files):
        results = rs.transcribe_files(files[:3], cluster="auto", server=broken_server,
                                      turn_detection=None, progress=False)
        assert [r.ok for r in results] == [False, False, False]
        assert all("no weights in this image" in str(r.error) for r in results)

    def test_callbacks_and_unpicklable_servers_are_refused_in_one_line(self, files):
        with pytest.raises(ValueError, match="on_final"):
            rs.transcribe_files(files, cluster="auto", on_final=print, progress=False)
        lock = threading.Lock()
        with pytest.raises(TypeError, match="cannot be sent to the Ray actors"):
            rs.transcribe_files(files, cluster="auto", server=lambda: lock, progress=False)


# -- two nodes on this machine: ray.cluster_utils.Cluster ------------------------------------

@pytest.fixture(scope="class")
def two_nodes():
    from ray.cluster_utils import Cluster

    common = {"node_ip_address": "127.0.0.1", "num_cpus": 1, "object_store_memory": STORE}
    cluster = Cluster(initialize_head=True,
                      head_node_args={**common, "include_dashboard": False})
    worker = cluster.add_node(**common)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


class TestTwoNodes:
    def test_a_node_killed_mid_batch_loses_nothing_and_doubles_nothing(self, two_nodes,
                                                                       tmp_path):
        cluster, worker = two_nodes
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        paths = [write_tone(tmp_path / f"g{i}.wav", 1000 + 100 * i) for i in range(6)]
        seen: List[str] = []
        killer: List[threading.Thread] = []

        def on_result(result: rs.FileResult) -> None:
            seen.append(result.path)
            if not killer:  # the other node is half-way through its file
                killer.append(threading.Thread(target=cluster.remove_node, args=(worker,)))
                killer[0].start()

        results = rs.transcribe_files(
            paths, cluster="auto", server=slow_server, captions="jsonl",
            output_dir=tmp_path / "out", on_result=on_result, turn_detection=None,
            progress=False)
        killer[0].join(30)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 1
        assert seen == paths  # each file once, in order
        assert texts(results) == [f"{1000 + 100 * i} ms of audio" for i in range(6)]
        assert any(r.attempts == 2 for r in results)  # started again on the head node
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            f"g{i}.jsonl" for i in range(6)]
        assert our_ray_sockets() == []
