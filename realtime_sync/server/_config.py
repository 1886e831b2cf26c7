"""Session objects of the local server: GA defaults, ``session.update`` validation and merge.

Pure functions, no I/O; any thread may call them.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional

from .. import models

__all__ = [
    "SessionError",
    "default_session",
    "apply_update",
    "DEFAULT_SERVER_VAD",
    "LOGPROBS_INCLUDE",
]

LOGPROBS_INCLUDE = "item.input_audio_transcription.logprobs"
DEFAULT_SERVER_VAD: Dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
}
_REALTIME_VAD_EXTRAS: Dict[str, Any] = {
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
_PCM = {"type": "audio/pcm", "rate": 24000}
_REALTIME_KEYS = {
    "type", "output_modalities", "model", "instructions", "audio", "include", "tracing",
    "tools", "tool_choice", "parallel_tool_calls", "reasoning", "max_output_tokens",
    "truncation", "prompt",
}
_TRANSCRIPTION_KEYS = {"type", "audio", "include"}
_INPUT_KEYS = {"format", "transcription", "noise_reduction", "turn_detection"}
_OUTPUT_KEYS = {"format", "voice", "speed"}
_TRANSCRIPTION_FIELDS = {"model", "language", "languages", "prompt", "keywords", "delay"}
_DELAYS = {"minimal", "low", "medium", "high", "xhigh"}
_EAGERNESS = {"low", "medium", "high", "auto"}
_SERVER_VAD_KEYS = {
    "type", "threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms",
    "create_response", "interrupt_response",
}
_SEMANTIC_VAD_KEYS = {"type", "eagerness", "create_response", "interrupt_response"}


class SessionError(Exception):
    """A rejected ``session.update``; becomes an ``error`` event."""

    def __init__(self, code: str, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def default_session(kind: str, session_id: str, expires_at: int,
                    model: Optional[str] = None) -> Dict[str, Any]:
    """The session object a fresh socket reports in ``session.created`` (GA shapes)."""
    if kind == "transcription":
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "expires_at": expires_at,
            "audio": {
                "input": {
                    "format": dict(_PCM),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": dict(DEFAULT_SERVER_VAD),
                }
            },
            "include": None,
        }
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model or models.DEFAULT_CONVERSATION_MODEL,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful assistant running on a local test server.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": dict(_PCM),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(DEFAULT_SERVER_VAD, **_REALTIME_VAD_EXTRAS),
            },
            "output": {"format": dict(_PCM), "voice": "marin", "speed": 1.0},
        },
        "include": None,
    }


def _unknown(obj: Mapping[str, Any], allowed: set, path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise SessionError("unknown_parameter", f"Unknown parameter: '{path}.{key}'.",
                               f"{path}.{key}")


def _object(value: Any, path: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise SessionError("invalid_type",
                           f"Invalid type for '{path}': expected an object, but got "
                           f"{type(value).__name__} instead.", path)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any, path: str, low: Optional[int] = None, high: Optional[int] = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SessionError("invalid_type", f"Invalid type for '{path}': expected an integer.",
                           path)
    if low is not None and value < low:
        raise SessionError("integer_below_min_value",
                           f"Invalid '{path}': integer below minimum value. Expected a value "
                           f">= {low}, but got {value} instead.", path)
    if high is not None and value > high:
        raise SessionError("integer_above_max_value",
                           f"Invalid '{path}': integer above maximum value. Expected a value "
                           f"<= {high}, but got {value} instead.", path)
    return value


def _number(value: Any, path: str, low: float, high: float) -> float:
    if not _is_number(value):
        raise SessionError("invalid_type", f"Invalid type for '{path}': expected a number.", path)
    if value < low:
        raise SessionError("decimal_below_min_value",
                           f"Invalid '{path}': decimal below minimum value. Expected a value "
                           f">= {low}, but got {value} instead.", path)
    if value > high:
        raise SessionError("decimal_above_max_value",
                           f"Invalid '{path}': decimal above maximum value. Expected a value "
                           f"<= {high}, but got {value} instead.", path)
    return float(value)


def _enum(value: Any, allowed: set, path: str) -> str:
    if value not in allowed:
        raise SessionError("invalid_value",
                           f"Invalid value: '{value}'. Supported values are: "
                           + ", ".join(f"'{a}'" for a in sorted(allowed)) + ".", path)
    return str(value)


def _string(value: Any, path: str, nullable: bool = True) -> Optional[str]:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise SessionError("invalid_type", f"Invalid type for '{path}': expected a string.", path)
    return value


def _format(value: Any, path: str) -> Dict[str, Any]:
    fmt = _object(value, path)
    kind = _enum(fmt.get("type"), {"audio/pcm", "audio/pcmu", "audio/pcma"}, path + ".type")
    if kind == "audio/pcm":
        _unknown(fmt, {"type", "rate"}, path)
        rate = fmt.get("rate", 24000)
        if rate is None:
            rate = 24000
        _int(rate, path + ".rate", 24000, 24000)
        return {"type": kind, "rate": 24000}
    _unknown(fmt, {"type"}, path)
    return {"type": kind}


def _turn_detection(value: Any, path: str, realtime: bool) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    td = _object(value, path)
    kind = _enum(td.get("type"), {"server_vad", "semantic_vad"}, path + ".type")
    if kind == "semantic_vad":
        _unknown(td, _SEMANTIC_VAD_KEYS, path)
        out: Dict[str, Any] = {"type": kind, "eagerness": "auto"}
        if td.get("eagerness") is not None:
            out["eagerness"] = _enum(td["eagerness"], _EAGERNESS, path + ".eagerness")
    else:
        _unknown(td, _SERVER_VAD_KEYS, path)
        out = dict(DEFAULT_SERVER_VAD)
        if td.get("threshold") is not None:
            out["threshold"] = _number(td["threshold"], path + ".threshold", 0.0, 1.0)
        for name in ("prefix_padding_ms", "silence_duration_ms"):
            if td.get(name) is not None:
                out[name] = _int(td[name], f"{path}.{name}", 0)
        if realtime:
            out["idle_timeout_ms"] = None
        if td.get("idle_timeout_ms") is not None:
            out["idle_timeout_ms"] = _int(td["idle_timeout_ms"], path + ".idle_timeout_ms",
                                          5000, 30000)
    for name in ("create_response", "interrupt_response"):
        if td.get(name) is not None:
            if not isinstance(td[name], bool):
                raise SessionError("invalid_type",
                                   f"Invalid type for '{path}.{name}': expected a boolean.",
                                   f"{path}.{name}")
            out[name] = td[name]
        elif realtime:
            out[name] = True
    return out


def _transcription(value: Any, path: str) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    tr = _object(value, path)
    _unknown(tr, _TRANSCRIPTION_FIELDS, path)
    model = tr.get("model")
    if not isinstance(model, str) or not model:
        code = "invalid_value" if isinstance(model, str) else "missing_required_parameter"
        raise SessionError(code, f"Missing or empty '{path}.model': expected a transcription "
                           "model name.", path + ".model")
    out: Dict[str, Any] = {
        "model": model,
        "language": _string(tr.get("language"), path + ".language"),
        "prompt": _string(tr.get("prompt"), path + ".prompt"),
    }
    if tr.get("language") is not None and tr.get("languages") is not None:
        raise SessionError("invalid_value",
                           "Only one of 'language' and 'languages' may be set.",
                           path + ".languages")
    for name in ("languages", "keywords"):
        if tr.get(name) is not None:
            items = tr[name]
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise SessionError("invalid_type",
                                   f"Invalid type for '{path}.{name}': expected an array of "
                                   "strings.", f"{path}.{name}")
            if name == "keywords" and any(c in k for k in items for c in "<>\r\n"):
                raise SessionError("invalid_value",
                                   "Keywords must not contain '<', '>', CR or LF.",
                                   f"{path}.{name}")
            out[name] = list(items)
    if tr.get("delay") is not None:
        _enum(tr["delay"], _DELAYS, path + ".delay")  # accepted but not echoed, like OpenAI
    return out


def _mcp_tool(tool: Dict[str, Any], path: str) -> None:
    """A remote MCP server tool: a ``server_label`` and a ``server_url`` or ``connector_id``."""
    if not isinstance(tool.get("server_label"), str) or not tool["server_label"]:
        raise SessionError("missing_required_parameter",
                           f"Missing required parameter: '{path}.server_label'.",
                           path + ".server_label")
    if not tool.get("server_url") and not tool.get("connector_id"):
        raise SessionError("missing_required_parameter",
                           f"Missing required parameter: '{path}.server_url' (or "
                           f"'{path}.connector_id').", path + ".server_url")


def noise_reduction(value: Any, path: str) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    nr = _object(value, path)
    _unknown(nr, {"type", "strength"}, path)
    out: Dict[str, Any] = {"type": _enum(nr.get("type"), {"near_field", "far_field"},
                                         path + ".type")}
    if nr.get("strength") is not None:
        out["strength"] = _number(nr["strength"], path + ".strength", 0.0, 1.0)
    return out


def _voice(value: Any, path: str) -> Any:
    """A voice name, or a custom voice object ``{"id": "voice_..."}`` (VoiceIdsOrCustomVoice)."""
    if isinstance(value, dict):
        _unknown(value, {"id"}, path)
        return {"id": _string(value.get("id"), path + ".id", nullable=False)}
    return _string(value, path, nullable=False)


def _check_model_rules(session: Mapping[str, Any]) -> None:
    """Refuse what the transcription model of a transcription session does not allow, as
    :mod:`realtime_sync.models` records it (unknown models pass)."""
    inp = session.get("audio", {}).get("input", {})
    tr = inp.get("transcription") or {}
    model = tr.get("model")
    if not model:
        return
    path = "session.audio.input"
    for option in models.TRANSCRIPTION_OPTIONS:
        if tr.get(option) is not None and not models.takes_option(model, option):
            raise SessionError(
                "invalid_value",
                f"The '{option}' parameter is not supported with model '{model}'.",
                f"{path}.transcription.{option}")
    if session.get("type") == "transcription" and inp.get("turn_detection") is not None \
            and not models.server_vad_allowed(model):
        raise SessionError(
            "invalid_value",
            f"Turn detection is not supported with model '{model}'. Set "
            f"'{path}.turn_detection' to null and commit the input audio buffer yourself.",
            f"{path}.turn_detection")


def _include(value: Any, path: str) -> Optional[List[str]]:
    if value is None:
        return None
    if not isinstance(value, list):
        raise SessionError("invalid_type", f"Invalid type for '{path}': expected an array.", path)
    return [_enum(v, {LOGPROBS_INCLUDE}, path) for v in value]


def apply_update(current: Mapping[str, Any], update: Any) -> Dict[str, Any]:
    """Validate ``update`` (the ``session`` of a ``session.update``) against the session
    ``current`` and return the merged effective session; raise :class:`SessionError` and
    change nothing when any part is invalid.
    """
    kind = current["type"]
    realtime = kind == "realtime"
    upd = _object(update, "session")
    if "type" not in upd:
        raise SessionError("missing_required_parameter",
                           "Missing required parameter: 'session.type'.", "session.type")
    if upd["type"] != kind:
        if upd["type"] in ("realtime", "transcription"):
            raise SessionError(
                "invalid_value",
                f"Passing a {upd['type']} session update event to a {kind} session is not "
                "allowed.", "session.type")
        _enum(upd["type"], {"realtime", "transcription"}, "session.type")
    _unknown(upd, _REALTIME_KEYS if realtime else _TRANSCRIPTION_KEYS, "session")
    new = copy.deepcopy(dict(current))

    if "audio" in upd and upd["audio"] is not None:
        audio = _object(upd["audio"], "session.audio")
        _unknown(audio, {"input", "output"} if realtime else {"input"}, "session.audio")
        cur_audio = new.setdefault("audio", {})
        if audio.get("input") is not None:
            inp = _object(audio["input"], "session.audio.input")
            _unknown(inp, _INPUT_KEYS, "session.audio.input")
            cur_in = cur_audio.setdefault("input", {})
            p = "session.audio.input"
            if "format" in inp:
                cur_in["format"] = _format(inp["format"], p + ".format") \
                    if inp["format"] is not None else dict(_PCM)
            if "transcription" in inp:
                cur_in["transcription"] = _transcription(inp["transcription"],
                                                         p + ".transcription")
            if "noise_reduction" in inp:
                cur_in["noise_reduction"] = noise_reduction(inp["noise_reduction"],
                                                            p + ".noise_reduction")
            if "turn_detection" in inp:
                cur_in["turn_detection"] = _turn_detection(inp["turn_detection"],
                                                           p + ".turn_detection", realtime)
        if realtime and audio.get("output") is not None:
            out = _object(audio["output"], "session.audio.output")
            _unknown(out, _OUTPUT_KEYS, "session.audio.output")
            cur_out = cur_audio.setdefault("output", {})
            p = "session.audio.output"
            if out.get("format") is not None:
                cur_out["format"] = _format(out["format"], p + ".format")
            if out.get("voice") is not None:
                cur_out["voice"] = _voice(out["voice"], p + ".voice")
            if out.get("speed") is not None:
                cur_out["speed"] = _number(out["speed"], p + ".speed", 0.25, 1.5)
    if "include" in upd:
        new["include"] = _include(upd["include"], "session.include")
    if realtime:
        _apply_realtime(new, upd)
    _check_model_rules(new)
    return new


def _apply_realtime(new: Dict[str, Any], upd: Mapping[str, Any]) -> None:
    if upd.get("output_modalities") is not None:
        mods = upd["output_modalities"]
        if not isinstance(mods, list) or len(mods) != 1 or mods[0] not in ("audio", "text"):
            raise SessionError("invalid_value",
                               "Invalid 'session.output_modalities': expected ['audio'] or "
                               "['text'].", "session.output_modalities")
        new["output_modalities"] = list(mods)
    for name in ("instructions", "model"):
        if upd.get(name) is not None:
            new[name] = _string(upd[name], "session." + name, nullable=False)
    if "tools" in upd:
        tools = upd["tools"] if upd["tools"] is not None else []
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise SessionError("invalid_type",
                               "Invalid type for 'session.tools': expected an array of objects.",
                               "session.tools")
        for i, tool in enumerate(tools):
            if tool.get("type", "function") == "function" and not tool.get("name"):
                raise SessionError("missing_required_parameter",
                                   f"Missing required parameter: 'session.tools[{i}].name'.",
                                   f"session.tools[{i}].name")
            if tool.get("type") == "mcp":
                _mcp_tool(tool, f"session.tools[{i}]")
        new["tools"] = copy.deepcopy(tools)
    if upd.get("tool_choice") is not None:
        choice = upd["tool_choice"]
        if isinstance(choice, str):
            _enum(choice, {"auto", "none", "required"}, "session.tool_choice")
        elif not isinstance(choice, dict):
            raise SessionError("invalid_type", "Invalid type for 'session.tool_choice'.",
                               "session.tool_choice")
        new["tool_choice"] = copy.deepcopy(choice)
    if upd.get("max_output_tokens") is not None:
        mot = upd["max_output_tokens"]
        if mot != "inf":
            _int(mot, "session.max_output_tokens", 1, 4096)
        new["max_output_tokens"] = mot
    for name in ("tracing", "truncation", "prompt", "reasoning", "parallel_tool_calls"):
        if name in upd:
            new[name] = copy.deepcopy(upd[name])
