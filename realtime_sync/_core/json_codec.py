"""JSON encoding and decoding: ``orjson`` when installed (the ``fast`` extra), else stdlib."""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, Union

__all__ = ["loads", "dumps", "salvage", "BACKEND"]

_loads: Callable[[Union[str, bytes]], Any]
_dumps: Callable[[Any], Union[str, bytes]]

def _check_finite(obj: Any, depth: int = 0) -> None:
    """Raise TypeError for NaN or infinite floats anywhere in ``obj`` (JSON has none)."""
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise TypeError(f"event is not JSON-serialisable: {obj!r} is not a JSON number")
    elif depth < 64:
        if isinstance(obj, dict):
            for value in obj.values():
                _check_finite(value, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                _check_finite(value, depth + 1)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_lone_surrogates(obj: Any) -> None:
    """Raise ValueError when a string in ``obj`` holds a lone surrogate (a valid ``\\uD83D``
    escape pair has become one character by now: what is left is not Unicode)."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                raise ValueError("a string holds a lone surrogate (not valid Unicode)")
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)
_scan = _decoder.scan_once  # type: ignore[attr-defined]  # json.loads's scanner


def _stdlib_loads(data: Union[str, bytes]) -> Any:
    """Parse with the stdlib, accepting and refusing what orjson does: UTF-8 only (no BOM, no
    encoded surrogates), no ``NaN``/``Infinity``, no lone surrogate escapes (``"\\ud800"``).

    The common case (an object with no surrounding whitespace) skips ``json.loads``'s
    wrappers; the surrogate check costs one search for a backslash."""
    if type(data) is bytes or type(data) is bytearray:
        text = bytes(data).decode("utf-8")  # strict: UnicodeDecodeError is a ValueError
    elif type(data) is str:
        text = data
    else:
        raise TypeError(f"JSON must be str or bytes, not {type(data).__name__}")
    obj: Any = None
    end = -1
    if text[:2] == '{"':
        try:
            obj, end = _scan(text, 0)
        except StopIteration:
            pass
    if end != len(text):
        obj = _decoder.decode(text)  # whitespace, other values, and every error message
    if "\\" in text and ("\\ud" in text or "\\uD" in text):
        _refuse_lone_surrogates(obj)
    return obj


try:  # pragma: no cover - depends on the environment
    import orjson as _orjson

    _loads = _orjson.loads

    def _dumps(obj: Any) -> Union[str, bytes]:
        _check_finite(obj)  # orjson would write NaN/Infinity as null
        try:
            return _orjson.dumps(obj)
        except TypeError as exc:
            raise TypeError(f"event is not JSON-serialisable: {exc}") from None

    BACKEND = "orjson"
except ImportError:  # pragma: no cover
    _loads = _stdlib_loads
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def _dumps(obj: Any) -> Union[str, bytes]:
        try:
            return _encoder.encode(obj)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event is not JSON-serialisable: {exc}") from None

    BACKEND = "json"


def loads(data: Union[str, bytes]) -> Any:
    """Parse JSON text; raises ``ValueError`` on malformed input, the same for both backends:
    invalid UTF-8 or a lone surrogate (escaped or encoded), ``NaN``/``Infinity``, and nesting
    deeper than the parser can go (about 1000 levels: orjson's limit is 1024, the stdlib's
    the interpreter's recursion limit) included."""
    try:
        return _loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def dumps(obj: Any) -> Union[str, bytes]:
    """Serialise to compact JSON (``bytes`` with orjson, ``str`` otherwise).

    Raises:
        TypeError: when the object holds a value JSON cannot represent.
    """
    return _dumps(obj)


_FIELD = re.compile(rb'"(type|item_id)"\s*:\s*"([^"\\]{1,200})"')
_SALVAGE_BYTES = 65536


def salvage(data: Union[str, bytes]) -> Dict[str, str]:
    """What can be told of a frame that does not parse: the first ``type`` and ``item_id``
    string fields in its first 64 kB, as ``event_type`` and ``item_id`` (either may be
    missing). Called on the failure path only."""
    raw = data[:_SALVAGE_BYTES]
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    found: Dict[str, str] = {}
    for match in _FIELD.finditer(bytes(raw)):
        key = "event_type" if match.group(1) == b"type" else "item_id"
        if key not in found:
            found[key] = match.group(2).decode("utf-8", "replace")
            if len(found) == 2:
                break
    return found
