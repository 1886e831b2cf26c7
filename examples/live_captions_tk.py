"""Live captions in a Tkinter window: microphone in, grey partials, black finals, SRT out.

Choose a target language under "Translate" to get live translation instead: the source text
and the translated captions side by side (``rs.Translator``; offline: English only).

    python examples/live_captions_tk.py                 # OpenAI (needs OPENAI_API_KEY)
    python examples/live_captions_tk.py --local         # offline engine, no key, no network
    python examples/live_captions_tk.py --url ws://127.0.0.1:8765/v1/realtime
    python examples/live_captions_tk.py --file meeting.m4a --autostart   # any audio/video file
    python examples/live_captions_tk.py --to es         # translated captions beside the source

Every realtime_sync callback reaches the window through ``marshal=rs.gui.tk(root)``, so the
handlers below touch widgets directly. Slow work (connecting, closing) runs on a worker thread
and hands its result back through the same marshal; the Tk thread never blocks.
"""

from __future__ import annotations

import argparse
import array
import dataclasses
import functools
import math
import os
import sys
import threading
import tkinter
from tkinter import filedialog, messagebox, ttk
from typing import Any, Callable, Dict, List, Optional

import realtime_sync as rs
from realtime_sync import audio

OPENAI_MODELS = ("gpt-live-transcribe", "gpt-transcribe", "gpt-realtime-whisper")
LANGUAGES = ("auto", "en", "de", "fr", "es", "it", "pt", "nl", "ja", "zh")
TARGETS = ("off",) + LANGUAGES[1:]  # translation targets ("off": transcribe only)
MAX_LOG_LINES = 500
BYTES_PER_MS = 48  # 24 kHz mono PCM16


class LevelTap:
    """An audio source wrapper that remembers the peak level (dBFS) of the last chunk read.

    ``read`` runs on the ``realtime-sync-audio`` thread; ``level_db`` is read by the Tk thread.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.level_db = -90.0

    def read(self, frames: int) -> bytes:
        data = self.source.read(frames)
        samples = array.array("h", data[: len(data) // 2 * 2])
        if sys.byteorder == "big":
            samples.byteswap()
        peak = max(max(samples, default=0), -min(samples, default=0), 1)
        self.level_db = 20 * math.log10(peak / 32768)
        return data

    def __getattr__(self, name: str) -> Any:  # live, realtime, reopen, close, ...
        return getattr(self.source, name)


class CuePane:
    """A text widget showing translation cues: grey while a cue grows, black once final
    (Tk thread)."""

    def __init__(self, text: tkinter.Text) -> None:
        self.text = text
        text.tag_configure("partial", foreground="grey55")
        text.mark_set("partial_start", "end-1c")
        text.mark_gravity("partial_start", "left")

    def show(self, cue: Any) -> None:
        self.text.delete("partial_start", "end-1c")
        if cue.final:
            if cue.text.strip():
                self.text.insert("end-1c", cue.text.strip() + "\n")
            self.text.mark_set("partial_start", "end-1c")
        else:
            self.text.insert("end-1c", cue.text.strip(), "partial")
        self.text.see("end")

    def clear_partial(self) -> None:
        self.text.delete("partial_start", "end-1c")


class CaptionsApp:
    """The window. All methods run on the Tk thread unless their docstring says otherwise."""

    def __init__(self, root: tkinter.Tk, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        self.marshal = rs.gui.tk(root)
        self.tr: Any = None  # an rs.Transcriber, or an rs.Translator when translating
        self.tap: Optional[LevelTap] = None
        self.stream: Any = None  # the AudioStream handle
        self.server: Any = None  # the in-process local server (--local)
        self.closing = False  # set by quit(): a start still running closes what it opened
        self.finals: List[Any] = []  # segments of every run, times shifted to one timeline
        self.offset_ms = 0  # audio time of earlier runs
        self.partials: Dict[str, str] = {}
        self.busy = False
        self._build()
        self._meter()
        if args.autostart:
            root.after(100, self.start)

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        root = self.root
        root.title("realtime_sync live captions")
        bar = ttk.Frame(root, padding=4)
        bar.pack(fill="x")
        self.device = ttk.Combobox(bar, width=24, state="readonly", values=self._devices())
        self.device.current(0)
        models = ("local",) if self.args.local else OPENAI_MODELS
        self.model = ttk.Combobox(bar, width=20, values=models)
        self.model.set(self.args.model or models[0])
        self.language = ttk.Combobox(bar, width=6, values=LANGUAGES)
        self.language.set(self.args.language or "auto")
        self.target = ttk.Combobox(bar, width=5, state="readonly", values=TARGETS)
        self.target.set(getattr(self.args, "to", None) or "off")
        self.start_btn = ttk.Button(bar, text="Start", command=self.start)
        self.stop_btn = ttk.Button(bar, text="Stop", command=self.stop, state="disabled")
        save = ttk.Button(bar, text="Save as SRT…", command=self.save_srt)
        open_file = ttk.Button(bar, text="Open file…", command=self.open_file)
        self.level = tkinter.Canvas(bar, width=120, height=14, bg="#222", highlightthickness=0)
        for label, widget in (("Input", self.device), ("Model", self.model),
                              ("Language", self.language), ("Translate", self.target)):
            ttk.Label(bar, text=label).pack(side="left", padx=(6, 2))
            widget.pack(side="left")
        for button in (self.start_btn, self.stop_btn, open_file, save):
            button.pack(side="left", padx=2)
        self.level.pack(side="left", padx=6)

        panes = ttk.PanedWindow(root, orient="horizontal")
        panes.pack(fill="both", expand=True)
        self.text = tkinter.Text(panes, wrap="word", width=60, height=24, font=("TkTextFont", 12))
        self.text.tag_configure("partial", foreground="grey55")
        self.text.mark_set("partial_start", "end-1c")
        self.text.mark_gravity("partial_start", "left")
        self.log = tkinter.Text(panes, wrap="none", width=44, font=("TkFixedFont", 9),
                                foreground="#333", background="#f4f4f4")
        # translated captions, beside the source text while translating
        self.translated = tkinter.Text(panes, wrap="word", width=60, height=24,
                                       font=("TkTextFont", 12))
        self.source_pane = CuePane(self.text)
        self.translated_pane = CuePane(self.translated)
        self.panes = panes
        panes.add(self.text, weight=3)
        panes.add(self.log, weight=2)
        self.status = ttk.Label(root, anchor="w", padding=(4, 1))
        self.status.pack(fill="x")
        root.protocol("WM_DELETE_WINDOW", self.quit)

    def _devices(self) -> List[str]:
        if self.args.wav:
            return [f"file: {os.path.basename(self.args.wav)}"]
        names = ["default microphone"]
        try:
            names += [f"{d['index']}: {d['name']}" for d in audio.list_devices()
                      if d["max_input_channels"] > 0]
        except rs.AudioError as exc:
            self.root.after(0, self.log_line, f"audio: {exc}")
        return names

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.busy or self.tr is not None:
            return
        self.busy = True
        self.start_btn.configure(state="disabled")
        choice = self.device.get()
        device: Any = None if ":" not in choice else choice.split(":", 1)[0]
        device = int(device) if device is not None and device.isdigit() else None
        language = self.language.get().strip()
        model = self.model.get().strip() or rs.models.DEFAULT_TRANSCRIPTION_MODEL
        options: Dict[str, Any] = dict(model=model)
        if language not in ("", "auto"):
            # one language, or a list of one for the models that take a list
            if rs.models.takes_option(model, "language"):
                options["language"] = language
            else:
                options["languages"] = [language]
        target = self.target.get().strip()
        if target and target != "off":
            options = {"to": target}
            if str(self.translated) not in self.panes.panes():
                self.panes.insert(1, self.translated, weight=3)
        elif str(self.translated) in self.panes.panes():
            self.panes.forget(self.translated)
        self.set_status("connecting…")
        self.in_background(lambda: self._open(options, device), self._opened)

    def _open(self, options: Dict[str, Any], device: Optional[int]) -> Any:
        """Worker thread: (start the local server,) connect, start the audio stream."""
        url, key = self.args.url, None
        translating = "to" in options
        if self.args.local:
            if self.server is None:
                self.server = start_local_server()
            url, key = self.server.url, "sk-local"
            if not translating:
                options["model"] = "gpt-transcribe"  # the local engine ignores the name
                if "language" in options:  # gpt-transcribe takes a list
                    options["languages"] = [options.pop("language")]
        elif url:
            key = "sk-local"
        tr: Any
        if translating:
            # source text on the left, translated captions on the right
            tr = rs.Translator(url=url, api_key=key, marshal=self.marshal,
                               source_transcript=True, on_text=self.on_translated,
                               on_source_text=self.source_pane.show, **options)
        else:
            tr = rs.Transcriber(url=url, api_key=key, marshal=self.marshal,
                                on_partial=self.on_partial, on_final=self.on_final, **options)
        tr.on("*", self.on_event)  # before start(): nothing is missed; runs on the Tk thread
        tr.start()
        try:
            if self.args.wav:
                # WAV, MP3, M4A, FLAC, OGG/Opus, WebM, a video's audio track (PyAV decodes)
                source: Any = audio.FileSource(self.args.wav, realtime=True)
            else:
                source = audio.Microphone(device=device)
            self.tap = LevelTap(source)
            self.stream = tr.stream_source(self.tap)
        except BaseException:
            tr.close()
            raise
        return tr

    def _opened(self, tr: Any, error: Optional[BaseException]) -> None:
        self.busy = False
        if error is not None:
            self.start_btn.configure(state="normal")
            self.set_status(f"could not start: {error}")
            self.log_line(f"start failed: {type(error).__name__}: {error}")
            return
        self.tr = tr
        self.stop_btn.configure(state="normal")
        self.set_status("listening")

    def stop(self) -> None:
        tr, self.tr = self.tr, None
        if tr is None or self.busy:
            return
        self.busy = True
        self.stop_btn.configure(state="disabled")
        self.set_status("stopping…")
        stream, self.stream = self.stream, None
        self.in_background(lambda: self._close(tr, stream), self._closed)

    def _close(self, tr: Any, stream: Any) -> int:
        """Worker thread: stop the audio, let the last turn finish, close; returns audio ms."""
        if stream is not None:
            stream.stop(2)
        try:
            tr.finish(timeout=60 if self.args.wav else 5)  # a file: every turn gets its text
        except rs.RealtimeSyncError:  # best effort: closing is what matters
            pass
        tr.close()
        return stream.bytes_read // BYTES_PER_MS if stream is not None else 0

    def _closed(self, audio_ms: Optional[int], error: Optional[BaseException]) -> None:
        self.busy = False
        self.offset_ms += audio_ms or 0
        self.tap = None
        self.partials.clear()
        self._render_partials()
        self.translated_pane.clear_partial()
        self.start_btn.configure(state="normal")
        self.set_status("stopped" if error is None else f"stopped with an error: {error}")

    # -- realtime_sync callbacks: on the Tk thread thanks to the marshal ----------------------
    def on_partial(self, seg: Any) -> None:
        self.partials[seg.item_id] = seg.text
        self._render_partials()

    def on_final(self, seg: Any) -> None:
        self.partials.pop(seg.item_id, None)
        if seg.text.strip():
            shift = self.offset_ms
            self.finals.append(dataclasses.replace(
                seg,
                start_ms=None if seg.start_ms is None else seg.start_ms + shift,
                end_ms=None if seg.end_ms is None else seg.end_ms + shift))
            self.text.delete("partial_start", "end-1c")  # partials go after the finals
            self.text.insert("end-1c", seg.text.strip() + "\n")
            self.text.mark_set("partial_start", "end-1c")
        self._render_partials()

    def on_translated(self, cue: Any) -> None:
        """A translated cue grew or completed: shown on the right; finals go to the SRT."""
        self.translated_pane.show(cue)
        if cue.final and cue.text.strip():
            self.finals.append(dataclasses.replace(cue, start_ms=cue.start_ms + self.offset_ms,
                                                   end_ms=cue.end_ms + self.offset_ms))

    def on_event(self, ev: rs.Event) -> None:
        if ev.type.endswith(".delta"):
            return  # shown as grey partial text instead
        detail = ev.get("transcript") or ev.get("reason") or ev.get("item_id") or ""
        if ev.type == "error":
            detail = ev.get("error", {}).get("message", "")
        self.log_line(f"{ev.type}  {str(detail)[:40]}")

    # -- helpers ----------------------------------------------------------------------------------
    def _render_partials(self) -> None:
        self.text.delete("partial_start", "end-1c")
        text = " ".join(t for t in self.partials.values() if t)
        if text:
            self.text.insert("end-1c", text, "partial")
        self.text.see("end")

    def log_line(self, line: str) -> None:
        self.log.insert("end", line + "\n")
        if int(self.log.index("end-1c").split(".")[0]) > MAX_LOG_LINES:
            self.log.delete("1.0", "2.0")
        self.log.see("end")

    def set_status(self, text: str) -> None:
        self.status.configure(text=text)

    def _meter(self) -> None:
        """Redraw the level meter every 50 ms from the audio thread's last peak."""
        db = self.tap.level_db if self.tap is not None else -90.0
        width = int(120 * max(0.0, min(1.0, (db + 60) / 60)))
        colour = "#3c3" if db < -12 else "#ec3" if db < -3 else "#e33"
        self.level.delete("all")
        self.level.create_rectangle(0, 0, width, 14, fill=colour, width=0)
        if (self.args.wav and self.stream is not None and not self.busy
                and not self.stream.is_alive()):
            self.stop()  # the whole file was read: finish its last turn and stop
        self.root.after(50, self._meter)

    def in_background(self, work: Callable[[], Any],
                      done: Callable[[Any, Optional[BaseException]], None]) -> None:
        """Run ``work`` on a worker thread; ``done(result, error)`` then runs on the Tk thread."""
        def run() -> None:
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - reported in the window
                self.marshal(functools.partial(done, None, exc))
            else:
                if self.closing and isinstance(result, (rs.Transcriber, rs.Translator)):
                    result.close()  # the window closed while it was starting: nothing leaks
                    return
                self.marshal(functools.partial(done, result, None))

        threading.Thread(target=run, name="realtime-sync-example-worker", daemon=True).start()

    def open_file(self) -> None:
        """Transcribe a file (paced in real time) instead of the microphone."""
        path = filedialog.askopenfilename(filetypes=[
            ("Audio and video", "*.wav *.mp3 *.m4a *.aac *.flac *.ogg *.opus *.webm *.mp4 "
                                "*.mkv *.mov"),
            ("All files", "*")])
        if path:
            self.args.wav = path
            self.device.configure(values=self._devices())
            self.device.current(0)

    def save_srt(self) -> None:
        if not self.finals:
            messagebox.showinfo("Save as SRT", "Nothing transcribed yet.")
            return
        path = filedialog.asksaveasfilename(defaultextension=".srt",
                                            filetypes=[("SubRip captions", "*.srt")])
        if path:
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(rs.captions.render(self.finals, "srt"))
            self.set_status(f"saved {len(self.finals)} captions to {path}")

    def quit(self) -> None:
        """Close everything (blocking briefly is fine: the window is going away)."""
        self.closing = True
        tr, self.tr = self.tr, None
        if tr is not None:
            tr.close()
        if self.server is not None:
            self.server.stop()
        self.root.destroy()


def start_local_server() -> Any:
    """The local Realtime server with the offline engine (``pip install realtime-sync[local]``)."""
    from realtime_sync.server import RealtimeServer, local_engine, offline_translator

    recognizer, vad_factory = local_engine(None)
    recognizer.load()  # load the weights now, not on the first turn
    server = RealtimeServer(api_key=None, recognizer=recognizer, vad_factory=vad_factory,
                            translator=offline_translator(None))  # into English only
    server.start()
    return server


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="offline engine, no key needed")
    where.add_argument("--url", help="a Realtime server URL (e.g. `realtime-sync serve`)")
    parser.add_argument("--file", "--wav", dest="wav",
                        help="stream this audio or video file (paced in real time), not a mic")
    parser.add_argument("--model", help="transcription model (OpenAI)")
    parser.add_argument("--language", help="ISO-639-1 code, e.g. en")
    parser.add_argument("--to", choices=TARGETS[1:],
                        help="translate into this language (source and translation side by side)")
    parser.add_argument("--autostart", action="store_true", help="start listening at once")
    args = parser.parse_args(argv)
    if not (args.local or args.url or os.environ.get("OPENAI_API_KEY")):
        parser.error("set OPENAI_API_KEY, or use --local (offline) or --url")
    root = tkinter.Tk()
    CaptionsApp(root, args)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
