"""Scaling benchmark of ``transcribe_files``: one process (``--jobs``), a local Ray instance and
a two-node Ray cluster simulated on this machine, on the same 20 minutes of human speech.

    pip install -e ".[local,ray]"
    python benchmarks/bench_cluster.py [--model tiny.en] [--minutes 20] [--jobs 2]

The speech is the real-speech set of ``benchmarks/fetch_speech.py`` (Asterisk's studio
prompts in five languages, about a minute per file), fetched into
``benchmarks/.cache/speech-cluster`` with enough seconds per language for ``--minutes``.
Every run uses the offline engine through :class:`realtime_sync.batch.OfflineEngine`:

* ``--jobs``: ``transcribe_files(jobs=J)``, one engine in this process (its default threads,
  J decoders sharing the weights) and J client sessions on threads, as
  ``realtime-sync transcribe FILES --local --jobs J``;
* ``ray local``: ``ray.init(num_cpus=J)``, J actors each loading its own engine with one
  thread, the files as paths (shared storage);
* ``ray 2 nodes``: ``ray.cluster_utils.Cluster`` with two nodes of J/2 CPUs (at least 1).

Reported: wall time (Ray's start-up apart), files per minute, audio hours per CPU hour (the
CPU time of this process and every process it started, sampled every 0.25 s, so the actors'
CPU counts), and the overhead per file against ``--jobs``. Then the overhead check of the
issue: 12 short files (4 s cut from the set) through a local Ray instance vs ``--jobs`` with
the same parallelism. Every Ray process stays on 127.0.0.1 (no dashboard, no usage stats, a
small object store). Measurements on a shared machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / ".cache" / "speech-cluster"
STORE = 100 * 1024 * 1024
LANGS = 5


class CpuMeter:
    """CPU seconds of this process and all its descendants (also those that exit before the
    end: the last sample of each is kept)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._seen: Dict[Tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = self._psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                self._seen[(p.pid, p.create_time())] = t.user + t.system
            except self._psutil.Error:
                continue

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self._start = dict(self._seen)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(v - self._start.get(k, 0.0) for k, v in self._seen.items())


def _paced(audio: bytes) -> str:
    """The scripted recogniser of the executor-only check: a quarter of the audio's length
    asleep (no CPU), then '<N> ms of audio'."""
    from realtime_sync.server._recognizer import describe_audio

    time.sleep(len(audio) / 48 / 1000 / 4)
    return describe_audio(audio)


def scripted_server() -> Any:
    """Built inside each actor (or once here): the local server with :func:`_paced`."""
    from realtime_sync.server import RealtimeServer, ScriptedRecognizer

    return RealtimeServer(recognizer=ScriptedRecognizer(_paced))


def fetch(minutes: float, langs: List[str]) -> List[str]:
    """The speech files of ``langs``, about ``minutes`` in all five languages (fetched
    once)."""
    manifest = DATA / "manifest.json"
    if not manifest.is_file():
        # fetch_speech counts speech per language; gaps add about a fifth
        seconds = minutes * 60 / LANGS / 1.14
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fetch_speech.py"),
                        "--dir", str(DATA), "--seconds", f"{seconds:.0f}"], check=True)
    entries = json.loads(manifest.read_text())
    return [str(DATA / name) for name in sorted(entries)
            if entries[name]["language"] in langs]


def duration(path: str) -> float:
    with wave.open(path) as w:
        return w.getnframes() / w.getframerate()


def cut_short(files: List[str], n: int, seconds: float, folder: Path) -> List[str]:
    """``n`` files of ``seconds`` each, cut from the start of the set's files."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = files[i % len(files)]
        with wave.open(src) as r:
            rate = r.getframerate()
            r.setpos(int((i // len(files)) * seconds * rate))
            frames = r.readframes(int(seconds * rate))
            params = r.getparams()
        path = folder / f"short{i:02d}.wav"
        with wave.open(str(path), "wb") as w:
            w.setparams(params)
            w.writeframes(frames)
        out.append(str(path))
    return out


class ActorsReady(logging.Handler):
    """Seconds from the batch's start until each Ray actor was ready (engine loading)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.times: List[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("a Ray actor is ready"):
            self.times.append(float(record.args[0]))  # type: ignore[index]


READY = ActorsReady()


def run(files: List[str], **kwargs: Any) -> Tuple[float, float, int]:
    """(wall s, CPU s, failed files) of one ``transcribe_files`` call."""
    import realtime_sync as rs

    READY.times.clear()
    with CpuMeter() as cpu:
        start = time.monotonic()
        results = rs.transcribe_files(files, progress=False, **kwargs)
        wall = time.monotonic() - start
    failed = [r for r in results if not r.ok]
    for r in failed[:3]:
        print(f"  ! {r.path}: {r.error}", file=sys.stderr)
    if READY.times:
        print(f"  (actors ready after {', '.join(f'{t:.1f}' for t in READY.times)} s)",
              flush=True)
    return wall, cpu.seconds, len(failed)


def with_ray(start: Callable[[], Any], stop: Callable[[Any], None],
             body: Callable[[], Any]) -> Tuple[float, Any]:
    """(start-up seconds, body's result) with Ray started by ``start`` and stopped after."""
    t = time.monotonic()
    handle = start()
    startup = time.monotonic() - t
    try:
        return startup, body()
    finally:
        stop(handle)


def local_ray(cpus: int) -> Callable[[], Any]:
    def start() -> Any:
        import ray

        ray.init(num_cpus=cpus, _node_ip_address="127.0.0.1", include_dashboard=False,
                 object_store_memory=STORE, log_to_driver=False)
    return start


def two_nodes(cpus: int) -> Callable[[], Any]:
    def start() -> Any:
        import ray
        from ray.cluster_utils import Cluster

        node = {"node_ip_address": "127.0.0.1", "num_cpus": max(1, cpus // 2),
                "object_store_memory": STORE}
        cluster = Cluster(initialize_head=True,
                          head_node_args={**node, "include_dashboard": False})
        cluster.add_node(**node)
        ray.init(address=cluster.address, log_to_driver=False)
        return cluster
    return start


def stop_ray(cluster: Optional[Any]) -> None:
    import ray

    ray.shutdown()
    if cluster is not None:
        cluster.shutdown()


def main(argv: List[str] = sys.argv[1:]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="base", help="offline model (default base)")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--langs", default=None,
                        help="languages of the set to use, comma-separated (default: all five; "
                             "en only for an English-only model such as tiny.en)")
    parser.add_argument("--files", type=int, default=None,
                        help="only this many files of the set, taken in turn from each "
                             "language (default: all, about --minutes)")
    parser.add_argument("--skip-batch", action="store_true",
                        help="only the 12-file overhead check")
    args = parser.parse_args(argv)
    from realtime_sync.batch import OfflineEngine

    log = logging.getLogger("realtime_sync._features.cluster")
    log.setLevel(logging.INFO)
    log.addHandler(READY)

    langs = args.langs.split(",") if args.langs else \
        (["en"] if args.model.endswith(".en") else ["en", "es", "fr", "it", "ru"])
    files = fetch(args.minutes, langs)
    if args.files:
        by_lang = [[f for f in files if Path(f).name.startswith(f"{lang}_")] for lang in langs]
        files = [f for group in zip(*by_lang) for f in group][:args.files]
    audio = sum(duration(f) for f in files)
    print(f"# {len(files)} files, {audio / 60:.1f} min of speech, model {args.model}, "
          f"({','.join(langs)}), jobs {args.jobs}; load average {os.getloadavg()[0]:.1f} at start "
          f"({os.cpu_count()} CPUs)")
    # one engine decoding up to J files at once (as --local --jobs J), its default threads
    one = OfflineEngine(args.model, workers=args.jobs)
    per_actor = OfflineEngine(args.model, cpu_threads=1)  # one CPU per actor
    opts: Dict[str, Any] = {"model": "gpt-transcribe", "turn_detection": "auto"}
    rows = []

    def row(name: str, startup: Optional[float], wall: float, cpu: float, failed: int,
            n: int, secs: float, base: Optional[float]) -> None:
        over = "" if base is None else f"{(wall - base) / n * 1000:+.0f} ms"
        rows.append(f"| {name} | {'' if startup is None else f'{startup:.1f} s'} | "
                    f"{wall:.1f} s | {n / wall * 60:.1f} | {secs / cpu:.1f} | "
                    f"{over} | {failed} | {os.getloadavg()[0]:.1f} |")
        print(rows[-1], flush=True)

    header = ("| run | Ray start-up | wall | files/min | audio h per CPU h | overhead/file vs "
              "--jobs | failed | load after |\n|---|---|---|---|---|---|---|---|")
    print(header)
    if not args.skip_batch:
        wall0, cpu0, bad = run(files, jobs=args.jobs, server=one, **opts)
        row(f"--jobs {args.jobs} (one process)", None, wall0, cpu0, bad, len(files), audio,
            None)
        startup, (wall, cpu, bad) = with_ray(
            local_ray(args.jobs), stop_ray,
            lambda: run(files, jobs=args.jobs, cluster="auto", server=per_actor, **opts))
        row(f"ray local ({args.jobs} actors)", startup, wall, cpu, bad, len(files), audio,
            wall0)
        startup, (wall, cpu, bad) = with_ray(
            two_nodes(args.jobs), stop_ray,
            lambda: run(files, jobs=args.jobs, cluster="auto", server=per_actor, **opts))
        row(f"ray 2 nodes ({args.jobs} actors)", startup, wall, cpu, bad, len(files), audio,
            wall0)

    short = cut_short(files, 12, 4.0, DATA / "short")
    secs = 12 * 4.0
    wall0, cpu0, bad = run(short, jobs=args.jobs, server=one, **opts)
    row(f"12 short files, --jobs {args.jobs}", None, wall0, cpu0, bad, 12, secs, None)
    startup, (wall, cpu, bad) = with_ray(
        local_ray(args.jobs), stop_ray,
        lambda: run(short, jobs=args.jobs, cluster="auto", server=per_actor, **opts))
    row(f"12 short files, ray local ({args.jobs} actors)", startup, wall, cpu, bad, 12, secs,
        wall0)
    ratios = [("offline engine", wall / wall0, startup)]
    # the executor alone: a recogniser that sleeps, so threads and actors run equally parallel
    plain = {"model": "gpt-transcribe", "turn_detection": None}
    wall0, cpu0, bad = run(short, jobs=args.jobs, server=scripted_server, **plain)
    row(f"12 short files, scripted, --jobs {args.jobs}", None, wall0, cpu0, bad, 12, secs,
        None)
    startup, (wall, cpu, bad) = with_ray(
        local_ray(args.jobs), stop_ray,
        lambda: run(short, jobs=args.jobs, cluster="auto", server=scripted_server, **plain))
    row(f"12 short files, scripted, ray local ({args.jobs} actors)", startup, wall, cpu, bad,
        12, secs, wall0)
    ratios.append(("scripted recogniser", wall / wall0, startup))
    print()
    for name, ratio, startup in ratios:
        print(f"overhead check ({name}): ray local / --jobs = {ratio:.2f}x "
              f"({'within' if ratio <= 1.3 else 'OVER'} the 1.3x limit; Ray start-up "
              f"{startup:.1f} s excluded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
