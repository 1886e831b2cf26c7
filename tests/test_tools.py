"""Tools: schemas from signatures, session.update, and the function-call cycle on the local
server (scripted FunctionCall outputs in the GA event shapes)."""

from __future__ import annotations

import enum
import json
import sys
import threading
from typing import Annotated, Any, Dict, List, Literal, Optional

import pytest
from test_conversation import ClientSchema, assert_valid_client_events

import realtime_sync as rs
from realtime_sync.server import FunctionCall, ScriptedResponder, Text
from realtime_sync.testing import FakeRealtimeServer
from realtime_sync.tools import function_schema, parse_docstring

pytestmark = pytest.mark.timeout(60)

SESSION = {"type": "realtime", "output_modalities": ["text"],
           "audio": {"input": {"turn_detection": None}}}
MCP = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example.com/sse",
       "require_approval": "never", "allowed_tools": ["search"]}


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def get_weather(city: str, unit: Literal["c", "f"] = "c", days: int = 1,
                detailed: bool = False, tags: Optional[List[str]] = None,
                ratio: float = 0.5) -> Dict[str, Any]:
    """Current weather for a city.

    Continues the summary? No: the first paragraph is the description.

    Args:
        city: the city name,
            e.g. "Paris".
        unit (str): temperature unit.
        days: how many days.

    Returns:
        a dict.
    """
    return {"city": city, "unit": unit, "days": days}


@pytest.fixture(scope="module")
def client_schema() -> ClientSchema:
    return ClientSchema()


@pytest.fixture
def fake():
    responder = ScriptedResponder()
    with FakeRealtimeServer(responder=responder) as srv:
        srv.responder = responder  # type: ignore[attr-defined]
        yield srv


@pytest.fixture
def client(fake):
    c = rs.RealtimeClient(url=fake.url, api_key="sk-local", session=dict(SESSION),
                          reconnect=False)
    yield c
    assert c.close(timeout=5)


def outputs(fake) -> List[Dict[str, Any]]:
    return [e["item"] for e in fake.received if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"]


# -- schemas -----------------------------------------------------------------------------------
def test_schema_from_signature_hints_and_docstring():
    tool = function_schema(get_weather)
    assert tool["type"] == "function" and tool["name"] == "get_weather"
    assert tool["description"] == "Current weather for a city."
    params = tool["parameters"]
    assert params["required"] == ["city"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["city"] == {"type": "string", "description": 'the city name, e.g. "Paris".'}
    assert props["unit"] == {"type": "string", "enum": ["c", "f"], "default": "c",
                             "description": "temperature unit."}
    assert props["days"] == {"type": "integer", "default": 1, "description": "how many days."}
    assert props["detailed"] == {"type": "boolean", "default": False}  # bool is not integer
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["ratio"] == {"type": "number", "default": 0.5}


def test_optional_without_default_is_not_required_and_extras():
    def f(a: Optional[int], b: Annotated[str, "what b is"], c: Colour, *args: Any,
          d: Dict[str, int] = None, **kw: Any) -> None:  # type: ignore[assignment]
        pass

    tool = function_schema(f, name="renamed", description="explicit")
    assert (tool["name"], tool["description"]) == ("renamed", "explicit")
    props = tool["parameters"]["properties"]
    assert set(props) == {"a", "b", "c", "d"}
    assert tool["parameters"]["required"] == ["b", "c"]
    assert props["a"] == {"type": "integer"}
    assert props["b"] == {"type": "string", "description": "what b is"}
    assert props["c"] == {"type": "string", "enum": ["red", "blue"]}
    assert props["d"] == {"type": "object"}


def test_docstring_parser():
    summary, params = parse_docstring("""Line one
    line two.

    Args:
        x (int): first
            more about x.
        y: second.
    Raises:
        ValueError: not a param.
    """)
    assert summary == "Line one line two."
    assert params == {"x": "first more about x.", "y": "second."}


def test_bad_tool_names_are_refused(client):
    with pytest.raises(ValueError):
        client.tools.register(lambda: None)  # "<lambda>"
    with pytest.raises(TypeError):
        client.tools.register("not callable")  # type: ignore[arg-type]


# -- session -----------------------------------------------------------------------------------
def test_tools_registered_before_connect_go_into_the_first_session_update(
        fake, client_schema):
    session = dict(SESSION, tools=[MCP])
    client = rs.RealtimeClient(url=fake.url, api_key="sk-local", session=session,
                               reconnect=False)
    try:
        client.tool(get_weather)

        @client.tool(name="add", description="Add two numbers.")
        def add(a: int, b: int) -> int:
            return a + b

        assert add(2, 3) == 5  # the decorator returns the function
        client.connect()
        update = fake.wait_received("session.update")
        tools = update["session"]["tools"]
        assert tools[0] == MCP  # MCP servers pass through untouched
        assert [t["name"] for t in tools[1:]] == ["get_weather", "add"]
        assert update["session"]["tool_choice"] == "auto"
        effective = fake.connections[-1].session.config
        assert [t.get("name", t.get("server_label")) for t in effective["tools"]] == [
            "docs", "get_weather", "add"]
        assert_valid_client_events(client_schema, fake.received)
    finally:
        assert client.close(timeout=5)


def test_registering_while_connected_sends_a_merged_session_update(fake, client,
                                                                  client_schema):
    client.connect()
    client.session.update({"tools": [MCP, {"type": "function", "name": "app_owned",
                                           "parameters": {"type": "object"}}]})
    client.wait_for("session.updated")
    client.tools.register(get_weather)
    client.wait_for("session.updated")
    tools = fake.connections[-1].session.config["tools"]
    assert [t.get("name", t.get("server_label")) for t in tools] == [
        "docs", "app_owned", "get_weather"]
    assert tools[0] == MCP
    assert client.tools.unregister("get_weather")
    client.wait_for("session.updated")
    assert [t.get("name", t.get("server_label"))
            for t in fake.connections[-1].session.config["tools"]] == ["docs", "app_owned"]
    assert_valid_client_events(client_schema, fake.received)


def test_mcp_events_reach_handlers_and_the_mirror(fake, client):
    seen: List[str] = []
    client.on("mcp_list_tools.completed", lambda e: seen.append(e.type))
    client.on("response.mcp_call.completed", lambda e: seen.append(e.type))
    conv = rs.Conversation(client)
    client.connect()
    fake.send_event({"type": "mcp_list_tools.completed", "item_id": "mcpl_1"})
    fake.send_event({"type": "conversation.item.added", "previous_item_id": None, "item": {
        "id": "mcp_1", "type": "mcp_call", "server_label": "docs", "name": "search",
        "arguments": ""}})
    fake.send_event({"type": "response.mcp_call_arguments.done", "response_id": "r",
                     "item_id": "mcp_1", "output_index": 0, "arguments": '{"q": "x"}'})
    fake.send_event({"type": "response.mcp_call.completed", "item_id": "mcp_1",
                     "output_index": 0})
    client.wait_for("response.mcp_call.completed", timeout=5)
    assert conv.wait_until(lambda c: c.get("mcp_1") is not None
                           and c["mcp_1"].status == "completed", timeout=5)
    assert conv["mcp_1"].arguments == '{"q": "x"}'
    assert seen == ["mcp_list_tools.completed", "response.mcp_call.completed"]


# -- the call cycle -------------------------------------------------------------------------
def test_a_tool_call_runs_and_the_model_answers_with_its_result(fake, client, client_schema):
    fake.responder.add(FunctionCall("get_weather", '{"city": "Paris", "days": 2}',
                                    call_id="call_1"),
                       lambda request: Text(f"Result: {request.last_user_text()}"))
    client.tools.register(get_weather)
    calls: List[Any] = []
    client.on("client.tool_call", calls.append)
    client.connect()
    answer = client.ask("weather in Paris?", timeout=10)
    expected = json.dumps({"city": "Paris", "unit": "c", "days": 2})
    assert answer.text == f"Result: {expected}"
    assert len(answer.previous) == 1
    first = answer.previous[0]
    assert [(c.name, c.call_id) for c in first.function_calls] == [("get_weather", "call_1")]
    assert outputs(fake) == [{"type": "function_call_output", "call_id": "call_1",
                              "output": expected}]
    types = [e["type"] for e in fake.received if e["type"] != "session.update"]
    assert types == ["conversation.item.create", "response.create",
                     "conversation.item.create", "response.create"]
    assert calls and calls[0].name == "get_weather" and calls[0].error is None
    assert_valid_client_events(client_schema, fake.received)


def test_a_raising_tool_sends_an_error_output_and_the_dispatcher_goes_on(fake, client):
    fake.responder.add(FunctionCall("flaky", '{"n": 1}', call_id="c1"), "sorry",
                       FunctionCall("flaky", '{"n": 2}', call_id="c2"), "fine",
                       FunctionCall("flaky", "{not json", call_id="c3"), "hm")

    @client.tool
    def flaky(n: int) -> str:
        """Fails for odd numbers."""
        if n % 2:
            raise ValueError(f"odd {n}")
        return f"even {n}"

    client.connect()
    assert client.ask("one", timeout=10).text == "sorry"
    assert client.ask("two", timeout=10).text == "fine"
    assert client.ask("three", timeout=10).text == "hm"
    outs = outputs(fake)
    assert [o["call_id"] for o in outs] == ["c1", "c2", "c3"]
    assert json.loads(outs[0]["output"]) == {"error": "ValueError: odd 1"}
    assert outs[1]["output"] == "even 2"
    assert json.loads(outs[2]["output"])["error"].startswith("JSONDecodeError")
    assert [c.error is None for c in client.tools.history] == [False, True, False]


def test_long_tools_run_off_the_dispatcher_thread(fake, client):
    """The tool blocks until a handler sees response.done: that can only happen if the
    dispatcher is free while the tool runs."""
    released = threading.Event()
    where: List[str] = []
    fake.responder.add(FunctionCall("slow", "{}"), "after slow")

    @client.tool
    def slow() -> str:
        """Waits for the dispatcher."""
        where.append(threading.current_thread().name)
        return "released" if released.wait(10) else "dispatcher was blocked"

    client.on("response.done", lambda e: released.set())
    client.connect()
    answer = client.ask("go", timeout=15)
    assert answer.text == "after slow"
    assert where == ["realtime-sync-tool-call"]  # off the dispatcher, with a timeout
    assert outputs(fake)[0]["output"] == "released"


def test_several_calls_in_one_response_get_one_follow_up(fake, client):
    fake.responder.add([FunctionCall("echo", '{"x": "a"}', call_id="ca"),
                        FunctionCall("echo", '{"x": "b"}', call_id="cb")], "both done")
    client.tool(lambda x: x.upper(), name="echo")
    client.connect()
    answer = client.ask("twice", timeout=10)
    assert answer.text == "both done"
    assert [(o["call_id"], o["output"]) for o in outputs(fake)] == [("ca", "A"), ("cb", "B")]
    assert fake.received_types().count("response.create") == 2


def test_calls_to_unregistered_functions_are_left_to_the_application(fake, client):
    fake.responder.add(FunctionCall("not_mine", "{}", call_id="x1"))
    client.tools.register(get_weather)
    client.connect()
    answer = client.ask("?", timeout=10)
    assert [c.name for c in answer.function_calls] == ["not_mine"]
    assert client.tools.wait_idle(5)
    assert outputs(fake) == []
    assert fake.received_types().count("response.create") == 1


def test_close_stops_the_tools_thread_even_with_a_tool_running(fake):
    fake.responder.add(FunctionCall("stuck", "{}"))
    gate = threading.Event()
    client = rs.RealtimeClient(url=fake.url, api_key="sk-local", session=dict(SESSION),
                               reconnect=False)

    @client.tool
    def stuck() -> str:
        """Blocks until released."""
        gate.wait(1.0)
        return "late"

    client.connect()
    client.send_text("go")
    client.wait_for("response.function_call_arguments.done", timeout=5)
    assert client.close(timeout=5)
    assert not [t for t in threading.enumerate() if t.name == "realtime-sync-tools"]


def test_the_tools_example_runs_against_the_local_server():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "examples" / "tools.py")], cwd=str(root),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '[tool] get_weather({"city": "Paris"}) -> {"city": "Paris"' in proc.stdout
    assert "LookupError: no weather station in 'Atlantis'" in proc.stdout
    assert "model: Here is the weather. Paris: 21.0 celsius;" in proc.stdout


def test_a_tool_that_hangs_times_out_and_later_calls_still_run(fake, client):
    release = threading.Event()
    fake.responder.add(FunctionCall("stuck", "{}"), "after stuck",
                       FunctionCall("quick", "{}"), "after quick")

    @client.tool(timeout=0.5)
    def stuck() -> str:
        """Never returns in time."""
        release.wait(10)
        return "late"

    @client.tool
    def quick() -> str:
        """Returns at once."""
        return "fast"

    client.connect()
    try:
        assert client.ask("one", timeout=15).text == "after stuck"
        assert "did not return within 0.5 s" in outputs(fake)[0]["output"]
        assert client.ask("two", timeout=15).text == "after quick"
        assert outputs(fake)[1]["output"] == "fast"
    finally:
        release.set()


def test_optional_parameters_the_model_leaves_out_arrive_as_none(fake, client):
    got = []
    fake.responder.add(FunctionCall("maybe", "{}"), "done")

    @client.tool
    def maybe(limit: Optional[int]) -> str:
        """Takes an optional limit."""
        got.append(limit)
        return "ok"

    client.connect()
    client.ask("go", timeout=15)
    assert got == [None]


@pytest.mark.skipif(sys.version_info < (3, 10), reason="X | Y unions need Python 3.10")
def test_pep604_unions_are_understood():
    namespace: Dict[str, Any] = {}
    exec("def f(city: str | None, n: int | str) -> None:\n    '''Doc.'''\n", namespace)
    params = function_schema(namespace["f"])["parameters"]
    assert params["properties"]["city"] == {"type": "string"}
    assert params["properties"]["n"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert params["required"] == ["n"]
