"""Keep secrets out of logs, reprs and exception messages."""

from __future__ import annotations

import logging
import threading
from typing import Optional, Set

__all__ = ["register", "redact", "mask", "protect_loggers", "is_secret_header"]

_lock = threading.Lock()
_secrets: Set[str] = set()


def mask(secret: Optional[str]) -> str:
    """A display form of a secret that reveals nothing but its kind (``sk-…``)."""
    if not secret:
        return "<none>"
    prefix = secret[:3] if secret[:3] in ("sk-", "ek_") else ""
    return f"{prefix}…redacted"


def register(secret: Optional[str]) -> None:
    """Remember a secret so that :func:`redact` and the log filter hide it (any thread)."""
    if not secret or len(secret) < 6:
        return
    with _lock:
        _secrets.add(secret)
        _install_filters()


def protect_loggers() -> None:
    """Give loggers created since the last call the redacting filter (cheap; any thread)."""
    if _secrets:
        with _lock:
            _install_filters()


def _install_filters() -> None:
    """Attach the redacting filter to websocket-client's logger and to ours.

    Logger filters do not propagate to child loggers, so each ``realtime_sync.*`` logger that
    exists gets one (modules create theirs at import time).
    """
    names = ["websocket", "realtime_sync"] + [
        name for name in list(logging.root.manager.loggerDict) if name.startswith("realtime_sync.")
    ]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
            logger.addFilter(_RedactingFilter())


_SECRET_HEADER_WORDS = ("key", "token", "secret", "auth", "cookie", "password")


def is_secret_header(name: str) -> bool:
    """True for header names whose values are credentials (``Authorization``, ``X-Api-Key``,
    ``Cookie``...)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_HEADER_WORDS)


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` by its masked form."""
    if not _secrets:
        return text
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


class _RedactingFilter(logging.Filter):
    """A logging filter that redacts registered secrets from every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - never break logging
                return True
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
        return True
