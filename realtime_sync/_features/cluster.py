"""The Ray executor of :func:`~realtime_sync.transcribe_files` (``cluster=``).

Each actor holds one server (``server=``, e.g. the offline engine, loaded once when the actor
starts) or one set of client options, and transcribes one file at a time with the same code
as the thread executor. The driver (the caller's thread) hands each idle actor the next file
and gets back a transcript or that file's own error; captions, order and the failure reports
stay in :mod:`realtime_sync.batch`. A file whose actor died (worker process or node lost) is
started again on another actor, at most ``retries`` more times; a file that fails by itself
is not. Ray is imported only here, only when ``cluster`` is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Type

from ..errors import ConfigurationError, RealtimeSyncError

__all__ = ["run_on_cluster", "connect", "WorkerLostError"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 300.0
"""Seconds the batch waits while no actor at all is running (the cluster has no room)."""

_Finish = Callable[[int, Any, Optional[BaseException]], None]


class WorkerLostError(RealtimeSyncError):
    """The worker process or node transcribing a file died every time it was tried."""


def _import_ray() -> Any:
    """``ray``, or a one-line error naming the extra (and the Python it needs)."""
    if sys.version_info < (3, 10):
        raise ConfigurationError(
            "transcribing on a Ray cluster needs Python >= 3.10 and "
            "pip install \"realtime-sync[ray]\"")
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "transcribing on a Ray cluster needs the ray package: "
            "pip install \"realtime-sync[ray]\"") from None
    return ray


def connect(cluster: str) -> Tuple[Any, bool]:
    """Connect this process to Ray: ``(ray, started)``, ``started`` when this call did it (and
    so should disconnect). Calling thread.

    ``"local"`` starts a Ray instance on this machine bound to 127.0.0.1 (no dashboard, no
    usage reporting); ``"auto"`` or an address joins a running cluster. A process already
    connected keeps its connection.

    Raises:
        ConfigurationError: Ray missing, or the cluster cannot be reached (one line naming
            ``cluster``).
    """
    if not isinstance(cluster, str) or not cluster.strip():
        raise ValueError(f"cluster must be a Ray address, 'auto' or 'local', not {cluster!r}")
    hostport = _host_port(cluster)
    loopback = cluster == "local" or (hostport is not None and _is_loopback(hostport[0]))
    if loopback:
        # before Ray is imported: its node address then stays on the loopback interface
        # (else Ray swaps 127.0.0.1 for the machine's external address) and nothing reports
        # usage
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    if loopback:
        with contextlib.suppress(AttributeError):  # Ray imported before the variable was set
            ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    if hostport is not None:  # Ray itself would retry for minutes
        try:
            socket.create_connection(hostport, timeout=10).close()
        except OSError as exc:
            raise ConfigurationError(f"cannot reach the Ray cluster at {cluster}: "
                                     f"{exc.strerror or exc}") from None
    try:
        if cluster == "local":
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=cluster, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigurationError(
            f"cannot reach the Ray cluster at {cluster}: {first}") from None
    return ray, True


def _host_port(address: str) -> Optional[Tuple[str, int]]:
    """``(host, port)`` of ``ray://host:port`` or ``host:port``; None for auto/local."""
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"cannot reach the Ray cluster at {address}: give "
                                 "host:port, ray://host:port, auto or local")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to travel back to the driver), else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any unpicklable exception
        return RealtimeSyncError(f"{type(exc).__name__}: {exc}")


class _Worker:
    """One Ray actor: its own server (loaded once) or client options; one file at a time."""

    def __init__(self, server: Optional[Callable[[], Any]], options: Dict[str, Any],
                 timeout: Optional[float], realtime: bool) -> None:
        self._stack = contextlib.ExitStack()
        self._broken: Optional[BaseException] = None
        self._options = dict(options)
        self._timeout = timeout
        self._realtime = realtime
        self._where = socket.gethostname()
        with contextlib.suppress(Exception):
            import ray

            self._where = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
        try:
            if server is not None:
                logging.getLogger("realtime_sync.server").setLevel(logging.CRITICAL)
                srv = self._stack.enter_context(server())
                self._options.update(url=srv.url,
                                     api_key=self._options.get("api_key") or "sk-local")
        except Exception as exc:  # noqa: BLE001 - reported to the driver, not a crash loop
            self._broken = _portable(exc)

    def ready(self) -> Optional[BaseException]:
        """None when the actor can transcribe, else why it cannot (its server failed)."""
        return self._broken

    def transcribe(self, path: str, data: Optional[bytes]) -> Tuple[str, Any]:
        """``("ok", transcript)`` or ``("error", exception)`` for one file: the path on
        shared storage, or its bytes (``data``) uploaded through the object store."""
        from .file_job import BatchProgress, transcribe_one

        if self._broken is not None:
            return "broken", self._broken
        folder = None
        try:
            if data is not None:
                folder = tempfile.mkdtemp(prefix="realtime-sync-")
                target = os.path.join(folder, os.path.basename(path) or "audio")
                with open(target, "wb") as f:
                    f.write(data)
            elif not os.path.exists(path):
                raise FileNotFoundError(
                    f"{path} is not visible on the Ray worker on {self._where}: put the files "
                    "on storage every node mounts at the same path, or upload them "
                    "(--cluster-upload, upload=True)")
            else:
                target = path
            transcript = transcribe_one(target, 0, BatchProgress(None, 1), 0.0,
                                        threading.Event(), self._timeout, self._realtime,
                                        self._options)
            return "ok", transcript
        except Exception as exc:  # noqa: BLE001 - the file's own failure, not retried
            return "error", _portable(exc)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self._stack.close()


def run_on_cluster(cluster: str, todo: List[int], names: List[str], results: List[Any],
                   finish: _Finish, *, jobs: Optional[int], server: Optional[Callable[[], Any]],
                   upload: bool, retries: int, timeout: Optional[float], realtime: bool,
                   options: Dict[str, Any]) -> None:
    """Transcribe the files ``todo`` (indices into ``names``) on Ray actors, calling
    ``finish(index, transcript, error)`` once per file on the calling thread. Ctrl-C kills
    the actors and is raised again."""
    callbacks = sorted(k for k, v in options.items() if callable(v))
    if callbacks:
        raise ValueError(f"{', '.join(callbacks)} would run inside the Ray actors, not here: "
                         "with cluster, use on_result")
    ray, started = connect(cluster)
    try:
        try:
            ray.cloudpickle.dumps((server, options))
        except Exception as exc:  # noqa: BLE001 - TypeError, PicklingError, ...
            raise TypeError(f"server= cannot be sent to the Ray actors ({_first_line(exc)}): "
                            "pass a recipe such as OfflineEngine(...) or a function that "
                            "builds the server inside the actor") from None
        if todo:
            _Run(ray, todo, names, results, finish, jobs, server, upload, retries, timeout,
                 realtime, options).run()
    finally:
        if started:
            ray.shutdown()


class _Run:
    """One batch on Ray: the actors, the queue of files and the files in flight."""

    def __init__(self, ray: Any, todo: List[int], names: List[str], results: List[Any],
                 finish: _Finish, jobs: Optional[int], server: Optional[Callable[[], Any]],
                 upload: bool, retries: int, timeout: Optional[float], realtime: bool,
                 options: Dict[str, Any]) -> None:
        self.ray = ray
        self.names = names
        self.results = results
        self.finish = finish
        self.upload = upload
        self.retries = retries
        self.cpus = max(1, int(getattr(server, "cpus", 1) or 1))
        if jobs is None:
            offered = float(ray.cluster_resources().get("CPU", 1.0))
            jobs = max(1, int(offered // self.cpus))
        self.jobs = min(jobs, len(todo))
        self.queue: Deque[int] = deque(todo)
        self.actor_class = ray.remote(num_cpus=self.cpus, max_restarts=0,
                                      max_task_retries=0)(_Worker)
        self.args = (server, options, timeout, realtime)
        self.starting: Dict[Any, Any] = {}  # ready() ref -> actor
        self.idle: List[Any] = []
        self.busy: Dict[Any, Tuple[Any, int]] = {}  # transcribe() ref -> (actor, index)
        self.actors: List[Any] = []
        self.broken: Optional[BaseException] = None

    def _start_actor(self) -> None:
        actor = self.actor_class.remote(*self.args)
        self.actors.append(actor)
        self.starting[actor.ready.remote()] = actor

    def run(self) -> None:
        from ray.exceptions import RayError, RayTaskError

        self.started_at = time.monotonic()
        for _ in range(self.jobs):
            self._start_actor()
        idle_since = time.monotonic()
        try:
            while self.queue or self.busy:
                while self.idle and self.queue:
                    self._dispatch(self.idle.pop(), self.queue.popleft())
                waiting = list(self.starting) + list(self.busy)
                if not self.busy and not self.starting and self.queue:
                    self._fail_rest(self.broken or WorkerLostError("no Ray actor is left"))
                    break
                if not self.busy and time.monotonic() - idle_since > START_TIMEOUT:
                    self._fail_rest(WorkerLostError(
                        f"no Ray actor could start in {START_TIMEOUT:g} s: the cluster has no "
                        f"room for one needing {self.cpus} CPU"))
                    break
                ready, _ = self.ray.wait(waiting, num_returns=1, timeout=0.2)
                for ref in ready:
                    if ref in self.starting:
                        self._started(ref, RayError)
                    else:
                        self._returned(ref, RayError, RayTaskError)
                if self.busy:
                    idle_since = time.monotonic()
        finally:
            for actor in self.actors:  # also on Ctrl-C: the running files stop with them
                with contextlib.suppress(Exception):
                    self.ray.kill(actor, no_restart=True)

    def _dispatch(self, actor: Any, index: int) -> None:
        path = self.names[index]
        self.results[index].attempts += 1
        data = None
        if self.upload:
            try:
                with open(path, "rb") as f:
                    data = self.ray.put(f.read())
            except OSError as exc:
                self.idle.append(actor)
                self.finish(index, None, exc)
                return
        self.busy[actor.transcribe.remote(path, data)] = (actor, index)

    def _started(self, ref: Any, ray_error: Type[BaseException]) -> None:
        actor = self.starting.pop(ref)
        try:
            why = self.ray.get(ref)
        except ray_error as exc:  # e.g. realtime_sync missing on that node
            logger.warning("a Ray actor could not start: %s", _last_line(exc))
            self.broken = WorkerLostError(f"no Ray actor could start: {_last_line(exc)} "
                                          "(is realtime-sync[ray] installed on every node?)")
            self._forget(actor)
            return
        if why is not None:
            logger.warning("a Ray actor cannot transcribe: %s", why)
            self.broken = why
            self._forget(actor)
            return
        logger.info("a Ray actor is ready %.2f s after the batch started",
                    time.monotonic() - self.started_at)
        self.idle.append(actor)

    def _returned(self, ref: Any, ray_error: Type[BaseException],
                  task_error: Type[BaseException]) -> None:
        actor, index = self.busy.pop(ref)
        try:
            status, value = self.ray.get(ref)
        except task_error as exc:  # the call itself raised: the file's own failure
            self.idle.append(actor)
            self.finish(index, None, RealtimeSyncError(_first_line(exc)))
            return
        except ray_error as exc:  # the actor's process or node died under the file
            self._forget(actor)
            tries = self.results[index].attempts
            if tries <= self.retries:
                logger.warning("%s: its Ray worker died (%s); trying again on another "
                               "(%d of %d)", self.names[index], _first_line(exc), tries,
                               self.retries)
                self.queue.appendleft(index)
            else:
                self.finish(index, None, WorkerLostError(
                    f"{self.names[index]}: the Ray worker transcribing it died {tries} times "
                    f"(last: {_first_line(exc)})"))
            if self.queue:
                self._start_actor()  # Ray places it on a node that is still there
            return
        if status == "broken":
            self.broken = value
            self._forget(actor)
            self.results[index].attempts -= 1
            self.queue.appendleft(index)
            return
        self.idle.append(actor)
        if status == "ok":
            self.finish(index, value, None)
        else:
            self.finish(index, None, value)

    def _forget(self, actor: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(actor, no_restart=True)

    def _fail_rest(self, error: BaseException) -> None:
        while self.queue:
            self.finish(self.queue.popleft(), None, error)


def _last_line(exc: BaseException) -> str:
    """The cause at the end of a Ray error's text (``ModuleNotFoundError: ...``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
