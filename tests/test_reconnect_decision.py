"""The reconnect decision as a table: one pure function over a typed close record, no sockets.

Each row: how a connection ended (a :class:`Closed` record), the client's state then, and
what must follow (next state, reconnect or not, what ``connect()`` raises, whether handlers
hear ``client.disconnected``, whether it is logged as an unwanted end).
"""

from __future__ import annotations

import pytest

from realtime_sync import Backoff
from realtime_sync._core.closing import (
    CLOSED,
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    RECONNECTING,
    CloseCause,
    Closed,
    Failure,
    decide,
    schedule,
)


def up(**fields):
    """A connection that had a session."""
    return Closed(opened=True, established=True, **fields)


ROWS = [
    # (name, record, state, keywords, next state, reconnect, failure, announce, warn)
    ("tcp reset mid-session", up(), CONNECTED, {}, RECONNECTING, True, None, True, False),
    ("server going away 1001", up(code=1001), CONNECTED, {}, RECONNECTING, True, None, True,
     False),
    ("server internal error 1011", up(code=1011), CONNECTED, {}, RECONNECTING, True, None, True,
     False),
    ("normal close 1000 ends it", up(code=1000), CONNECTED, {}, DISCONNECTED, False, None,
     True, True),
    ("1000 after session_expired reconnects", up(code=1000), CONNECTED,
     {"error_code": "session_expired"}, RECONNECTING, True, None, True, False),
    ("auth close 3000 never retried", up(code=3000), CONNECTED, {}, DISCONNECTED, False, None,
     True, True),
    ("config close 4000 never retried", up(code=4000), CONNECTED, {}, DISCONNECTED, False,
     None, True, True),
    ("keepalive timeout", up(cause=CloseCause.KEEPALIVE_TIMEOUT), CONNECTED, {}, RECONNECTING,
     True, None, True, False),
    ("send stalled", up(cause=CloseCause.SEND_STALLED), CONNECTED, {}, RECONNECTING, True, None,
     True, False),
    ("oversized frame", up(cause=CloseCause.PROTOCOL_ERROR), CONNECTED, {}, RECONNECTING, True,
     None, True, False),
    ("planned rollover", up(cause=CloseCause.RESTART), CONNECTED, {}, RECONNECTING, True, None,
     True, False),
    ("no reconnect policy", up(), CONNECTED, {"reconnect_enabled": False}, DISCONNECTED, False,
     None, True, True),
    ("session.closed ends a translation", up(code=1000), CONNECTED, {"session_ended": True},
     DISCONNECTED, False, None, True, False),
    ("even a reset after session.closed", up(), CONNECTED, {"session_ended": True},
     DISCONNECTED, False, None, True, False),
    ("closed by the client", up(by_client=True), CLOSED, {}, CLOSED, False, None, True, False),
    ("a close while already closed stays closed", up(), CLOSED, {}, CLOSED, False, None, False,
     False),
    # attempts while reconnecting (no session)
    ("503 while reconnecting: try again", Closed(http_status=503), RECONNECTING, {},
     RECONNECTING, True, None, False, False),
    ("429 while reconnecting: try again", Closed(http_status=429, retry_after=3.0),
     RECONNECTING, {}, RECONNECTING, True, None, False, False),
    ("401 while reconnecting: stop", Closed(http_status=401), RECONNECTING, {}, DISCONNECTED,
     False, None, True, True),
    ("404 while reconnecting: stop", Closed(http_status=404), RECONNECTING, {}, DISCONNECTED,
     False, None, True, True),
    ("refused while reconnecting: try again", Closed(), RECONNECTING, {}, RECONNECTING, True,
     None, False, False),
    ("TLS failure while reconnecting: stop", Closed(tls_failed=True), RECONNECTING, {},
     DISCONNECTED, False, None, True, True),
    ("a key callable that raises: stop", Closed(unresolvable=True), RECONNECTING, {},
     DISCONNECTED, False, None, True, True),
    # the first connection of connect(): never retried, connect() raises
    ("first attempt refused", Closed(), CONNECTING, {}, DISCONNECTED, False, Failure.CONNECT,
     False, False),
    ("first attempt 401", Closed(http_status=401), CONNECTING, {}, DISCONNECTED, False,
     Failure.AUTH, False, False),
    ("first attempt close 3000", Closed(opened=True, code=3000), CONNECTING, {}, DISCONNECTED,
     False, Failure.AUTH, False, False),
    ("first attempt close 4000", Closed(opened=True, code=4000), CONNECTING, {}, DISCONNECTED,
     False, Failure.REFUSED_CONFIG, False, False),
    ("first attempt 503", Closed(http_status=503), CONNECTING, {}, DISCONNECTED, False,
     Failure.CONNECT_LATER, False, False),
    ("first attempt with bad options", Closed(unresolvable=True), CONNECTING, {}, DISCONNECTED,
     False, Failure.BAD_OPTIONS, False, False),
    ("a session created, then lost, during connect()", up(), CONNECTING, {}, RECONNECTING, True,
     None, False, False),
]


@pytest.mark.parametrize("name,closed,state,kw,after,reconnect,failure,announce,warn", ROWS,
                         ids=[row[0] for row in ROWS])
def test_the_reconnect_decision(name, closed, state, kw, after, reconnect, failure, announce,
                                warn):
    decision = decide(closed, state=state, **kw)
    assert (decision.state, decision.reconnect, decision.failure, decision.announce,
            decision.warn) == (after, reconnect, failure, announce, warn)


def test_the_close_record_has_typed_flags_and_no_untyped_extras():
    closed = Closed(http_status=403)
    assert closed.auth_failed and closed.fatal
    assert not Closed(code=1006).fatal
    assert Closed(tls_failed=True).fatal and Closed(unresolvable=True).fatal
    assert not hasattr(closed, "extra")


def test_the_decision_does_not_change_the_record():
    closed = up(code=1011)
    before = repr(closed)
    decide(closed, state=CONNECTED)
    assert repr(closed) == before


# -- when: the schedule after a decision to reconnect (a Backoff without jitter) ---------------
POLICY = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.0, max_attempts=4,
                 healthy_after=30.0)

SCHEDULE = [
    # (name, record, failed attempts so far, now, expected (attempt, delay, count, planned) or None)
    ("first failure waits the initial delay", Closed(), 0, 100.0, (1, 1.0, 1, False)),
    ("the delay doubles", Closed(), 1, 100.0, (2, 2.0, 2, False)),
    ("the delay is capped", Closed(), 3, 100.0, (4, 8.0, 4, False)),
    ("the policy gives up after max_attempts", Closed(), 4, 100.0, None),
    ("a session that stayed up resets the count", up(established_at=10.0), 3, 100.0,
     (1, 1.0, 1, False)),
    ("a session too short to count does not", up(established_at=90.0), 3, 100.0,
     (4, 8.0, 4, False)),
    ("a finished exchange proves health at once", up(established_at=99.0, exchanged=True), 3,
     100.0, (1, 1.0, 1, False)),
    ("Retry-After is honoured", Closed(http_status=503, retry_after=5.0), 0, 100.0,
     (1, 5.0, 1, False)),
    ("Retry-After never beyond the cap", Closed(http_status=429, retry_after=600.0), 0, 100.0,
     (1, 8.0, 1, False)),
    ("a planned restart reconnects at once, count kept", up(cause=CloseCause.RESTART,
                                                             established_at=99.0), 2, 100.0,
     (1, 0.0, 2, True)),
]


@pytest.mark.parametrize("name,closed,count,now,expected", SCHEDULE,
                         ids=[row[0] for row in SCHEDULE])
def test_the_reconnect_schedule(name, closed, count, now, expected):
    retry = schedule(closed, count, POLICY, now)
    got = None if retry is None else (retry.attempt, retry.delay, retry.count, retry.planned)
    assert got == expected
