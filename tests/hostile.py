"""A tiny hostile Realtime server for the fault tests: each test writes the script it runs.

Built on ``websockets`` (sync API), independent of the library's own server: a script is
``script(ws, n, server)`` for the ``n``-th connection (0-based) and sends whatever it likes.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, List, Optional

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

Script = Callable[[ServerConnection, int, "HostileServer"], None]


class HostileServer:
    """Runs ``script`` for every connection, on its own thread; records what clients sent."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.received: List[Dict[str, Any]] = []
        self.connections = 0
        self.cond = threading.Condition()
        self._server = serve(self._handle, "127.0.0.1", 0, max_size=None)
        port = self._server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="hostile-server", daemon=True)
        self._thread.start()

    def _handle(self, ws: ServerConnection) -> None:
        with self.cond:
            n = self.connections
            self.connections += 1
            self.cond.notify_all()
        try:
            self.script(ws, n, self)
        except ConnectionClosed:
            pass

    def recv(self, ws: ServerConnection, timeout: Optional[float] = 10) -> Dict[str, Any]:
        """The next client event (recorded)."""
        event = json.loads(ws.recv(timeout))
        with self.cond:
            self.received.append(event)
            self.cond.notify_all()
        return event  # type: ignore[no-any-return]

    def until(self, ws: ServerConnection, type_: str, timeout: float = 10) -> Dict[str, Any]:
        """Receive client events up to the first of ``type_``; return it."""
        while True:
            event = self.recv(ws, timeout)
            if event.get("type") == type_:
                return event

    def absorb(self, ws: ServerConnection) -> None:
        """Record client events until the connection ends."""
        while True:
            self.recv(ws, None)

    def wait(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError("the hostile server did not see what the test waited for")

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def send(ws: ServerConnection, event: Dict[str, Any]) -> None:
    ws.send(json.dumps(event))


def created(ws: ServerConnection, session_id: str, type_: str = "realtime",
            **session: Any) -> None:
    send(ws, {"type": "session.created", "event_id": f"ev_{session_id}",
              "session": {"id": session_id, "object": "realtime.session", "type": type_,
                          **session}})


def answer_update(server: HostileServer, ws: ServerConnection) -> Dict[str, Any]:
    update = server.until(ws, "session.update")
    send(ws, {"type": "session.updated", "event_id": "ev_u",
              "session": update.get("session") or {}})
    return update
