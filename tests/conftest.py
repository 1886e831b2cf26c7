"""Shared fixtures: a local Realtime server, and a guard that no test leaves a thread behind."""

from __future__ import annotations

import os
import threading
import time
from typing import Iterator, List

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip locally; under CI (CI=true) a missing component is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _library_threads() -> List[threading.Thread]:
    return [
        t for t in threading.enumerate()
        if t.name.startswith("realtime-sync-") and t.is_alive()
    ]


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Fail any test that leaves a ``realtime-sync-*`` thread running."""
    before = set(_library_threads())
    yield
    deadline = time.monotonic() + 3.0
    leaked = [t for t in _library_threads() if t not in before]
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        leaked = [t for t in _library_threads() if t not in before]
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture
def server():
    """A local Realtime server on 127.0.0.1 that accepts the key ``sk-local``."""
    from realtime_sync.testing import FakeRealtimeServer

    with FakeRealtimeServer(api_key="sk-local") as srv:
        yield srv


@pytest.fixture
def make_client(server):
    """Factory for clients of the ``server`` fixture; every client is closed after the test."""
    import realtime_sync as rs

    clients = []

    def make(**kwargs):
        kwargs.setdefault("url", server.url)
        kwargs.setdefault("api_key", "sk-local")
        kwargs.setdefault("reconnect", False)
        client = rs.RealtimeClient(**kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        assert client.close(timeout=5), "close() did not end every thread"
