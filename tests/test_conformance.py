"""Conformance: what the library sends, what it accepts, and the beta-to-GA drift guard.

* Every client event the library can build (each resource helper, every Transcriber session
  configuration, tools and conversation turns, audio appends) is checked against the strict
  GA schema (``tests/data/realtime-events.schema.json``, per-type schema via
  ``x-event-index.ga.client``) and for fields the schema does not declare: the real server
  rejects unknown fields (``unknown_parameter``), and the spec sets no
  ``additionalProperties``, so a misspelt optional field would pass the schema alone. The
  allowed fields are derived from the schema's ``properties`` (top level, and nested objects
  wherever the schema declares their properties). Exactly one documented field newer than the
  spec copy is allowed on top (``NEWER_THAN_SPEC``): ``noise_reduction.strength`` (issue 10; the
  spec of 2026-08-21 has ``languages``, ``keywords`` and ``delay`` but not ``strength``).
* The spec's own server-event examples travel a real socket (FakeRealtimeServer.send_raw) and
  reach a handler intact.
* Drift guard: handlers for retired beta event names warn once with the GA name; beta-only
  client events are refused by ``send()`` with the GA replacement in the message.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import realtime_sync as rs
from realtime_sync._core import json_codec as _json
from realtime_sync.events import BETA_CLIENT_TO_GA, BETA_TO_GA, append_frame
from realtime_sync.server import FunctionCall, ScriptedRecognizer, ScriptedResponder, Text
from realtime_sync.testing import FakeRealtimeServer
from realtime_sync.transcription import build_session

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

pytestmark = pytest.mark.timeout(120)

DATA = Path(__file__).parent / "data"
STRICT = DATA / "realtime-events.schema.json"
EXAMPLES = DATA / "openapi-event-examples.jsonl"
RATE = 24000
NEWER_THAN_SPEC = {"session.update": {"/session/audio/input/noise_reduction/strength"}}
"""Client fields the service documents but the spec copy in tests/data does not know yet."""


# -- the checker -----------------------------------------------------------------------------------
class StrictClientEvents:
    """Strict GA client-event schema checks plus an unknown-field check derived from it."""

    def __init__(self) -> None:
        self.doc = json.loads(STRICT.read_text(encoding="utf-8"))
        self.id = self.doc["$id"]
        self.index: Dict[str, str] = self.doc["x-event-index"]["ga"]["client"]
        resource = referencing.Resource.from_contents(self.doc)
        self.registry = referencing.Registry().with_resource(self.id, resource)
        self._validators: Dict[str, Any] = {}

    def validator(self, pointer: str) -> Any:
        v = self._validators.get(pointer)
        if v is None:
            v = jsonschema.Draft202012Validator({"$ref": self.id + pointer},
                                                registry=self.registry)
            self._validators[pointer] = v
        return v

    def node(self, pointer: str) -> Any:
        obj: Any = self.doc
        for part in pointer.lstrip("#").split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            obj = obj[int(part)] if isinstance(obj, list) else obj[part]
        return obj

    def problems(self, event: Dict[str, Any]) -> List[str]:
        """Every reason the real server would refuse ``event`` (empty when it conforms)."""
        type_ = event.get("type")
        pointer = self.index.get(type_)  # type: ignore[arg-type]
        if pointer is None:
            return [f"{type_!r} is not a GA client event type"]
        found = [f"{type_}: {'/'.join(map(str, e.absolute_path)) or '<event>'}: {e.message}"
                 for e in self.validator(pointer).iter_errors(event)]
        newer = NEWER_THAN_SPEC.get(type_, set())  # type: ignore[arg-type]
        found += [f"{type_}: unknown field {path}" for path in self.unknown(pointer, event, "")
                  if path not in newer]
        return found

    # unknown fields: walk the instance alongside the schema nodes that apply to it
    def _branches(self, pointer: str, instance: Any, depth: int = 0) -> List[str]:
        """Pointers of every schema node that applies to ``instance`` at this place."""
        if depth > 20:
            return []
        node = self.node(pointer)
        if not isinstance(node, dict):
            return []
        out = [pointer]
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            out += self._branches(ref, instance, depth + 1)
        for i, _ in enumerate(node.get("allOf", ())):
            out += self._branches(f"{pointer}/allOf/{i}", instance, depth + 1)
        for key in ("anyOf", "oneOf"):
            for i, _ in enumerate(node.get(key, ())):
                sub = f"{pointer}/{key}/{i}"
                if self.validator(sub).is_valid(instance):
                    out += self._branches(sub, instance, depth + 1)
        return out

    def unknown(self, pointer: str, instance: Any, path: str) -> List[str]:
        branches = self._branches(pointer, instance)
        nodes = [(b, self.node(b)) for b in branches]
        found: List[str] = []
        if isinstance(instance, dict):
            declared = [(b, n) for b, n in nodes if "properties" in n]
            open_map = any(n.get("additionalProperties") not in (None, False)
                           for _, n in nodes)
            if declared and not open_map:
                allowed = set().union(*(n["properties"] for _, n in declared))
                found += [f"{path}/{k}" for k in instance if k not in allowed]
            for key, value in instance.items():
                for b, n in declared:
                    if key in n["properties"]:
                        found += self.unknown(f"{b}/properties/{key}", value, f"{path}/{key}")
        elif isinstance(instance, list):
            for b, n in nodes:
                if isinstance(n.get("items"), dict):
                    for i, value in enumerate(instance):
                        found += self.unknown(f"{b}/items", value, f"{path}/{i}")
        return sorted(set(found))


@pytest.fixture(scope="module")
def strict() -> StrictClientEvents:
    return StrictClientEvents()


def assert_conform(strict: StrictClientEvents, events: List[Dict[str, Any]]) -> None:
    assert events, "nothing was sent"
    bad = {i: strict.problems(e) for i, e in enumerate(events)}
    bad = {i: p for i, p in bad.items() if p}
    assert not bad, "\n".join(f"#{i} {events[i].get('type')}: {p}" for i, p in bad.items())


def wait_count(fake: FakeRealtimeServer, n: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(fake.received) < n:
        assert time.monotonic() < deadline, f"server got {fake.received_types()}, wanted {n}"
        time.sleep(0.01)
    return fake.received


def tone(ms: int, freq: float = 440.0) -> bytes:
    import math
    from array import array

    n = RATE * ms // 1000
    return array("h", (int(12000 * math.sin(2 * math.pi * freq * i / RATE))
                       for i in range(n))).tobytes()


# -- the checker itself can fail -------------------------------------------------------------------
def test_checker_agrees_with_the_spec_examples_and_catches_unknown_fields(strict):
    rows = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]
    ga_client = [r for r in rows if r["family"] == "ga" and r["side"] == "client"]
    assert len(ga_client) >= 11
    for row in ga_client:
        assert strict.validator(row["schema"]).is_valid(row["event"]) == row["valid"], row
    # unknown fields, top level and nested, and a beta-only type
    assert strict.problems({"type": "input_audio_buffer.commit", "foo": 1}) == [
        "input_audio_buffer.commit: unknown field /foo"]
    session = build_session(model="gpt-realtime-whisper", language="en",
                            noise_reduction="near_field")
    session["audio"]["input"]["transcripton"] = {"model": "whisper-1"}  # typo
    probs = strict.problems({"type": "session.update", "session": session})
    assert probs == ["session.update: unknown field /session/audio/input/transcripton"]
    assert strict.problems({"type": "transcription_session.update", "session": {}})
    assert strict.problems({"type": "input_audio_buffer.append"})  # no audio
    assert strict.problems({"type": "session.update", "event_id": "e" * 513,
                            "session": build_session()})


# -- everything the library builds ----------------------------------------------------------------
def test_transcriber_session_configs_all_combinations(strict):
    combos = itertools.product(
        ("gpt-4o-transcribe", "gpt-4o-mini-transcribe", "whisper-1"),
        (None, "en"),
        (None, "names: Ada, Grace"),
        ("server_vad", "semantic_vad", None,
         {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
          "silence_duration_ms": 400},
         {"type": "semantic_vad", "eagerness": "low"}),
        (None, "near_field", "far_field"),
        (False, True),
    )
    n = 0
    for model, language, prompt, td, nr, logprobs in combos:
        session = build_session(model=model, language=language, prompt=prompt,
                                turn_detection=td, noise_reduction=nr,
                                include_logprobs=logprobs)
        event = {"type": "session.update", "event_id": rs.events.new_event_id(),
                 "session": session}
        wire = json.loads(_json.dumps(event))  # exactly what goes on the wire
        assert strict.problems(wire) == [], (model, language, prompt, td, nr, logprobs)
        n += 1
    assert n == 3 * 2 * 2 * 5 * 3 * 2


def test_every_transcription_option_of_the_current_models_conforms(strict):
    """languages, keywords, delay, noise_reduction strength, G.711 formats (issue 10)."""
    configs = [
        dict(model="gpt-live-transcribe", languages=["en", "de"], keywords=["Ada", "Kenobi"],
             prompt="names", delay="minimal", include_logprobs=True),
        dict(model="gpt-live-transcribe", delay="xhigh", audio_format="pcmu",
             noise_reduction={"type": "far_field", "strength": 0.7}),
        dict(model="gpt-realtime-whisper", language="en", delay="low", audio_format="pcma"),
        dict(model="gpt-transcribe", languages=["en"], keywords=["x"], prompt="p",
             turn_detection={"type": "semantic_vad", "eagerness": "high"},
             noise_reduction="near_field"),
        dict(model="gpt-transcribe", turn_detection="auto"),
        dict(model="some-future-model", language="en", languages=None, delay="medium"),
    ]
    for config in configs:
        event = {"type": "session.update", "event_id": rs.events.new_event_id(),
                 "session": build_session(**config)}
        wire = json.loads(_json.dumps(event))
        assert strict.problems(wire) == [], config
    # the allowance is exactly that one field: a neighbour typo is still caught
    session = build_session(noise_reduction={"type": "near_field", "strength": 0.5})
    session["audio"]["input"]["noise_reduction"]["strenght"] = 0.5
    assert strict.problems({"type": "session.update", "session": session}) == [
        "session.update: unknown field /session/audio/input/noise_reduction/strenght"]


@pytest.mark.parametrize("pcm", [
    b"\x01\x00",                              # one sample
    b"\x00\x10" * 2400,                       # 100 ms
    bytearray(b"\xff\x7f" * 1200),            # bytearray
    memoryview(b"\x00\x80" * 480),            # memoryview
], ids=["1-sample", "100ms", "bytearray", "memoryview"])
def test_audio_appends_conform_and_carry_the_audio(strict, make_client, server, pcm):
    import base64

    client = make_client(intent="transcription")
    client.connect()
    event_id = client.input_audio_buffer.append(pcm)
    got = server.wait_received("input_audio_buffer.append")
    assert got["event_id"] == event_id
    assert base64.b64decode(got["audio"]) == bytes(pcm)
    assert_conform(strict, [got])
    # the hand-built frame is the same JSON a serialiser would produce
    frame = append_frame(bytes(pcm), "evt_x")
    assert json.loads(frame) == {"type": "input_audio_buffer.append", "event_id": "evt_x",
                                 "audio": base64.b64encode(bytes(pcm)).decode()}


def test_every_resource_helper_conforms_on_the_wire(strict, make_client, server):
    client = make_client(model="gpt-realtime",
                         session={"type": "realtime", "instructions": "Be brief.",
                                  "output_modalities": ["text"]})
    client.connect()
    helpers = [
        lambda: client.session.update({"instructions": "Be terse."}),
        lambda: client.session.update(instructions="x", max_output_tokens=200,
                                      audio={"output": {"voice": "marin", "speed": 1.1}}),
        lambda: client.session.update({
            "type": "realtime", "model": "gpt-realtime",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": {"type": "semantic_vad",
                                                   "eagerness": "auto"},
                                "transcription": {"model": "gpt-4o-transcribe"},
                                "noise_reduction": {"type": "far_field"}},
                      "output": {"format": {"type": "audio/pcm", "rate": 24000}}},
            "tool_choice": "none", "tracing": "auto", "truncation": "auto"}),
        lambda: client.input_audio_buffer.append(tone(100)),
        lambda: client.input_audio_buffer.commit(),
        lambda: client.input_audio_buffer.clear(),
        lambda: client.conversation.item.create(
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "hello"}]}),
        lambda: client.conversation.item.create(
            {"type": "message", "role": "system",
             "content": [{"type": "input_text", "text": "be nice"}]},
            previous_item_id="root"),
        lambda: client.conversation.item.create(
            {"type": "function_call_output", "call_id": "call_1", "output": "{}"}),
        lambda: client.conversation.item.retrieve("item_1"),
        lambda: client.conversation.item.truncate("item_1", audio_end_ms=1500),
        lambda: client.conversation.item.truncate("item_1", audio_end_ms=0, content_index=0),
        lambda: client.conversation.item.delete("item_1"),
        lambda: client.response.create(),
        lambda: client.response.create({"instructions": "Answer.",
                                        "output_modalities": ["text"],
                                        "metadata": {"k": "v"}}),
        lambda: client.response.create(output_modalities=["text"], max_output_tokens=50),
        lambda: client.response.cancel(),
        lambda: client.response.cancel("resp_1"),
        lambda: client.output_audio_buffer.clear(),
        lambda: client.send_text("hi there"),
        lambda: client.send_text("no reply", respond=False),
    ]
    before = len(server.received)
    sent = 0
    for helper in helpers:
        helper()
        sent += 1
    sent += 1  # send_text with respond=True is two events
    events = wait_count(server, before + sent)
    assert {e["type"] for e in events} == set(strict.index)  # every GA client event type
    assert_conform(strict, events)


def test_transcriber_traffic_conforms(strict):
    recognizer = ScriptedRecognizer(["hello there"])
    with FakeRealtimeServer(recognizer=recognizer) as fake:
        with rs.Transcriber(model="gpt-4o-transcribe", language="en", prompt="greetings",
                            turn_detection=None, noise_reduction="near_field",
                            include_logprobs=True, url=fake.url, api_key="sk-local",
                            reconnect=False) as tr:
            tr.feed(tone(300))
            tr.commit()
            transcript = tr.finish(timeout=10)
        assert "hello there" in transcript.text
        events = fake.received
    assert {"session.update", "input_audio_buffer.append",
            "input_audio_buffer.commit"} <= {e["type"] for e in events}
    assert_conform(strict, events)


def test_tools_and_ask_traffic_conforms(strict):
    responder = ScriptedResponder([
        [FunctionCall("get_weather", '{"city": "Paris", "unit": "c"}', call_id="call_7")],
        Text("It is sunny in Paris."),
    ])
    with FakeRealtimeServer(responder=responder) as fake:
        client = rs.RealtimeClient(url=fake.url, api_key="sk-local", reconnect=False)
        try:
            from typing import Literal

            @client.tool
            def get_weather(city: str, unit: Literal["c", "f"] = "c",
                            days: Optional[int] = None) -> dict:
                """Current weather for a city.

                Args:
                    city: the city name.
                    unit: temperature unit.
                    days: forecast length.
                """
                return {"city": city, "temp": 21, "unit": unit}

            client.connect()
            response = client.ask("Weather in Paris?", timeout=20)
            assert "sunny" in response.text
            client.tools.wait_idle(5)
            events = fake.received
        finally:
            assert client.close()
    types = [e["type"] for e in events]
    assert "conversation.item.create" in types and "response.create" in types
    outputs = [e for e in events if e["type"] == "conversation.item.create"
               and e["item"]["type"] == "function_call_output"]
    assert outputs and outputs[0]["item"]["call_id"] == "call_7"
    assert any(e["type"] == "session.update" and e["session"].get("tools") for e in events)
    assert_conform(strict, events)


def test_handshake_never_offers_compression(make_client, server):
    client = make_client(intent="transcription")
    client.connect()
    headers = server.connections[-1].headers
    assert headers is not None
    assert "Sec-WebSocket-Extensions" not in headers  # no permessage-deflate for audio


# -- the spec's server examples through the real socket path ---------------------------------------
def test_spec_server_examples_reach_a_handler_intact(make_client, server):
    rows = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]
    examples = [r["event"] for r in rows if r["side"] == "server"]
    assert len(examples) >= 120
    client = make_client(intent="transcription")
    got: List[Dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.on("*", lambda ev: got.append(ev))
    client.connect()
    server.send_raw(json.dumps({"type": "test.begin"}))
    for event in examples:
        server.send_raw(json.dumps(event))
    server.send_raw(json.dumps({"type": "test.end"}))
    client.wait_for("test.end", timeout=10)
    deadline = time.monotonic() + 5
    while not got or got[-1].get("type") != "test.end":  # the handler runs a little later
        assert time.monotonic() < deadline
        time.sleep(0.01)
    types = [e.get("type") for e in got]
    between = got[types.index("test.begin") + 1:-1]
    received = [dict(e) for e in between if not str(e.get("type")).startswith("client.")]
    assert len(received) == len(examples)
    for sent, ev in zip(examples, received):
        assert ev == sent, sent.get("type")
    assert all(isinstance(e, rs.Event) for e in got)


# -- drift guard ----------------------------------------------------------------------------------
@pytest.mark.parametrize("beta, ga", sorted(BETA_TO_GA.items()))
def test_beta_handler_names_warn_once_with_the_ga_name(make_client, beta, ga):
    client = make_client()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.on(beta, lambda ev: None)
        client.on(beta, lambda ev: None)
        client.on(ga, lambda ev: None)
    drift = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(drift) == 1, [str(w.message) for w in caught]
    assert beta in str(drift[0].message) and ga in str(drift[0].message)


def test_beta_warning_points_at_the_caller(make_client):
    client = make_client()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.on("response.audio.delta", lambda ev: None)
    assert caught and caught[0].filename == __file__


@pytest.mark.parametrize("beta", sorted(BETA_CLIENT_TO_GA))
def test_beta_client_events_are_refused_with_the_ga_replacement(make_client, server, beta):
    client = make_client(intent="transcription")
    client.connect()
    before = len(server.received)
    with pytest.raises(ValueError) as info:
        client.send({"type": beta, "session": {"input_audio_transcription": {}}})
    assert "session.update" in str(info.value)
    assert beta in str(info.value)
    client.input_audio_buffer.commit()  # the connection is fine and nothing else was sent
    server.wait_received("input_audio_buffer.commit")
    assert [e["type"] for e in server.received[before:]] == ["input_audio_buffer.commit"]
