"""Where to connect and how to authenticate: OpenAI, Azure, a custom or local URL."""

from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from ..models import DEFAULT_CONVERSATION_MODEL, warn_if_deprecated
from . import credentials as _secrets

__all__ = ["Endpoint", "DEFAULT_URL", "DEFAULT_MODEL", "translation_url", "same_origin"]

logger = logging.getLogger(__name__)

DEFAULT_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL = DEFAULT_CONVERSATION_MODEL

KeySource = Union[str, Callable[[], Optional[str]], None]
HeaderSource = Union[Mapping[str, str], Callable[[], Mapping[str, str]], None]


def translation_url(url: Optional[str] = None) -> str:
    """The translation WebSocket URL (``.../v1/realtime/translations``) for a Realtime URL.

    ``url`` may be the Realtime URL of a server (``wss://api.openai.com/v1/realtime``, a local
    ``ws://127.0.0.1:8765/v1/realtime``) or already end in ``/translations``; ``intent`` and
    ``model`` query parameters are dropped (the translator sets ``model``).

    Raises:
        ConfigurationError: the path is neither ``.../realtime`` nor ``.../realtime/translations``.
    """
    parts = urlsplit(url or DEFAULT_URL)
    path = parts.path.rstrip("/")
    if path.endswith("/realtime"):
        path += "/translations"
    elif not path.endswith("/realtime/translations"):
        raise ConfigurationError(
            f"a translation URL ends in /v1/realtime or /v1/realtime/translations, not {path!r}")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("intent", "model")]
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        import ipaddress  # on first use: keeps ``import realtime_sync`` light

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_origin(url: str, other: str) -> bool:
    """True when both are ws/wss URLs with the same scheme, host and port (a handshake
    redirect the transport follows with the key must be)."""
    origin = _origin(url)
    return origin is not None and origin == _origin(other)


def _origin(url: str) -> Optional[Tuple[str, str, int]]:
    """(scheme, host, port) of a ws/wss URL, or None when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "wss" else 80)


class Endpoint:
    """Builds the URL and handshake headers for each connection attempt.

    The key and headers may be callables; they are evaluated on every attempt (token refresh).
    """

    def __init__(
        self,
        *,
        url: Optional[str] = None,
        api_key: KeySource = None,
        model: Optional[str] = None,
        intent: Optional[str] = None,
        headers: HeaderSource = None,
        azure_endpoint: Optional[str] = None,
        azure_deployment: Optional[str] = None,
        allow_insecure: bool = False,
        call_id: Optional[str] = None,
    ) -> None:
        if intent is not None and intent not in ("transcription", "realtime"):
            raise ConfigurationError(
                f"intent must be 'transcription' or 'realtime', not {intent!r}"
            )
        if intent == "transcription" and model:
            raise ConfigurationError(
                "a transcription session takes no model in the URL: pass intent='transcription'"
                " and set the transcription model in the session config"
            )
        if call_id is not None and (not isinstance(call_id, str) or not call_id.strip()):
            raise ConfigurationError(f"call_id must be a non-empty string, not {call_id!r}")
        if headers is not None and not (callable(headers) or isinstance(headers, Mapping)):
            raise TypeError("headers must be a dict or a callable returning a dict")
        if api_key is not None and not (callable(api_key) or isinstance(api_key, str)):
            raise TypeError("api_key must be a string or a callable returning one")
        self.azure = bool(azure_endpoint or azure_deployment)
        if self.azure:
            if not (azure_endpoint and azure_deployment):
                raise ConfigurationError("Azure needs both azure_endpoint and azure_deployment")
            if url:
                raise ConfigurationError("pass either url or azure_endpoint, not both")
            base = azure_endpoint.rstrip("/")
            for old, new in (("https://", "wss://"), ("http://", "ws://")):
                if base.startswith(old):
                    base = new + base[len(old):]
            if "://" not in base:
                base = "wss://" + base
            url = base + "/openai/v1/realtime"
            if intent != "transcription":
                model = azure_deployment
        self._api_key = api_key
        self._headers = headers
        self.allow_insecure = allow_insecure
        self._url = self._build_url(url or DEFAULT_URL, model, intent, call_id)
        self.url = _secrets.mask_url(self._url)
        """The URL for display: user info and credential-like query values masked."""
        if model and not self.azure:  # Azure deployment names are the user's own
            warn_if_deprecated(model)
        parts = urlsplit(self._url)
        if parts.scheme not in ("ws", "wss"):
            raise ConfigurationError(f"url must start with ws:// or wss://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ConfigurationError(f"url has no host: {self.url!r}")
        if parts.username is not None:
            logger.warning("the user info in %s is not sent to the server: pass the key as "
                           "api_key= (or headers=)", self.url)
        self.host = parts.hostname
        self.secure = parts.scheme == "wss"
        self.is_openai = self.host == "api.openai.com"
        if isinstance(api_key, str):
            _secrets.register(api_key)

    @staticmethod
    def _build_url(url: str, model: Optional[str], intent: Optional[str],
                   call_id: Optional[str] = None) -> str:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        if call_id:  # a SIP call's session: the call's accept chose its model
            query["call_id"] = call_id.strip()
        if intent:
            query["intent"] = intent
        if model:
            query["model"] = model
        if not any(k in query for k in ("model", "intent", "call_id")):
            query["model"] = DEFAULT_MODEL
        if query.get("intent") == "transcription":
            query.pop("model", None)
        return urlunsplit(parts._replace(query=urlencode(query)))

    @property
    def intent(self) -> str:
        """``"transcription"``, ``"translation"`` (a ``/realtime/translations`` URL) or
        ``"realtime"``, from the URL."""
        parts = urlsplit(self.url)
        if parts.path.rstrip("/").endswith("/realtime/translations"):
            return "translation"
        query = dict(parse_qsl(parts.query))
        return "transcription" if query.get("intent") == "transcription" else "realtime"

    def key(self) -> Optional[str]:
        """The API key for this attempt (evaluates a callable; any thread)."""
        source = self._api_key
        if source is None:
            env = "AZURE_OPENAI_API_KEY" if self.azure else "OPENAI_API_KEY"
            value = os.environ.get(env) or (
                os.environ.get("OPENAI_API_KEY") if self.azure else None
            )
        elif callable(source):
            value = source()
        else:
            value = source
        if value is not None and not isinstance(value, str):
            raise ConfigurationError("api_key callable must return a string")
        _secrets.register(value)
        return value or None

    def check(self) -> None:
        """Refuse configurations that would leak the key or cannot work, before any I/O.

        Raises:
            ConfigurationError: no key for OpenAI, or a key over cleartext ``ws://`` to a host
                that is not loopback (unless ``allow_insecure=True``).
        """
        key = self.key()
        if key is None and (self.is_openai or self.azure):
            raise ConfigurationError(
                "no API key: pass api_key= or set OPENAI_API_KEY"
                + (" (or AZURE_OPENAI_API_KEY)" if self.azure else "")
            )
        if key and not self.secure and not is_loopback(self.host) and not self.allow_insecure:
            raise ConfigurationError(
                f"refusing to send an API key in cleartext to {self.host} over ws://; use wss://,"
                " or pass allow_insecure=True for a trusted private network"
            )

    def resolve(self) -> Tuple[str, List[str]]:
        """URL and header lines for one connection attempt (the network thread calls it)."""
        self.check()
        key = self.key()
        extra: Dict[str, str] = {}
        if self._headers is not None:
            extra = dict(self._headers() if callable(self._headers) else self._headers)
        lines: List[str] = []
        if key:
            if self.azure:
                lines.append(f"api-key: {key}")
            else:
                lines.append(f"Authorization: Bearer {key}")
        for name, value in extra.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ConfigurationError("header names and values must be strings")
            if "\n" in name + value or "\r" in name + value:
                raise ConfigurationError(f"header {name!r} contains a line break")
            if _secrets.is_secret_header(name):
                _secrets.register(value)
            lines.append(f"{name}: {value}")
        return self._url, lines

    def __repr__(self) -> str:
        return f"Endpoint(url={self.url!r}, key={_secrets.mask(self.key())})"
