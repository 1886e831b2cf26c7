"""A script blocked in a realtime_sync call ends on Ctrl-C, and one that forgets close() exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

PRELUDE = """
import sys, time
import realtime_sync as rs
client = rs.RealtimeClient(url=sys.argv[1], api_key="sk-local")
client.connect(timeout=10)
print("ready", flush=True)
"""


def _run(server, body: str) -> subprocess.Popen:
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code, server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()


@pytest.mark.parametrize("call", [
    "client.wait_for('never.comes')",
    "list(client.events())",
    "client.wait_for('never.comes', timeout=60)",
])
def test_ctrl_c_ends_a_blocking_call(server, call):
    proc = _run(server, f"""
    try:
        {call}
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        client.close()
        sys.exit(0)
    """)
    try:
        _wait_ready(proc)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert "interrupted" in out, err
    assert proc.returncode == 0


def test_ctrl_c_ends_connect_to_a_server_that_never_answers():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts TCP but never upgrades
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/v1/realtime"
    code = textwrap.dedent("""
    import sys, realtime_sync as rs
    client = rs.RealtimeClient(url=sys.argv[1], api_key="sk-local", open_timeout=60)
    print("ready", flush=True)
    try:
        client.connect(timeout=60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        listener.close()
    assert "interrupted" in out, err


def test_a_script_that_forgets_close_still_exits_promptly(server):
    proc = _run(server, """
    client.send({"type": "response.cancel"})
    print("done", flush=True)
    """)
    try:
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "done" in out
