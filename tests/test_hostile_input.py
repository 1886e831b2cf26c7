"""Hostile inputs on the client side (issue 20: items 9-13 and 15).

Every test makes its own bad input or runs its own small hostile server: a FIFO, an MP3 with
garbage spliced in, a frame holding a lone surrogate, 160k deltas, an absurd ``elapsed_ms``,
a keep-alive clock under load.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict

import pytest

import realtime_sync as rs
from realtime_sync.cli import main as cli_main

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-0123456789abcdefSECRET"
NOWHERE = "ws://127.0.0.1:9/v1/realtime"  # never connected to: the input fails first


def _outcome_unblocking(fifo: os.PathLike, call: Callable[[], Any]) -> Dict[str, Any]:
    """Run ``call`` on a thread; what it returned or raised. A call still blocked after 10 s
    (a deadlock guard, not a timing) is released by a writer opening the FIFO, and the test
    fails."""
    out: Dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
            out["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        for _ in range(20):  # let every blocked open() of the FIFO see a writer, then EOF
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                break
        worker.join(10)
        pytest.fail("reading a FIFO blocked")
    return out


def test_transcribe_file_refuses_a_fifo_with_a_clear_error(tmp_path):
    fifo = tmp_path / "input.wav"
    os.mkfifo(fifo)
    out = _outcome_unblocking(fifo, lambda: rs.transcribe_file(fifo, url=NOWHERE, api_key=KEY))
    assert isinstance(out.get("error"), rs.AudioError)
    assert "not a regular file" in str(out["error"]) and str(fifo) in str(out["error"])


def test_the_cli_refuses_a_fifo_with_exit_code_1(tmp_path, capsys):
    fifo = tmp_path / "input.mp3"
    os.mkfifo(fifo)
    out = _outcome_unblocking(fifo, lambda: cli_main(
        ["transcribe", str(fifo), "--url", NOWHERE, "--api-key", KEY]))
    assert out.get("result") == 1
    assert "not a regular file" in capsys.readouterr().err


def test_a_batch_reports_a_fifo_as_that_files_error_and_goes_on(tmp_path):
    fifo = tmp_path / "input.wav"
    os.mkfifo(fifo)
    out = _outcome_unblocking(fifo, lambda: rs.transcribe_files([fifo], url=NOWHERE,
                                                                 api_key=KEY))
    [result] = out["result"]
    assert isinstance(result.error, rs.AudioError) and "not a regular file" in str(result.error)
