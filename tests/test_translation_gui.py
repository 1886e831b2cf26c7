"""The Tk captions example translating: source text and translated captions side by side."""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import wave
from typing import Any

import pytest
from test_gui import _run_until, display, root  # noqa: F401 - the Tk fixtures

from realtime_sync.server import RealtimeServer, ScriptedTranslator, tone

HERE = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.gui
@pytest.mark.timeout(120)
def test_captions_example_shows_source_and_translation_side_by_side(root: Any,  # noqa: F811
                                                                    tmp_path: Any) -> None:
    spec = importlib.util.spec_from_file_location("live_captions_tk_translate",
                                                  HERE / "examples" / "live_captions_tk.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    wav = tmp_path / "speech.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(tone(600) + bytes(48 * 400) + tone(400) + bytes(48 * 400))
    engine = ScriptedTranslator(["Hola mundo.", "Adiós amigos."],
                                ["Hello world.", "Goodbye friends."])
    with RealtimeServer(translator=engine) as srv:
        args = argparse.Namespace(url=srv.url, local=False, model=None, language=None,
                                  wav=str(wav), autostart=True, to="es")
        app = example.CaptionsApp(root, args)
        _run_until(root, lambda: len(app.finals) >= 2 and not app.busy)
        assert str(app.translated) in app.panes.panes()  # the translation pane is shown
        app.stop()
        _run_until(root, lambda: app.tr is None and not app.busy)
    assert app.translated.get("1.0", "end").split("\n")[:2] == ["Hola mundo.", "Adiós amigos."]
    assert app.text.get("1.0", "end").split("\n")[:2] == ["Hello world.", "Goodbye friends."]
    srt = example.rs.captions.render(app.finals, "srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and "Adiós amigos." in srt
    assert app.status.cget("text") == "stopped"
