"""Log hygiene for the local server: no credential in ``websockets``' handshake log, and one
line (not a traceback) per abandoned handshake.

With ``--debug`` the ``websockets`` library logs every request header (``< Authorization:
Bearer sk-...``) and the request path (``?api-key=...``). :class:`RedactSecrets` rewrites such
records before any handler sees them; it is attached to the logger the server hands to
``websockets``. Runs on whichever thread logs.
"""

from __future__ import annotations

import logging
import re
from typing import List

__all__ = ["RedactSecrets", "QuietHandshakeFailures", "redact", "REDACTED", "SECRET_HEADERS"]

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "api-key", "x-api-key", "openai-api-key",
    "cookie", "set-cookie", "x-auth-token",
})
"""Header names whose value is never logged (compared in lower case)."""

_PATTERNS = (
    # Authorization-style values anywhere in a message
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[^\s,;'\"]+"), r"\1 " + REDACTED),
    # the browser sub-protocol that carries the key
    (re.compile(r"(?i)(openai-insecure-api-key\.)[^\s,;'\"]+"), r"\1" + REDACTED),
    # keys in a query string or form: ?api-key=..., &key=..., access_token=...
    (re.compile(r"(?i)([?&;](?:api[-_]?key|key|access[-_]?token|token|secret|client_secret)=)"
                r"[^&\s'\"#]*"), r"\1" + REDACTED),
    # a header line inside a larger text (e.g. a logged request or exception)
    (re.compile(r"(?im)^(\s*(?:[<>]\s*)?(?:authorization|proxy-authorization|api-key|x-api-key|"
                r"openai-api-key|cookie|set-cookie|x-auth-token)\s*:\s*).+$"), r"\1" + REDACTED),
    # user info in a URL: ws://user:secret@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"), r"\1" + REDACTED + "@"),
)


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``[redacted]`` (any thread)."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a log record so that no credential header, key or token is shown.

    ``"%s: %s"``-style header records get their value replaced when the header name is a
    credential (:data:`SECRET_HEADERS`); then the formatted message and a traceback's text
    go through :func:`redact`. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging's name
        args = record.args
        if (isinstance(args, tuple) and len(args) >= 2 and isinstance(args[0], str)
                and args[0].strip().lower() in SECRET_HEADERS):
            record.args = (args[0], REDACTED) + tuple(args[2:])
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_PEER_GONE = (EOFError, ConnectionError, TimeoutError)


class QuietHandshakeFailures(logging.Filter):
    """One line, not a traceback, for a handshake a peer abandoned (EOF, reset, timeout).

    ``websockets`` 13-15 log each such socket at ERROR with three chained tracebacks; a
    crowd of half-open connections would flood the log. The record becomes one INFO line
    naming the cause; any other failure keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging's name
        if record.exc_info is None or "handshake failed" not in str(record.msg):
            return True
        exc = record.exc_info[1]
        causes: List[BaseException] = []
        while exc is not None and len(causes) < 8:
            causes.append(exc)
            exc = exc.__cause__ or exc.__context__
        if not any(isinstance(c, _PEER_GONE) for c in causes):
            return True
        record.msg = f"{record.getMessage()}: {causes[0]} ({causes[-1]})"
        record.args = None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True
