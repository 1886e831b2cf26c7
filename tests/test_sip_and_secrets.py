"""SIP calls (``call_id=``) and ephemeral keys: the REST side stays in the official ``openai``
SDK, which talks here to the local server's REST endpoints; the session runs through this
library. The REST endpoints are a network service, so hostile requests are tested too."""

from __future__ import annotations

import http.client
import json
import threading

import pytest

import realtime_sync as rs
from realtime_sync.server import RealtimeServer

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def srv():
    with RealtimeServer(rest=True) as server:
        yield server


@pytest.fixture
def sdk(srv):
    return openai.OpenAI(base_url=srv.http_url, api_key="sk-local", max_retries=0)


def post(srv, path, body=b"{}", key="sk-local", headers=None):
    host, port = srv.http_url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    hdrs = dict(headers or {})
    if key:
        hdrs["Authorization"] = f"Bearer {key}"
    conn.request("POST", path, body=body, headers=hdrs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, (json.loads(data) if data else None)


# -- call_id on the client --------------------------------------------------------------------
def test_call_id_goes_in_the_url_without_a_default_model():
    client = rs.RealtimeClient(call_id="rtc_123", api_key="sk-x")
    assert client.url.endswith("/v1/realtime?call_id=rtc_123")


@pytest.mark.parametrize("bad", ["", "  ", 5])
def test_a_bad_call_id_is_refused_before_connecting(bad):
    with pytest.raises(rs.ConfigurationError, match="call_id"):
        rs.RealtimeClient(call_id=bad, api_key="sk-x")


def test_transcriber_passes_call_id_through():
    with RealtimeServer() as server:
        tr = rs.Transcriber(call_id="rtc_9", url=server.url, api_key="sk-local")
        with pytest.raises(rs.RealtimeSyncError, match="not an accepted call"):
            tr.start()  # the plain server has no calls: refused, but the call_id got there
        tr.close()


# -- SIP calls --------------------------------------------------------------------------------
def test_an_accepted_call_is_joined_with_the_accepted_config(srv, sdk):
    call_id = srv.ring()
    sdk.realtime.calls.accept(call_id, type="realtime", model="gpt-realtime-2.1",
                              instructions="Answer for the bakery.", output_modalities=["text"])
    created = []
    client = rs.RealtimeClient(url=srv.url, api_key="sk-local", call_id=call_id,
                               reconnect=False)
    client.on("session.created", created.append)
    with client:
        client.flush(timeout=5)
        session = created[0].session
        assert session["instructions"] == "Answer for the bakery."
        assert session["model"] == "gpt-realtime-2.1"
        assert session["output_modalities"] == ["text"]
        client.send_text("hello")
        assert client.wait_for("response.done", timeout=10).response["status"] == "completed"
        gone = threading.Event()
        client.on("client.disconnected", lambda e: gone.set())
        sdk.realtime.calls.hangup(call_id)
        assert gone.wait(10), "hanging up must end the call's session"


def test_a_call_that_was_not_accepted_cannot_be_joined(srv):
    call_id = srv.ring()
    client = rs.RealtimeClient(url=srv.url, api_key="sk-local", call_id=call_id,
                               reconnect=False)
    with pytest.raises(rs.RealtimeSyncError, match="not an accepted call"):
        client.connect(timeout=10)
    client.close()


def test_call_control_follows_the_call_states(srv, sdk):
    call_id = srv.ring()
    with pytest.raises(openai.ConflictError):
        sdk.realtime.calls.hangup(call_id)  # ringing: not active yet
    sdk.realtime.calls.reject(call_id)
    with pytest.raises(openai.ConflictError):
        sdk.realtime.calls.accept(call_id, type="realtime")
    with pytest.raises(openai.NotFoundError):
        sdk.realtime.calls.accept("rtc_unknown", type="realtime")
    other = srv.ring()
    sdk.realtime.calls.accept(other, type="realtime")
    with pytest.raises(openai.BadRequestError):
        sdk.realtime.calls.refer(other, target_uri="http://evil.example")
    sdk.realtime.calls.refer(other, target_uri="tel:+14155550123")
    assert srv.rest.call(other).status == "referred"


def test_accept_with_an_invalid_config_is_refused_and_the_call_keeps_ringing(srv, sdk):
    call_id = srv.ring()
    with pytest.raises(openai.BadRequestError):
        sdk.realtime.calls.accept(call_id, type="realtime", max_output_tokens=0)
    assert srv.rest.call(call_id).status == "ringing"


# -- ephemeral keys ---------------------------------------------------------------------------
def test_an_ephemeral_key_connects_with_its_session_config(srv, sdk):
    secret = sdk.realtime.client_secrets.create(session={
        "type": "transcription",
        "audio": {"input": {"transcription": {"model": "gpt-transcribe"},
                            "turn_detection": None}}})
    assert secret.value.startswith("ek_") and secret.session.type == "transcription"
    created = []
    client = rs.RealtimeClient(url=srv.url, api_key=secret.value, intent="transcription",
                               reconnect=False)
    client.on("session.created", created.append)
    with client:
        client.flush(timeout=5)
        tr = created[0].session["audio"]["input"]["transcription"]
        assert tr["model"] == "gpt-transcribe"
    assert secret.value not in repr(client)


def test_an_ephemeral_key_cannot_mint_keys_or_control_calls(srv, sdk):
    secret = sdk.realtime.client_secrets.create(session={"type": "realtime"})
    status, body = post(srv, "/v1/realtime/client_secrets", key=secret.value)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


def test_an_expired_ephemeral_key_is_refused(srv, sdk, monkeypatch):
    import time

    from realtime_sync.server import _rest

    secret = sdk.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 10}, session={"type": "realtime"})
    later = time.time() + 11
    monkeypatch.setattr(_rest.time, "time", lambda: later)
    client = rs.RealtimeClient(url=srv.url, api_key=secret.value, reconnect=False)
    with pytest.raises(rs.AuthenticationError):
        client.connect(timeout=10)
    client.close()


def test_a_translation_key_starts_its_translation_session(srv, sdk):
    secret = sdk.realtime.translations.client_secrets.create(session={
        "model": "gpt-realtime-translate", "audio": {"output": {"language": "fr"}}})
    assert secret.session.type == "translation"
    with rs.Translator(to="fr", url=srv.url, api_key=secret.value) as tr:
        tr.finish(timeout=10)


def test_a_server_without_rest_endpoints_says_how_to_get_them():
    with RealtimeServer() as plain:
        with pytest.raises(RuntimeError, match="rest=True"):
            _ = plain.http_url
        with pytest.raises(RuntimeError, match="rest=True"):
            plain.ring()


# -- hostile REST requests --------------------------------------------------------------------
@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b"[1, 2]", 400),
    (b"[" * 100000 + b"]" * 100000, 400),
    (b'{"expires_after": {"seconds": 1}}', 400),
    (b'{"expires_after": {"seconds": true}}', 400),
    (b'{"session": {"type": "nonsense"}}', 400),
])
def test_bad_minting_requests_get_an_openai_error(srv, body, status):
    code, answer = post(srv, "/v1/realtime/client_secrets", body=body)
    assert code == status and set(answer["error"]) >= {"message", "type", "code"}


def test_requests_without_a_good_key_or_to_unknown_paths_are_refused(srv):
    assert post(srv, "/v1/realtime/client_secrets", key=None)[0] == 401
    assert post(srv, "/v1/realtime/client_secrets", key="sk-wrong")[0] == 401
    assert post(srv, "/v1/realtime/calls/../../etc/accept")[0] == 404
    assert post(srv, "/v1/files")[0] == 404


def test_an_oversized_body_is_refused_before_it_is_read(srv):
    status, answer = post(srv, "/v1/realtime/client_secrets", body=b"{}",
                          headers={"Content-Length": str(50 * 1024 * 1024)})
    assert status == 413 and answer["error"]["code"] == "body_too_large"


def test_the_rest_thread_ends_with_the_server():
    with RealtimeServer(rest=True) as server:
        port = server.http_url.rsplit(":", 1)[1].split("/")[0]
        names = {t.name for t in threading.enumerate()}
        assert f"rs-server-rest-{port}" in names
    assert f"rs-server-rest-{port}" not in {t.name for t in threading.enumerate()}
