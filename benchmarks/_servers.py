"""A minimal, fast WebSocket server for the benchmarks, run in its own process.

It speaks just enough of RFC 6455 and of the Realtime protocol for three different clients
(a bare ``websocket.WebSocketApp``, the ``openai`` SDK, ``realtime_sync``) to connect to the
SAME server: the HTTP upgrade, a ``session.created`` event, then it waits for a command.
Commands travel inside an ordinary client event, ``conversation.item.retrieve``, whose
``item_id`` names the job (every client can send that event with its public API):

* ``blast:<kind>:<n>`` -- send ``n`` pre-serialised server events as fast as the socket takes
  them (``kind``: ``small`` transcription deltas or ``audio`` 100 ms output-audio deltas).
* ``pace:<n>:<interval_ms>`` -- send ``n`` small deltas, one every ``interval_ms``, each
  stamped with ``time.perf_counter_ns()`` in its ``t`` field (CLOCK_MONOTONIC on Linux, the
  same clock in every process) so the client can measure latency.
* ``echo`` -- from now on answer every ``input_audio_buffer.append`` with a transcription
  delta whose ``item_id`` is the append's ``event_id`` (a live transcription session).

Other frames are parsed and dropped (appends are not unmasked unless echoed), pings get
pongs, a close frame gets a close frame. The server process costs the clients nothing: it
runs on the other core, with pre-built frames and ``sendall``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SMALL_DELTA = {
    "type": "conversation.item.input_audio_transcription.delta",
    "event_id": "event_C0aGb1tF2bQk3Xw9y8Z7v",
    "item_id": "item_C0aGb0Zq8Ww2mT4Jd1Xc5",
    "content_index": 0,
    "delta": " quick",
    "obfuscation": "x2Fq9",
}
"""A typical transcription delta as OpenAI sends it (about 200 bytes of JSON)."""


def _audio_delta() -> Dict[str, Any]:
    pcm = bytes((i * 7) & 0xFF for i in range(4800))  # 100 ms at 24 kHz, PCM16 mono
    return {
        "type": "response.output_audio.delta",
        "event_id": "event_C0aGb1tF2bQk3Xw9y8Z7v",
        "response_id": "resp_C0aGb0Zq8Ww2mT4Jd1Xc5",
        "item_id": "item_C0aGb0Zq8Ww2mT4Jd1Xc5",
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(pcm).decode("ascii"),
    }


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked server frame (FIN set)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def _event_frame(event: Dict[str, Any], i: int) -> bytes:
    ev = dict(event, event_id=f"event_{i:021d}")
    return frame(json.dumps(ev, separators=(",", ":")).encode())


BLOCK = 1000


def _blocks() -> Dict[str, bytes]:
    """Pre-built blocks of BLOCK frames each, per kind."""
    audio = _audio_delta()
    return {
        "small": b"".join(_event_frame(SMALL_DELTA, i) for i in range(BLOCK)),
        "audio": b"".join(_event_frame(audio, i) for i in range(BLOCK)),
    }


def _session_created() -> bytes:
    ev = {
        "type": "session.created",
        "event_id": "event_000",
        "session": {
            "type": "transcription",
            "id": "sess_bench",
            "object": "realtime.transcription_session",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": None, "noise_reduction": None,
                                "turn_detection": None}},
            "include": None,
        },
    }
    return frame(json.dumps(ev, separators=(",", ":")).encode())


class _Conn:
    def __init__(self, sock: socket.socket, blocks: Dict[str, bytes]) -> None:
        self.sock = sock
        self.blocks = blocks
        self.buf = bytearray()
        self.echo = False
        self.send_lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def handshake(self) -> bool:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.buf += chunk
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.send(_session_created())
        return True

    def _need(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = self.sock.recv(262144)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def next_frame(self) -> Optional[Tuple[int, bytes, int]]:
        """(opcode, payload or b"" when skipped, length); None at EOF."""
        if not self._need(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        opcode = b0 & 0x0F
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if not self._need(4):
                return None
            n = struct.unpack_from("!H", self.buf, 2)[0]
            pos = 4
        elif n == 127:
            if not self._need(10):
                return None
            n = struct.unpack_from("!Q", self.buf, 2)[0]
            pos = 10
        masked = b1 & 0x80
        mask = b""
        if masked:
            if not self._need(pos + 4):
                return None
            mask = bytes(self.buf[pos:pos + 4])
            pos += 4
        if not self._need(pos + n):
            return None
        raw = bytes(self.buf[pos:pos + n])
        del self.buf[:pos + n]
        if masked and (n <= 4096 or opcode != 0x1 or self.echo):
            reps = (n + 3) // 4
            m = int.from_bytes((mask * reps)[:n], "big")
            raw = (int.from_bytes(raw, "big") ^ m).to_bytes(n, "big")
            return opcode, raw, n
        if masked:
            return opcode, b"", n
        return opcode, raw, n

    def serve(self) -> None:
        try:
            if not self.handshake():
                return
            while True:
                got = self.next_frame()
                if got is None:
                    return
                opcode, payload, _ = got
                if opcode == 0x8:
                    self.send(frame(payload[:2], 0x8))
                    return
                if opcode == 0x9:
                    self.send(frame(payload, 0xA))
                    continue
                if opcode != 0x1 or not payload:
                    continue
                self.on_text(payload)
        except OSError:
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def on_text(self, payload: bytes) -> None:
        if self.echo and b'"input_audio_buffer.append"' in payload[:80]:
            event = json.loads(payload)
            reply = dict(SMALL_DELTA, item_id=event.get("event_id", ""),
                         event_id=f"event_{time.perf_counter_ns()}")
            self.send(frame(json.dumps(reply, separators=(",", ":")).encode()))
            return
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if event.get("type") != "conversation.item.retrieve":
            return
        job = str(event.get("item_id", "")).split(":")
        if job[0] == "blast":
            block = self.blocks[job[1]]
            n = int(job[2])
            threading.Thread(target=self._blast, args=(block, n), daemon=True,
                             name="bench-blast").start()
        elif job[0] == "pace":
            n, interval = int(job[1]), float(job[2]) / 1000.0
            threading.Thread(target=self._pace, args=(n, interval), daemon=True,
                             name="bench-pace").start()
        elif job[0] == "echo":
            self.echo = True

    def _blast(self, block: bytes, n: int) -> None:
        try:
            full, rest = divmod(n, BLOCK)
            for _ in range(full):
                self.send(block)
            if rest:
                # frames in a block have equal sizes within one kind
                size = len(block) // BLOCK
                self.send(block[:rest * size])
        except OSError:
            pass

    def _pace(self, n: int, interval: float) -> None:
        start = time.perf_counter()
        try:
            for i in range(n):
                target = start + i * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                ev = dict(SMALL_DELTA, event_id=f"event_{i}", t=time.perf_counter_ns())
                self.send(frame(json.dumps(ev, separators=(",", ":")).encode()))
        except OSError:
            pass


def _serve(listener: socket.socket) -> None:
    blocks = _blocks()
    for kind, block in blocks.items():  # blocks of one kind are built from equal-size frames
        assert len(block) % BLOCK == 0, kind
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_Conn(sock, blocks).serve, daemon=True,
                         name="bench-conn").start()


def _main() -> None:
    """Child process: print the port, serve until stdin closes."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    threading.Thread(target=_serve, args=(listener,), daemon=True).start()
    sys.stdout.write(f"{listener.getsockname()[1]}\n")
    sys.stdout.flush()
    sys.stdin.read()  # EOF means stop
    listener.close()


class BenchServer:
    """The benchmark server in a child process. ``with BenchServer() as srv: srv.port``."""

    def __init__(self) -> None:
        self._proc: Optional[subprocess.Popen] = None
        self.port = 0

    def start(self) -> BenchServer:
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/realtime``."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def base_url(self) -> str:
        """``ws://127.0.0.1:PORT/v1`` (the SDK's ``websocket_base_url``)."""
        return f"ws://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return int(self._proc.pid)

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def cpu_count() -> int:
    return os.cpu_count() or 1


__all__: List[str] = ["BenchServer", "SMALL_DELTA", "frame", "cpu_count"]


if __name__ == "__main__":
    _main()
