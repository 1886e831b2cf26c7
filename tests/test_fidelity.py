"""Fidelity with OpenAI's SDK (openai-python 3.63.0): translation noise-reduction strength, MCP
items and the MCP tool listing/approval exchange, GA names that are no beta drift, and one
warning per process for retired options."""

from __future__ import annotations

import logging
import warnings

import pytest
from server_helpers import Peer, types

import realtime_sync as rs
from realtime_sync import models
from realtime_sync.server import McpCall, RealtimeServer, ScriptedResponder

pytestmark = pytest.mark.timeout(60)

MCP_TOOL = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example/sse"}


def realtime(srv: RealtimeServer, **session) -> Peer:
    p = Peer(srv.url, intent=None, model="gpt-realtime-2.1")
    p.expect("session.created")
    if session:
        p.send({"type": "session.update", "session": dict({"type": "realtime"}, **session)})
    return p


# -- translation: noise_reduction.strength ---------------------------------------------------
def test_a_translator_with_noise_reduction_strength_is_accepted():
    with RealtimeServer() as srv, rs.Translator(
            to="es", url=srv.url, api_key="sk-local",
            noise_reduction={"type": "near_field", "strength": 0.4}) as tr:
        tr.finish(timeout=10)


@pytest.mark.parametrize("strength, code", [(1.5, "decimal_above_max_value"),
                                            ("loud", "invalid_type")])
def test_a_translation_session_refuses_a_strength_out_of_range(strength, code):
    import json

    import websocket
    with RealtimeServer() as srv:
        ws = websocket.create_connection(
            srv.url + "/translations?model=gpt-realtime-translate",
            header=["Authorization: Bearer sk-local"], timeout=5)
        try:
            assert json.loads(ws.recv())["type"] == "session.created"
            ws.send(json.dumps({"type": "session.update", "event_id": "evt_1", "session": {
                "audio": {"input": {"noise_reduction": {"type": "far_field",
                                                        "strength": strength}}}}}))
            answer = json.loads(ws.recv())
            assert answer["type"] == "error"
            assert answer["error"]["code"] == code
            assert answer["error"]["param"] == "session.audio.input.noise_reduction.strength"
        finally:
            ws.close()


# -- MCP conversation items -------------------------------------------------------------------
@pytest.mark.parametrize("item", [
    {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True},
    {"type": "mcp_approval_request", "server_label": "docs", "name": "echo",
     "arguments": "{}"},
    {"type": "mcp_call", "server_label": "docs", "name": "echo", "arguments": "{}"},
    {"type": "mcp_list_tools", "server_label": "docs", "tools": []},
])
def test_mcp_items_can_be_created(item):
    with RealtimeServer() as srv:
        p = realtime(srv)
        p.send({"type": "conversation.item.create", "item": item})
        added = p.expect("conversation.item.added")
        assert added["item"]["type"] == item["type"]
        assert "status" not in added["item"]  # OpenAI's MCP items carry no status
        p.expect("conversation.item.done")


def test_an_mcp_item_missing_a_field_is_refused_with_its_name():
    with RealtimeServer() as srv:
        p = realtime(srv)
        p.send({"type": "conversation.item.create", "event_id": "evt_x",
                "item": {"type": "mcp_approval_response", "approval_request_id": "mcpr_1"}})
        error = p.expect("error")["error"]
        assert (error["code"], error["param"]) == ("missing_required_parameter",
                                                   "item.approve")


# -- MCP tool listing and approval ------------------------------------------------------------
def test_adding_an_mcp_server_lists_its_tools():
    with RealtimeServer() as srv:
        p = realtime(srv, tools=[dict(MCP_TOOL, allowed_tools=["echo"])])
        got = p.until("conversation.item.done")
        assert types(got) == ["session.updated", "conversation.item.added",
                              "mcp_list_tools.in_progress", "mcp_list_tools.completed",
                              "conversation.item.done"]
        item = got[-1]["item"]
        assert item["type"] == "mcp_list_tools" and item["server_label"] == "docs"
        assert [t["name"] for t in item["tools"]] == ["echo"]
        assert got[2]["item_id"] == got[3]["item_id"] == item["id"]


def test_an_mcp_server_without_a_label_is_refused():
    with RealtimeServer() as srv:
        p = realtime(srv, tools=[{"type": "mcp", "server_url": "https://mcp.example"}])
        error = p.expect("error")["error"]
        assert error["param"] == "session.tools[0].server_label"


def test_an_mcp_call_waits_for_approval_then_runs():
    responder = ScriptedResponder([McpCall("docs", "echo", '{"text": "hi"}', output="hi"),
                                   McpCall("docs", "echo", '{"text": "hi"}', output="hi")])
    with RealtimeServer(responder=responder) as srv:
        p = realtime(srv, tools=[MCP_TOOL], output_modalities=["text"])
        p.until("conversation.item.done")  # the tool listing
        p.send({"type": "response.create"})
        first = p.until("response.done")
        request = first[-1]["response"]["output"][0]
        assert request["type"] == "mcp_approval_request" and request["name"] == "echo"
        p.send({"type": "conversation.item.create", "item": {
            "type": "mcp_approval_response", "approval_request_id": request["id"],
            "approve": True}})
        p.until("conversation.item.done")
        p.send({"type": "response.create"})
        second = p.until("response.done")
        assert [t for t in types(second) if t.startswith("response.mcp")] == [
            "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
            "response.mcp_call.in_progress", "response.mcp_call.completed"]
        call = second[-1]["response"]["output"][0]
        assert (call["type"], call["output"], call["approval_request_id"]) == (
            "mcp_call", "hi", request["id"])


def test_a_denied_mcp_call_is_not_run():
    responder = ScriptedResponder([McpCall("docs", "echo"), McpCall("docs", "echo")])
    with RealtimeServer(responder=responder) as srv:
        p = realtime(srv, tools=[MCP_TOOL], output_modalities=["text"])
        p.until("conversation.item.done")
        p.send({"type": "response.create"})
        request = p.until("response.done")[-1]["response"]["output"][0]
        p.send({"type": "conversation.item.create", "item": {
            "type": "mcp_approval_response", "approval_request_id": request["id"],
            "approve": False, "reason": "no"}})
        p.until("conversation.item.done")
        p.send({"type": "response.create"})
        second = p.until("response.done")
        assert not [t for t in types(second) if t.startswith("response.mcp")]
        assert "not approved" in second[-1]["response"]["output"][0]["content"][0]["text"]


def test_require_approval_never_runs_the_call_at_once():
    responder = ScriptedResponder([McpCall("docs", "echo", output="done")])
    with RealtimeServer(responder=responder) as srv:
        p = realtime(srv, tools=[dict(MCP_TOOL, require_approval="never")],
                     output_modalities=["text"])
        p.until("conversation.item.done")
        p.send({"type": "response.create"})
        out = p.until("response.done")[-1]["response"]["output"][0]
        assert (out["type"], out["output"], out["approval_request_id"]) == (
            "mcp_call", "done", None)


# -- GA names that are not beta drift ----------------------------------------------------------
@pytest.mark.parametrize("name", ["conversation.created", "conversation.item.created"])
def test_ga_union_names_register_without_a_beta_warning(make_client, name, caplog):
    client = make_client()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.on(name, lambda ev: None)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert "retired beta" not in caplog.text


# -- retired options: one warning per process ------------------------------------------------
@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(models, "_warned", set())


def test_a_saved_prompt_reference_warns_once_per_process(make_client, fresh_warnings, caplog):
    client = make_client()
    client.connect(timeout=10)
    with caplog.at_level(logging.WARNING, logger="realtime_sync.models"):
        client.session.update({"type": "realtime", "prompt": {"id": "pmpt_1"}})
        client.send({"type": "response.create", "response": {"prompt": {"id": "pmpt_1"}}})
    warned = [r for r in caplog.records if "prompt" in r.getMessage()]
    assert len(warned) == 1 and models.PROMPT_REFERENCES_SHUTDOWN in warned[0].getMessage()


def test_an_mcp_connector_id_warns_once_per_process(fresh_warnings, caplog):
    config = {"tools": [{"type": "mcp", "server_label": "x", "connector_id": "connector_gmail"}]}
    with caplog.at_level(logging.WARNING, logger="realtime_sync.models"):
        rs.RealtimeClient(url="ws://127.0.0.1:9/v1/realtime", api_key="sk-local",
                          session=config)
        assert models.warn_if_retired_options(config) is False  # already said
    warned = [r for r in caplog.records if "connector_id" in r.getMessage()]
    assert len(warned) == 1


def test_options_that_are_not_retired_say_nothing(fresh_warnings, caplog):
    with caplog.at_level(logging.WARNING, logger="realtime_sync.models"):
        assert models.warn_if_retired_options({"tools": [MCP_TOOL], "prompt": None}) is False
        assert models.warn_if_retired_options(None) is False
    assert not caplog.records
