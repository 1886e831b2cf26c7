"""Waits see what came before them: the answer to a session config is not lost behind a burst
of other events (a server that sends more than the general history holds right after
``session.updated``)."""

from __future__ import annotations

import json

import pytest
from hostile import HostileServer, answer_update, created

import realtime_sync as rs
from realtime_sync._core.dispatch import Registry, Router
from realtime_sync.events import Event

pytestmark = pytest.mark.timeout(60)


def router() -> Router:
    return Router(Registry(), emit_handler_error=lambda event: None)


def test_a_session_updated_pushed_out_of_the_history_is_still_found():
    r = router()
    r.deliver(Event({"type": "session.updated", "session": {}}), block=False)
    for i in range(Router.RECENT + 50):
        r.deliver(Event({"type": "x.noise", "i": i}), block=False)
    seq, event = r.wait(("session.updated",), None, 1.0, 0, None, lambda: None)
    assert (seq, event["type"]) == (1, "session.updated")


def test_an_error_answering_the_config_is_still_found_after_a_burst():
    r = router()
    r.deliver(Event({"type": "error", "error": {"event_id": "evt_cfg", "message": "no"}}),
              block=False)
    for i in range(Router.RECENT * 2):
        r.deliver(Event({"type": "x.noise", "i": i}), block=False)
    with pytest.raises(rs.ServerError):
        r.wait(("session.updated",), None, 1.0, 0, {"evt_cfg"}, lambda: None)


def test_events_before_the_mark_stay_unseen():
    r = router()
    r.deliver(Event({"type": "session.updated", "session": {}}), block=False)
    for i in range(Router.RECENT + 5):
        r.deliver(Event({"type": "x.noise", "i": i}), block=False)
    with pytest.raises(rs.TimeoutError):
        r.wait(("session.updated",), None, 0.2, 1, None, lambda: None)


def test_connect_with_a_config_survives_a_burst_after_session_updated():
    def script(ws, n, server):
        created(ws, "s", "transcription")
        answer_update(server, ws)
        for i in range(2000):
            ws.send(json.dumps({"type": "x.noise", "i": i}))
        server.absorb(ws)

    for _ in range(3):
        with HostileServer(script) as srv:
            client = rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                                       session={"type": "transcription"}, reconnect=False)
            try:
                client.connect(timeout=20)
            finally:
                client.close()
