"""Wire constants of the Realtime protocol, in one place."""

from __future__ import annotations

__all__ = [
    "SAMPLE_RATE",
    "SAMPLE_WIDTH",
    "BYTES_PER_MS",
    "MAX_EVENT_BYTES",
    "MAX_EVENT_ID_LENGTH",
    "MAX_FRAME_BYTES",
    "METADATA_KEY",
]

SAMPLE_RATE = 24000
"""PCM16 audio on the wire: 24 kHz, mono, little-endian."""
SAMPLE_WIDTH = 2
BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH // 1000  # 48

MAX_EVENT_BYTES = 15 * 1024 * 1024
"""The server's limit on one client event (``input_audio_buffer.append`` of 15 MiB)."""
MAX_EVENT_ID_LENGTH = 512

MAX_FRAME_BYTES = 32 * 1024 * 1024
"""Default cap on one server frame or fragmented message (``max_frame_size``): a little above
the protocol's largest event (a ~24 MiB ``response.output_audio.delta`` or item echo of a
15 MiB append)."""

METADATA_KEY = "realtime_sync"
"""``response.metadata`` key the library uses to recognise its own responses."""
