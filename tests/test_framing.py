"""Client frames built by the fast send path are byte-identical to websocket-client's."""

from __future__ import annotations

import pytest
import websocket

from realtime_sync._core import transport as _transport

SIZES = [0, 1, 2, 3, 4, 5, 125, 126, 127, 6413, 65535, 65536, 70001]
KEY = b"\x12\xab\x7f\x01"


def reference(data: bytes) -> bytes:
    frame = websocket.ABNF.create_frame(data, websocket.ABNF.OPCODE_TEXT)
    frame.get_mask_key = lambda n: KEY
    return frame.format()


@pytest.mark.parametrize("masker", ["python", "wsaccel"])
@pytest.mark.parametrize("size", SIZES)
def test_text_frames_match_websocket_client(monkeypatch, masker, size):
    if masker == "wsaccel":
        if _transport._XorMasker is None:
            pytest.skip("wsaccel is not installed (the fast extra)")
    else:
        monkeypatch.setattr(_transport, "_XorMasker", None)
    monkeypatch.setattr(_transport.os, "urandom", lambda n: KEY)
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    assert _transport.text_frame(data) == reference(data)


def test_str_payloads_are_sent_as_utf8(monkeypatch):
    monkeypatch.setattr(_transport.os, "urandom", lambda n: KEY)
    text = '{"type":"x","t":"grüße ✓"}'
    assert _transport.text_frame(text) == reference(text.encode("utf-8"))
