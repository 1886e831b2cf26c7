"""Function calling: Python functions as tools the model may call.

    @client.tool
    def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict:
        '''Current weather for a city.

        Args:
            city: the city name, e.g. "Paris".
            unit: temperature unit.
        '''
        return {"city": city, "temp": 21}

The JSON schema of each tool comes from the signature, the type hints (``str``, ``int``,
``float``, ``bool``, ``Optional[X]``, ``Literal[...]``, ``List[X]``, ``dict``, enums,
``Annotated[X, "description"]``) and the Google-style docstring. Registered tools are sent
in ``session.update`` (merged with tools already in the session, e.g. remote MCP servers,
which pass through untouched) with ``tool_choice: "auto"``.

When the model calls a tool (``response.function_call_arguments.done``, or a
``function_call`` item in ``response.done``), the function runs on the ``realtime-sync-tools``
worker thread, never on the dispatcher. Once the response is done, each result goes back as a
``function_call_output`` item with the call's ``call_id``, followed by one ``response.create``
so the model can use the results. A tool that raises sends an error output instead; the
worker goes on. Every finished call is also reported as a ``client.tool_call`` event
(``name``, ``call_id``, ``arguments``, ``output``, ``error``).
"""

from __future__ import annotations

import collections
import enum
import inspect
import json
import logging
import queue
import re
import threading
import time
import typing
from collections import abc
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from ._core.host import ClientHost
from ._core.wait import Deadline, wait_until
from ._core.wire import METADATA_KEY
from .errors import ConnectionLostError, NotConnectedError

_UnionType = getattr(__import__("types"), "UnionType", None)  # ``X | Y`` (Python 3.10+)

DEFAULT_TIMEOUT = 60.0
"""Seconds a tool may run before the model gets a timeout error instead of its result."""

__all__ = ["Tools", "Tool", "ToolCall", "function_schema", "parse_docstring", "tools_of"]

logger = logging.getLogger(__name__)

_NoneType = type(None)
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Returns?|Raises|Yields?|Examples?|"
    r"Notes?|Threads?|Attributes|See Also|Warnings?)\s*:\s*$"
)
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


# -- docstrings and schemas ---------------------------------------------------------------------
def parse_docstring(doc: Optional[str]) -> Tuple[str, Dict[str, str]]:
    """Split a Google-style docstring into (first paragraph, {parameter: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: List[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line.strip()):
            break
        summary.append(line.strip())
    params: Dict[str, str] = {}
    in_args = False
    current: Optional[str] = None
    entry_indent = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        header = _SECTION.match(stripped)
        if header and indent == 0:
            in_args = header.group(1) in ("Args", "Arguments", "Parameters", "Params",
                                          "Keyword Args")
            current, entry_indent = None, None
            continue
        if not in_args:
            continue
        if not stripped:
            current = None
            continue
        if indent == 0:
            in_args = False
            continue
        match = _ARG_LINE.match(stripped)
        if match and (entry_indent is None or indent <= entry_indent):
            entry_indent = indent
            current = match.group(1)
            params[current] = match.group(3).strip()
        elif current is not None:
            params[current] = (params[current] + " " + stripped).strip()
    return " ".join(summary), params


def _json_type(value: Any) -> Optional[str]:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def type_schema(tp: Any) -> Tuple[Dict[str, Any], bool]:
    """The JSON schema of a type hint, and whether ``None`` is allowed (``Optional``)."""
    if tp is inspect.Parameter.empty or tp is Any or tp is object:
        return {}, False
    if tp is _NoneType or tp is None:
        return {"type": "null"}, True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        schema, nullable = type_schema(args[0])
        notes = [a for a in args[1:] if isinstance(a, str)]
        if notes:
            schema = dict(schema, description=" ".join(notes))
        return schema, nullable
    if origin is typing.Union or (_UnionType is not None and origin is _UnionType):
        rest = [a for a in args if a is not _NoneType]
        nullable = len(rest) < len(args)
        if len(rest) == 1:
            return type_schema(rest[0])[0], nullable
        return {"anyOf": [type_schema(a)[0] for a in rest]}, nullable
    if origin is typing.Literal:
        values = [v.value if isinstance(v, enum.Enum) else v for v in args]
        nullable = None in values
        values = [v for v in values if v is not None]
        kinds = {_json_type(v) for v in values}
        lit: Dict[str, Any] = {"enum": values}
        if len(kinds) == 1 and None not in kinds:
            lit = {"type": kinds.pop(), "enum": values}
        return lit, nullable
    if tp is bool:  # before int: bool is a subclass of int
        return {"type": "boolean"}, False
    if tp is int:
        return {"type": "integer"}, False
    if tp is float:
        return {"type": "number"}, False
    if tp is str:
        return {"type": "string"}, False
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        kinds = {_json_type(v) for v in values}
        out: Dict[str, Any] = {"enum": values}
        if len(kinds) == 1 and None not in kinds:
            out = {"type": kinds.pop(), "enum": values}
        return out, False
    container = origin or tp
    if container in (list, tuple, set, frozenset) or (
        isinstance(container, type) and not issubclass(container, (str, bytes))
        and issubclass(container, (abc.Sequence, abc.Set))
    ):
        schema = {"type": "array"}
        item_args = [a for a in args if a is not Ellipsis]
        if item_args and (container is not tuple or len(set(item_args)) == 1):
            schema["items"] = type_schema(item_args[0])[0]
        return schema, False
    if isinstance(container, type) and issubclass(container, abc.Mapping):
        return {"type": "object"}, False
    return {}, False


def function_schema(fn: Callable[..., Any], name: Optional[str] = None,
                    description: Optional[str] = None) -> Dict[str, Any]:
    """The Realtime function-tool definition of ``fn``:
    ``{"type": "function", "name", "description", "parameters"}``.

    Parameters without a default and not ``Optional`` are required; ``*args`` and
    ``**kwargs`` are ignored. Any thread.
    """
    tool_name = name or getattr(fn, "__name__", None)
    if not tool_name or not re.match(r"^[A-Za-z0-9_-]{1,64}$", tool_name):
        raise ValueError(f"tool name must be 1-64 letters, digits, _ or -; got {tool_name!r}")
    summary, docs = parse_docstring(inspect.getdoc(fn))
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to no types
        logger.warning("tool %s: cannot resolve its type hints; parameters accept any type",
                       tool_name)
        hints = {}
    properties: Dict[str, Any] = {}
    required: List[str] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        schema, nullable = type_schema(hints.get(pname, inspect.Parameter.empty))
        schema = dict(schema)
        if pname in docs and docs[pname] and "description" not in schema:
            schema["description"] = docs[pname]
        has_default = param.default is not inspect.Parameter.empty
        if has_default and param.default is not None:
            default = param.default.value if isinstance(param.default, enum.Enum) \
                else param.default
            try:
                json.dumps(default)
                schema["default"] = default
            except (TypeError, ValueError):
                pass
        properties[pname] = schema
        if not has_default and not nullable:
            required.append(pname)
    return {
        "type": "function",
        "name": tool_name,
        "description": description if description is not None else summary,
        "parameters": {"type": "object", "properties": properties, "required": required,
                       "additionalProperties": False},
    }


# -- registry and dispatch ----------------------------------------------------------------------
class Tool:
    """A registered function and its definition."""

    def __init__(self, fn: Callable[..., Any], name: Optional[str] = None,
                 description: Optional[str] = None, timeout: Optional[float] = None) -> None:
        if not callable(fn):
            raise TypeError(f"a tool must be callable, not {type(fn).__name__}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self.fn = fn
        self.timeout = timeout
        self.definition = function_schema(fn, name=name, description=description)
        self.name: str = self.definition["name"]
        required = set(self.definition["parameters"]["required"])
        # Optional parameters without a default are not required in the schema: when the
        # model leaves one out, the function gets None for it
        self.fill_none = [
            p for p, param in inspect.signature(fn).parameters.items()
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
            and param.default is inspect.Parameter.empty and p not in required
        ]

    def call(self, args: Dict[str, Any]) -> Any:
        """Run the function with the model's arguments (missing Optional ones as None)."""
        for p in self.fill_none:
            args.setdefault(p, None)
        return self.fn(**args)

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"


class ToolCall:
    """One call of a tool by the model, and its outcome (filled on the worker thread)."""

    def __init__(self, name: str, call_id: str, arguments: str, response_id: Optional[str],
                 item_id: Optional[str]) -> None:
        self.name = name
        self.call_id = call_id
        self.arguments = arguments
        self.response_id = response_id
        self.item_id = item_id
        self.output: Optional[str] = None
        self.error: Optional[str] = None
        self.seconds = 0.0
        self.finished = threading.Event()
        self.session_number: Optional[int] = None
        """The client session the call was made in (its output goes only there)."""

    def __repr__(self) -> str:
        state = "error" if self.error else "done" if self.finished.is_set() else "pending"
        return f"<ToolCall {self.name}({self.arguments}) {state}>"


def _as_list(value: Any) -> List[Any]:
    """``value`` when the server sent a list, else ``[]`` (a wrong type is skipped)."""
    return value if isinstance(value, list) else []


def _output_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(result)


class Tools:
    """The tool registry of one client and its call dispatcher (``client.tools``).

    Subscribes to the client's ``response.function_call_arguments.done`` and
    ``response.done``; calls run on the ``realtime-sync-tools`` thread (started at the first
    call, stopped by ``client.close()``). Every method may be called from any thread.
    """

    def __init__(self, client: Any, history: int = 100) -> None:
        self._client = client
        self._lock = threading.RLock()
        self._tools: Dict[str, Tool] = {}
        self._sent_names: set = set()
        self._queue: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._runners: List[threading.Thread] = []
        self._update_lock = threading.Lock()
        self.abandoned = 0
        """Tool calls given up after their timeout (their threads could not be stopped)."""
        self._stopped = False
        self._idle = threading.Condition(self._lock)
        self._jobs = 0
        self._seen: collections.OrderedDict[str, ToolCall] = collections.OrderedDict()
        self._pending: Dict[str, List[ToolCall]] = {}
        self.history: Deque[ToolCall] = collections.deque(maxlen=history)
        self._host: Optional[ClientHost] = getattr(client, "host", None)
        # the session whose events the handlers are reading (None between sessions)
        self._session: Optional[int] = (
            self._host.session_number if self._host is not None
            and getattr(client, "connected", False) else None)
        client.on("response.function_call_arguments.done", self._on_arguments_done)
        client.on("response.done", self._on_response_done)
        client.on("client.connected", self._on_session)
        client.on("client.reconnected", self._on_session)
        client.on("client.disconnected", self._on_session)
        if self._host is not None:
            self._host.adopt(self)

    def _on_session(self, event: Mapping[str, Any]) -> None:
        """Track which session the following events belong to (dispatcher thread)."""
        number = event.get("generation")
        with self._lock:
            if event.get("type") == "client.disconnected":
                self._session = None
                lost = [c for calls in self._pending.values() for c in calls]
                self._pending.clear()
            else:
                self._session = number if isinstance(number, int) else None
                lost = []
        for call in lost:  # their response can no longer finish: never answer them elsewhere
            logger.warning("tool call %s (%s) belonged to a session that ended; its output is"
                           " not sent into the new session", call.call_id, call.name)

    # -- registry -----------------------------------------------------------------------------
    def register(self, fn: Callable[..., Any], *, name: Optional[str] = None,
                 description: Optional[str] = None,
                 timeout: Optional[float] = None) -> Callable[..., Any]:
        """Register ``fn`` as a tool (replacing one of the same name) and update the session.

        ``timeout`` (default :data:`DEFAULT_TIMEOUT`): after that many seconds the model gets
        an error output instead of the result, and later calls go on; the stuck function's
        thread is abandoned (Python cannot stop it) and ``close()`` reports it.

        Returns ``fn`` (so it works as a decorator). Any thread; when the client is not
        connected yet the tool goes into the session config sent on connect.
        """
        tool = Tool(fn, name=name, description=description,
                    timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
        with self._lock:
            self._tools[tool.name] = tool
        self.update_session()
        return fn

    def unregister(self, name: str) -> bool:
        """Remove a tool and update the session; False when there was none. Any thread."""
        with self._lock:
            found = self._tools.pop(name, None) is not None
        if found:
            self.update_session()
        return found

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._tools

    def __len__(self) -> int:
        with self._lock:
            return len(self._tools)

    @property
    def names(self) -> List[str]:
        """Names of the registered tools, in registration order."""
        with self._lock:
            return list(self._tools)

    @property
    def definitions(self) -> List[Dict[str, Any]]:
        """The function-tool definitions of the registered tools."""
        with self._lock:
            return [json.loads(json.dumps(t.definition)) for t in self._tools.values()]

    def session_tools(self) -> List[Dict[str, Any]]:
        """The session's ``tools``: what is there already (MCP servers, function tools the
        application declared itself) with the registered tools added or replaced."""
        config = self._client.session_config or {}
        existing = config.get("tools") or []
        with self._lock:
            mine = set(self._tools) | self._sent_names
            kept = [t for t in existing if not (
                isinstance(t, Mapping) and t.get("type", "function") == "function"
                and t.get("name") in mine)]
            return kept + self.definitions

    def update_session(self) -> Optional[str]:
        """Send the tools in ``session.update`` (``tool_choice: "auto"``) and return its
        ``event_id``; before connecting, put them into the session config instead (None).
        Any thread."""
        client = self._client
        with self._update_lock:  # one tools update at a time, in order (never the client's locks)
            tools = self.session_tools()
            with self._lock:
                self._sent_names |= set(self._tools)
            body = {"type": "realtime", "tools": tools, "tool_choice": "auto"}
            if getattr(client, "state", "connected") in ("connected", "reconnecting"):
                try:
                    return str(client.session.update(body))
                except NotConnectedError:
                    pass
            if self._host is not None:
                self._host.remember_session(body)
            return None

    # -- calls (handlers: dispatcher thread) --------------------------------------------------
    def _claim(self, name: Any, call_id: Any, arguments: Any, response_id: Any,
               item_id: Any) -> Optional[ToolCall]:
        """A new ToolCall for a registered tool not seen before (lock held)."""
        if not isinstance(name, str) or name not in self._tools:
            return None
        if not isinstance(call_id, str) or not call_id or call_id in self._seen:
            return None
        call = ToolCall(name, call_id, str(arguments or ""),
                        response_id if isinstance(response_id, str) else None,
                        item_id if isinstance(item_id, str) else None)
        call.session_number = self._session
        self._seen[call_id] = call
        while len(self._seen) > 1000:
            self._seen.popitem(last=False)
        if call.response_id:
            self._pending.setdefault(call.response_id, []).append(call)
        return call

    def _on_arguments_done(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            call = self._claim(event.get("name"), event.get("call_id"), event.get("arguments"),
                               event.get("response_id"), event.get("item_id"))
        if call is not None:
            self._submit(("call", call))

    def _on_response_done(self, event: Mapping[str, Any]) -> None:
        raw = event.get("response")
        if not isinstance(raw, Mapping):
            return
        rid = raw.get("id")
        fresh: List[ToolCall] = []
        with self._lock:
            for out in _as_list(raw.get("output")):
                if not isinstance(out, Mapping) or out.get("type") != "function_call":
                    continue
                if out.get("status") == "incomplete":
                    continue
                call = self._claim(out.get("name"), out.get("call_id"), out.get("arguments"),
                                   rid, out.get("id"))
                if call is not None:
                    fresh.append(call)
            calls = self._pending.pop(rid, []) if isinstance(rid, str) else []
        for call in fresh:
            self._submit(("call", call))
        if not calls:
            return
        incomplete = {out.get("call_id") for out in _as_list(raw.get("output"))
                      if isinstance(out, Mapping) and out.get("status") == "incomplete"}
        calls = [c for c in calls if c.call_id not in incomplete]
        if calls:
            self._submit(("finish", (rid, calls, raw.get("status") == "completed")))

    def will_follow_up(self, response: Any) -> bool:
        """True when this dispatcher answers ``response`` (a :class:`Response` or a response
        dict) with tool outputs and a new ``response.create``. Any thread."""
        if isinstance(response, Mapping):
            status = response.get("status")
            outs = [(o.get("type"), o.get("name"), o.get("status"))
                    for o in _as_list(response.get("output")) if isinstance(o, Mapping)]
        else:
            status = getattr(response, "status", None)
            outs = [(i.type, i.name, i.status) for i in getattr(response, "items", [])]
        if status != "completed":
            return False
        with self._lock:
            return any(t == "function_call" and n in self._tools and s != "incomplete"
                       for t, n, s in outs)

    # -- the worker thread --------------------------------------------------------------------
    def _submit(self, job: Tuple[str, Any]) -> None:
        with self._lock:
            if self._stopped:
                logger.info("tool call ignored: the client is closing")
                return
            self._jobs += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="realtime-sync-tools",
                                                daemon=True)
                self._thread.start()
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                kind, payload = job
                if kind == "call":
                    self._call(payload)
                else:
                    self._finish(*payload)
            except Exception:  # never let one job end the worker
                logger.exception("tool dispatcher job failed")
            finally:
                with self._lock:
                    self._jobs -= 1
                    self._idle.notify_all()

    def _call(self, call: ToolCall) -> None:
        with self._lock:
            tool = self._tools.get(call.name)
        start = time.monotonic()
        try:
            if tool is None:
                raise LookupError(f"tool {call.name!r} is no longer registered")
            args = json.loads(call.arguments) if call.arguments.strip() else {}
            if not isinstance(args, dict):
                raise TypeError("the arguments must be a JSON object")
            call.output = _output_text(self._run_with_timeout(tool, call, args))
        except Exception as exc:
            call.error = f"{type(exc).__name__}: {exc}"
            call.output = json.dumps({"error": call.error}, ensure_ascii=False)
            logger.warning("tool %s raised %s (sent to the model as its output)",
                           call.name, call.error)
            logger.debug("tool %s traceback", call.name, exc_info=True)
        call.seconds = time.monotonic() - start
        call.finished.set()
        self.history.append(call)
        if self._host is not None:
            self._host.emit({
                "type": "client.tool_call", "name": call.name, "call_id": call.call_id,
                "arguments": call.arguments, "output": call.output, "error": call.error,
                "seconds": call.seconds, "response_id": call.response_id,
            })

    def _run_with_timeout(self, tool: Tool, call: ToolCall, args: Dict[str, Any]) -> Any:
        """Run the tool on its own ``realtime-sync-tool-call`` thread, waiting ``tool.timeout``.

        A call that does not return in time is reported to the model as an error; its
        thread is abandoned (a daemon), so one stuck tool never blocks the next calls."""
        box: Dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = tool.call(args)
            except BaseException as exc:  # noqa: BLE001 - handed to the worker
                box["error"] = exc

        runner = threading.Thread(target=target, name="realtime-sync-tool-call", daemon=True)
        with self._lock:
            self._runners = [t for t in self._runners if t.is_alive()] + [runner]
        runner.start()
        deadline = Deadline(tool.timeout or DEFAULT_TIMEOUT)
        while runner.is_alive() and not self._stopped and not deadline.expired():
            runner.join(deadline.slice(0.1))
        if runner.is_alive() and self._stopped:
            raise RuntimeError("the client closed while the tool was running")
        if runner.is_alive():
            logger.warning("tool %s did not return within %.0f s: the model is told so and its"
                           " thread is abandoned", call.name, tool.timeout)
            with self._lock:
                self._runners = [t for t in self._runners if t is not runner]
                self.abandoned += 1
            raise TimeoutError(f"the tool did not return within {tool.timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _finish(self, response_id: str, calls: List[ToolCall], follow_up: bool) -> None:
        """Send the outputs (and the follow-up ``response.create``) into the session that
        made the calls, never into another one: a new session does not know the calls and
        would answer without the question."""
        host = self._host
        if host is None:
            return
        session = calls[0].session_number if calls else None
        try:
            if session is None:
                raise ConnectionLostError("the session of the calls is not known")
            for call in calls:
                if not call.finished.is_set():  # cannot happen: calls run first, in order
                    call.finished.wait()
                host.send_in_session({
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": call.call_id,
                             "output": call.output or ""},
                }, session)
            if follow_up:
                host.send_in_session({
                    "type": "response.create",
                    "response": {"metadata": {METADATA_KEY: f"tools:{response_id}"}},
                }, session)
        except NotConnectedError as exc:
            logger.warning("tool results of %s not sent: %s", response_id, exc)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until every queued call and result has been handled; True if so. Any
        thread but the dispatcher's."""
        with self._lock:
            return bool(wait_until(self._idle, lambda: self._jobs == 0, Deadline(timeout)))

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the worker (queued calls are dropped; a running one finishes). Idempotent;
        ``client.close()`` calls it. Returns True when the thread has ended."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is None:
            return True
        while True:  # drop what has not started
            try:
                if self._queue.get_nowait() is not None:
                    with self._lock:
                        self._jobs -= 1
            except queue.Empty:
                break
        self._queue.put(None)
        if thread is threading.current_thread():
            return True
        deadline = Deadline(timeout)
        thread.join(timeout)
        with self._lock:
            runners = list(self._runners)
        for runner in runners:  # a tool still running (the worker waits for it up to timeout)
            runner.join(deadline.remaining())
        stuck = [t for t in runners if t.is_alive()]
        if stuck:
            logger.warning("%d tool call(s) still running at close: their threads are abandoned",
                           len(stuck))
        return not thread.is_alive() and not stuck

    def __repr__(self) -> str:
        return f"<Tools {self.names}>"


def tools_of(client: Any) -> Tools:
    """The one :class:`Tools` registry of ``client`` (created here, its owner, on first use;
    ``client.tools`` returns it). Any thread."""
    host: ClientHost = client.host
    return host.feature("tools", lambda: Tools(client))
