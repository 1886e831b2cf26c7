"""JSON encoding and decoding: ``orjson`` when installed (the ``fast`` extra), else stdlib."""

from __future__ import annotations

import json
from typing import Any, Callable, Union

__all__ = ["loads", "dumps", "BACKEND"]

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
    _scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json.loads's scanner

    def _loads(data: Union[str, bytes]) -> Any:
        """``json.loads`` without its wrappers for the common case (a UTF-8 object with no
        surrounding whitespace); anything else, and every error, goes through ``json.loads``
        itself, so results and exceptions are the same."""
        if type(data) is bytes and data[:2] == b'{"':  # json.loads would pick UTF-8 too
            try:
                text = data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                return json.loads(data)
        elif type(data) is str:
            text = data
        else:
            return json.loads(data)
        try:
            obj, end = _scan(text, 0)
        except StopIteration:
            return json.loads(text)
        if end != len(text):
            return json.loads(text)
        return obj

    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    def _dumps(obj: Any) -> Union[str, bytes]:
        try:
            return _encoder.encode(obj)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event is not JSON-serialisable: {exc}") from None

    BACKEND = "json"


def loads(data: Union[str, bytes]) -> Any:
    """Parse JSON text; raises ``ValueError`` on malformed input."""
    return _loads(data)


def dumps(obj: Any) -> Union[str, bytes]:
    """Serialise to compact JSON (``bytes`` with orjson, ``str`` otherwise).

    Raises:
        TypeError: when the object holds a value JSON cannot represent.
    """
    return _dumps(obj)
