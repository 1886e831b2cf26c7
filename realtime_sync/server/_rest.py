"""The REST side of the local server: client secrets and SIP call control, offline.

OpenAI's REST endpoints that a Realtime app calls through the official ``openai`` SDK:

- ``POST /v1/realtime/client_secrets`` and ``/v1/realtime/translations/client_secrets``:
  mint an ephemeral key (``ek_...``) bound to a session config; the WebSocket accepts it in
  place of the server's key and starts its session with that config.
- ``POST /v1/realtime/calls/{call_id}/accept|reject|refer|hangup``: answer an incoming SIP
  call. A call "rings" when a test or example calls :meth:`RestApi.ring`, standing in for
  OpenAI's ``realtime.call.incoming`` webhook; once accepted, ``/v1/realtime?call_id=...``
  joins its session.

Everything a client sends is hostile: bodies are capped at :data:`MAX_BODY` bytes, must be
JSON objects, and every answer is an OpenAI-shaped error or result. Served by a stdlib
``ThreadingHTTPServer`` on its own port (the ``websockets`` server only speaks GET upgrades).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._config import SessionError, apply_update, default_session

log = logging.getLogger(__name__)

__all__ = ["RestApi", "RestFront", "Call", "Secret", "MAX_BODY"]

MAX_BODY = 1024 * 1024
"""The largest request body accepted (bytes); a bigger one is refused with 413."""

_CALL_PATH = re.compile(
    r"^/v1/realtime/calls/([A-Za-z0-9_\-]{1,128})/(accept|reject|refer|hangup)$")

Answer = Tuple[int, Optional[Dict[str, Any]]]


def _error(status: int, message: str, code: Optional[str] = None,
           param: Optional[str] = None, type_: str = "invalid_request_error") -> Answer:
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class Secret:
    """An ephemeral key and the session config it starts."""

    value: str
    expires_at: float
    session: Dict[str, Any]
    """The effective session (what the minting answer reported)."""
    update: Dict[str, Any]
    """The config as given (applied like a ``session.update`` when a socket uses the key)."""


@dataclass
class Call:
    """One SIP call: ``ringing`` → ``accepted`` → ``ended`` (or ``rejected``/``referred``)."""

    call_id: str
    status: str = "ringing"
    session: Optional[Dict[str, Any]] = None
    """The accept body (applied like a ``session.update`` when the socket joins)."""
    refer_to: Optional[str] = None
    on_end: List[Callable[[], None]] = field(default_factory=list)


def _fresh(kind: str, model: Any) -> Dict[str, Any]:
    return default_session(kind, "sess_" + secrets.token_hex(8), int(time.time()) + 3600,
                           model if isinstance(model, str) else None)


class RestApi:
    """State and rules of the REST endpoints (thread-safe; no I/O)."""

    def __init__(self, api_key: Optional[str]) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._secrets: Dict[str, Secret] = {}
        self._calls: Dict[str, Call] = {}

    # ---- for tests, examples and the WebSocket side ----------------------------------------

    def ring(self) -> str:
        """A new incoming SIP call (what OpenAI's ``realtime.call.incoming`` webhook
        announces); returns its ``call_id``. Any thread."""
        call_id = "rtc_" + secrets.token_hex(12)
        with self._lock:
            self._calls[call_id] = Call(call_id)
        return call_id

    def call(self, call_id: str) -> Optional[Call]:
        """The call with this id, if any (any thread)."""
        with self._lock:
            return self._calls.get(call_id)

    def secret(self, key: Optional[str]) -> Optional[Secret]:
        """The unexpired ephemeral key ``key``, if it is one (any thread)."""
        if not key or not key.startswith("ek_"):
            return None
        with self._lock:
            found = self._secrets.get(key)
            if found is not None and found.expires_at <= time.time():
                del self._secrets[key]
                return None
            return found

    # ---- HTTP ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> Answer:
        """Answer one request: (HTTP status, JSON body or None). Any thread."""
        auth = str(headers.get("Authorization") or "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not key:
            return _error(401, "You didn't provide an API key.", "missing_api_key")
        if key.startswith("ek_") or (self.api_key is not None and key != self.api_key):
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if method != "POST":
            return _error(405, f"Method {method} is not allowed here.", "method_not_allowed")
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error(400, "The body is not valid JSON.", "invalid_json")
        if not isinstance(data, dict):
            return _error(400, "The body must be a JSON object.", "invalid_type")
        path = path.split("?", 1)[0].rstrip("/")
        if path == "/v1/realtime/client_secrets":
            return self._mint(data, translation=False)
        if path == "/v1/realtime/translations/client_secrets":
            return self._mint(data, translation=True)
        match = _CALL_PATH.match(path)
        if match:
            return self._call_action(match.group(1), match.group(2), data)
        return _error(404, f"Unknown path {path!r}.", "not_found")

    def _mint(self, data: Dict[str, Any], translation: bool) -> Answer:
        expires = data.get("expires_after") or {}
        seconds = expires.get("seconds", 600) if isinstance(expires, dict) else None
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 10 <= seconds <= 7200:
            return _error(400, "expires_after.seconds must be an integer from 10 to 7200.",
                          "invalid_value", "expires_after.seconds")
        wanted = data.get("session")
        if translation and not isinstance(wanted, dict):
            return _error(400, "Missing required parameter: 'session'.",
                          "missing_required_parameter", "session")
        wanted = dict(wanted or {"type": "realtime"})
        if translation:
            session = self._translation_session(dict(wanted))
            if isinstance(session, tuple):
                return session
        else:
            kind = wanted.get("type", "realtime")
            if kind not in ("realtime", "transcription"):
                return _error(400, "session.type must be 'realtime' or 'transcription'.",
                              "invalid_value", "session.type")
            try:
                session = apply_update(_fresh(kind, wanted.get("model")), wanted)
            except SessionError as exc:
                return _error(400, exc.message, exc.code, exc.param)
        value = "ek_" + secrets.token_urlsafe(24)
        expires_at = int(time.time()) + seconds
        with self._lock:
            now = time.time()
            for old in [k for k, s in self._secrets.items() if s.expires_at <= now]:
                del self._secrets[old]
            if len(self._secrets) >= 10000:
                return _error(429, "Too many live client secrets.", "rate_limit_exceeded",
                              type_="rate_limit_error")
            self._secrets[value] = Secret(value, expires_at, dict(session), wanted)
        return 200, {"value": value, "expires_at": expires_at, "session": session}

    @staticmethod
    def _translation_session(wanted: Dict[str, Any]) -> Any:
        from ._translation import validate_client_event

        model = wanted.pop("model", None)
        wanted.pop("type", None)
        if not isinstance(model, str) or not model:
            return _error(400, "Missing required parameter: 'session.model'.",
                          "missing_required_parameter", "session.model")
        try:
            validate_client_event({"type": "session.update", "session": wanted})
        except SessionError as exc:
            return _error(400, exc.message, exc.code, exc.param)
        audio = wanted.get("audio") or {}
        return {"type": "translation", "id": "sess_" + secrets.token_hex(8), "model": model,
                "expires_at": 0, "audio": {"input": (audio.get("input") or {}),
                                           "output": (audio.get("output") or {})}}

    def _call_action(self, call_id: str, action: str, data: Dict[str, Any]) -> Answer:
        with self._lock:
            call = self._calls.get(call_id)
            if call is None:
                return _error(404, f"Call {call_id!r} not found.", "call_not_found")
            if action == "accept":
                if call.status != "ringing":
                    return _error(409, f"Call {call_id!r} is {call.status}, not ringing.",
                                  "call_not_ringing")
                if data.get("type") != "realtime":
                    return _error(400, "Missing required parameter: 'type' ('realtime').",
                                  "missing_required_parameter", "type")
                try:
                    apply_update(_fresh("realtime", data.get("model")), data)
                except SessionError as exc:
                    return _error(400, exc.message, exc.code, exc.param)
                call.session = data
                call.status = "accepted"
                return 200, None
            if action == "reject":
                if call.status != "ringing":
                    return _error(409, f"Call {call_id!r} is {call.status}, not ringing.",
                                  "call_not_ringing")
                call.status = "rejected"
                return 200, None
            if call.status != "accepted":
                return _error(409, f"Call {call_id!r} is {call.status}, not active.",
                              "call_not_active")
            if action == "refer":
                target = data.get("target_uri")
                if not isinstance(target, str) or not target.startswith(("tel:", "sip:")):
                    return _error(400, "target_uri must be a tel: or sip: URI.",
                                  "invalid_value", "target_uri")
                call.refer_to = target
            call.status = "referred" if action == "refer" else "ended"
            ends, call.on_end = call.on_end, []
        for end in ends:  # close the call's WebSocket sessions (outside the lock)
            end()
        return 200, None


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    timeout = 10.0  # a client that stops sending is dropped
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("rest %s - %s", self.address_string(), format % args)

    def _answer(self, status: int, body: Optional[Dict[str, Any]]) -> None:
        data = json.dumps(body).encode("utf-8") if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._answer(*_error(413, f"The body must be 0 to {MAX_BODY} bytes.",
                                 "body_too_large"))
            return
        body = self.rfile.read(length) if length else b""
        self._answer(*self.server.api.handle(self.command, self.path, self.headers, body))

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve
    do_DELETE = _serve


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    api: RestApi


class RestFront:
    """Serves a :class:`RestApi` on ``http://host:port/v1`` (``rs-server-rest-<port>``)."""

    def __init__(self, api: RestApi, host: str, port: int = 0) -> None:
        self._http = _HttpServer((host, port), _Handler)
        self._http.api = api
        self.host = host
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={
            "poll_interval": 0.1}, name=f"rs-server-rest-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL for the ``openai`` SDK (``OpenAI(base_url=...)``)."""
        return f"http://{self.host}:{self.port}/v1"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread (any thread but the server's own)."""
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout)
