"""Keep secrets out of logs, reprs and exception messages."""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any, Optional, Set, Tuple, Union
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["register", "redact", "redact_frame", "redact_obj", "mask", "mask_url",
           "protect_loggers", "is_secret_header", "contains_secret"]

_lock = threading.Lock()
_secrets: Set[str] = set()
_encoded: Tuple[Tuple[bytes, bytes], ...] = ()  # (anchor, secret as UTF-8) for received bytes

_COMMON_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_\".:,{}[] ")
"""Bytes every burst of events is full of (base64 audio, JSON syntax, field names)."""


def _anchor(raw: bytes) -> bytes:
    """A byte of ``raw`` that Realtime traffic rarely holds (``-`` in ``sk-...``), or ``b""``.

    Looking for one byte is a ``memchr``, many times faster than looking for a short secret;
    where the byte does not occur, the secret cannot either."""
    for byte in raw:
        if byte not in _COMMON_BYTES:
            return bytes((byte,))
    return b""


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
    global _encoded
    with _lock:
        _secrets.add(secret)
        _encoded = tuple((_anchor(raw), raw) for raw in (s.encode("utf-8") for s in _secrets))
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


def mask_url(url: str) -> str:
    """``url`` for display: user info (``user:KEY@``) and the values of query parameters
    named like credentials (``api_key=``, ``token=``...) become ``***``; the password (or a
    lone user name) and those values are registered as secrets too, so that :func:`redact`
    hides them wherever else they appear.
    Any thread."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        secret = password if colon else user  # a user name alone may be a token
        register(secret)
        register(unquote(secret))
        netloc = f"***@{hostport}"
    query = parts.query
    if query:
        fields = query.split("&")
        for i, pair in enumerate(fields):
            name, eq, value = pair.partition("=")
            if eq and value and is_secret_header(unquote(name)):
                register(value)
                register(unquote(value))
                fields[i] = f"{name}=***"
        query = "&".join(fields)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` by its masked form."""
    if not _secrets:
        return text
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


def contains_secret(data: Union[bytes, bytearray]) -> bool:
    """True when a registered secret occurs in ``data`` (received bytes: a whole read buffer
    is searched once, so the frames inside a clean buffer need no search of their own)."""
    return any((not anchor or anchor in data) and raw in data for anchor, raw in _encoded)


def redact_frame(data: Any) -> Any:
    """A received frame (``str`` or UTF-8 ``bytes``) with every registered secret masked;
    the same object when none occurs (the common case costs one substring search)."""
    if not _secrets:
        return data
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, (bytes, bytearray)) and contains_secret(data):
        for secret in tuple(_secrets):
            raw = secret.encode("utf-8")
            if raw in data:
                data = bytes(data).replace(raw, mask(secret).encode("utf-8"))
    return data


def redact_obj(value: Any) -> Any:
    """``value`` with every registered secret masked in every string it holds (dicts and
    lists are copied only when something changed; other values are returned as they are)."""
    if not _secrets:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        items = {k: redact_obj(v) for k, v in value.items()}
        if any(items[k] is not v for k, v in value.items()):
            out = copy.copy(value)  # keeps the class (an Event stays an Event)
            out.update(items)
            return out
        return value
    if isinstance(value, list):
        new = [redact_obj(v) for v in value]
        return new if any(a is not b for a, b in zip(new, value)) else value
    return value


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
