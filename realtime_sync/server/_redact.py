"""Credentials never reach the local server's logs: a filter for ``websockets``' handshake log.

With ``--debug`` the ``websockets`` library logs every request header (``< Authorization:
Bearer sk-...``) and the request path (``?api-key=...``). :class:`RedactSecrets` rewrites such
records before any handler sees them; it is attached to the logger the server hands to
``websockets``. Runs on whichever thread logs.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactSecrets", "redact", "REDACTED", "SECRET_HEADERS"]

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
