"""Measure the core install (no ``orjson``, no ``wsaccel``) from a venv that has the extras.

Call :func:`core_install` before anything imports ``websocket``, ``realtime_sync`` or
``openai``: both modules then fail to import, as they would without the ``fast`` extra, for
every client in the process (the bare loop and websocket-client included).
"""

from __future__ import annotations

import sys

__all__ = ["core_install", "install_name"]

FAST_MODULES = ("orjson", "wsaccel", "wsaccel.xormask", "wsaccel.utf8validator")


def core_install() -> None:
    """Block the ``fast`` extra's modules in this process (must run before the imports)."""
    loaded = [m for m in ("websocket", "realtime_sync") if m in sys.modules]
    if loaded:
        raise RuntimeError(f"core_install() must run before importing {', '.join(loaded)}")
    for name in FAST_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # "import orjson" -> ImportError


def install_name() -> str:
    """``"core"`` or ``"fast"``: which JSON and masking backends this process uses."""
    try:
        import orjson  # noqa: F401
        import wsaccel  # noqa: F401
    except ImportError:
        return "core"
    return "fast"
