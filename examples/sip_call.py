"""Answer an incoming SIP call: accept it with the official ``openai`` SDK, then talk on it here.

OpenAI announces a call to your webhook (``realtime.call.incoming`` with a ``call_id``). The REST
calls (accept, reject, refer, hang up) stay in the SDK; the conversation runs through
``realtime_sync`` with ``RealtimeClient(call_id=...)``.

    python examples/sip_call.py --local          # offline: a local server makes a call ring
    python examples/sip_call.py --call-id rtc_…  # a real call (needs $OPENAI_API_KEY)

Needs ``pip install openai`` (and, with ``--local``, ``pip install "realtime-sync[server]"``).
"""

from __future__ import annotations

import argparse
import os

import realtime_sync as rs


def answer(call_id: str, sdk, url=None, api_key=None) -> None:
    """Accept the call, greet the caller, print the reply, hang up (main thread)."""
    sdk.realtime.calls.accept(call_id, type="realtime", model="gpt-realtime-2.1",
                              instructions="You answer the phone for a bakery. Be brief.",
                              output_modalities=["text"])
    options = {"url": url} if url else {}
    client = rs.RealtimeClient(call_id=call_id, api_key=api_key, **options)
    client.on("session.created", lambda e: print("joined call", call_id, "-", e.session.get(
        "model"), "-", e.session.get("instructions")))
    with client:  # connects: blocks until session.created
        client.send_text("Hello, is this the bakery?")
        done = client.wait_for("response.done", timeout=30)
        for item in done.response.get("output", []):
            for part in item.get("content") or []:
                print("assistant:", part.get("text") or part.get("transcript"))
    sdk.realtime.calls.hangup(call_id)
    print("hung up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="offline, against a local server")
    parser.add_argument("--call-id", help="the call_id of a real incoming call")
    args = parser.parse_args()
    from openai import OpenAI

    if args.local:
        from realtime_sync.server import RealtimeServer

        with RealtimeServer(rest=True) as srv:
            sdk = OpenAI(base_url=srv.http_url, api_key="sk-local")
            answer(srv.ring(), sdk, url=srv.url, api_key="sk-local")
        return
    if not args.call_id:
        parser.error("give --call-id (from your realtime.call.incoming webhook) or --local")
    answer(args.call_id, OpenAI(), api_key=os.environ.get("OPENAI_API_KEY"))


if __name__ == "__main__":
    main()
