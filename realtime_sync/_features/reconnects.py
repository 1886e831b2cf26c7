"""One line on a terminal per lost connection, reconnect attempt and reconnect: what the
command line and the voice chat print while a session reconnects."""

from __future__ import annotations

from typing import Any, TextIO

__all__ = ["report_reconnects"]


def report_reconnects(target: Any, stderr: TextIO) -> None:
    """Print one line on ``stderr`` per lost connection and per reconnect attempt (with its
    delay) and when the connection is back. ``target`` has ``on(type, handler)``."""

    def lost(event: Any) -> None:
        if event.get("will_reconnect"):
            reason = event.get("reason") or "connection closed"
            stderr.write(f"realtime-sync: connection lost ({reason})\n")
            stderr.flush()

    def attempt(event: Any) -> None:
        stderr.write(f"realtime-sync: reconnecting in {float(event.get('delay') or 0):.1f} s "
                     f"(attempt {event.get('attempt')})\n")
        stderr.flush()

    def back(event: Any) -> None:
        stderr.write("realtime-sync: reconnected\n")
        stderr.flush()

    target.on("client.disconnected", lost)
    target.on("client.reconnecting", attempt)
    target.on("client.reconnected", back)
