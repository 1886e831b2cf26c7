"""Tool calling: the model calls Python functions, the library runs them and sends the results.

    python examples/tools.py                 # a local server plays the model (no key needed)
    OPENAI_API_KEY=sk-... python examples/tools.py --openai "Weather in Paris and Oslo?"

Each tool's JSON schema comes from its signature, type hints and docstring. The functions run
on the ``realtime-sync-tools`` thread; ``client.ask`` returns the model's answer after the
tool results went back (the responses that called tools are in ``answer.previous``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime, timezone
from typing import Dict, Literal, Optional

import realtime_sync as rs

FAKE_WEATHER = {"paris": 21.0, "oslo": 9.5, "tokyo": 26.0}


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> Dict[str, object]:
    """Current temperature in a city.

    Args:
        city: the city name, e.g. "Paris".
        unit: the temperature unit.
    """
    temp = FAKE_WEATHER.get(city.strip().lower())
    if temp is None:
        raise LookupError(f"no weather station in {city!r}")
    if unit == "fahrenheit":
        temp = round(temp * 9 / 5 + 32, 1)
    return {"city": city, "temperature": temp, "unit": unit}


def current_time(timezone_name: Optional[str] = None) -> str:
    """The current date and time (UTC unless a zone name such as "Europe/Paris" is given).

    Args:
        timezone_name: an IANA time zone name.
    """
    now = datetime.now(timezone.utc)
    if timezone_name:
        from zoneinfo import ZoneInfo

        now = now.astimezone(ZoneInfo(timezone_name))
    return now.isoformat(timespec="seconds")


def local_model():
    """A local server whose scripted "model" calls get_weather twice, then answers."""
    from realtime_sync.server import FunctionCall, RealtimeServer, ScriptedResponder, Text

    def answer(request):
        results = [json.loads(i["output"]) for i in request.items
                   if i.get("type") == "function_call_output"]
        parts = [f"{r['city']}: {r['temperature']} {r['unit']}" if "city" in r
                 else f"(error: {r['error']})" for r in results]
        return Text("Here is the weather. " + "; ".join(parts))

    responder = ScriptedResponder([
        [FunctionCall("get_weather", json.dumps({"city": "Paris"})),
         FunctionCall("get_weather", json.dumps({"city": "Atlantis"}))],
        answer,
    ])
    return RealtimeServer(api_key="sk-local", responder=responder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="What's the weather in Paris and Atlantis?")
    parser.add_argument("--openai", action="store_true", help="use OpenAI (needs OPENAI_API_KEY)")
    parser.add_argument("--model", default=rs.models.DEFAULT_CONVERSATION_MODEL)
    args = parser.parse_args()

    session = {"type": "realtime", "output_modalities": ["text"],
               "instructions": "Use the tools to answer. Be brief."}
    with contextlib.ExitStack() as stack:
        if args.openai:
            if not os.environ.get("OPENAI_API_KEY"):
                sys.exit("--openai needs OPENAI_API_KEY")
            options = {"model": args.model}
        else:
            srv = stack.enter_context(local_model())
            options = {"url": srv.url, "api_key": "sk-local"}
        client = stack.enter_context(rs.RealtimeClient(session=session, **options))
        client.tool(get_weather)
        client.tool(current_time)
        client.on("client.tool_call", lambda e: print(
            f"  [tool] {e.name}({e.arguments}) -> {e.error or e.output}"))

        print("you:", args.question)
        answer = client.ask(args.question, timeout=60)
        for step in answer.previous:
            print(f"  (response {step.id} called {[c.name for c in step.function_calls]})")
        print("model:", answer.text)
        print("usage:", (answer.usage or {}).get("total_tokens"), "tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
