"""Live captions in Tk: rs.gui.tk(root) runs every callback on the Tk thread.

python examples/gui_marshal_demo.py [ws://127.0.0.1:8765/v1/realtime]  (default: OpenAI)"""
from __future__ import annotations

import signal
import sys
import tkinter

import realtime_sync as rs

url = sys.argv[1] if len(sys.argv) > 1 else None  # e.g. from `realtime-sync serve --local`
root = tkinter.Tk()
finals = tkinter.Text(root, width=80, height=16)
partial = tkinter.Label(root, fg="grey", anchor="w")
finals.pack(fill="both", expand=True)
partial.pack(fill="x")
tr = rs.Transcriber(url=url, api_key="sk-local" if url else None, marshal=rs.gui.tk(root),
    on_partial=lambda seg: partial.config(text=seg.text),  # on the Tk thread: touch widgets
    on_final=lambda seg: (partial.config(text=""), finals.insert("end", seg.text + "\n")))
tr.start()  # blocking once at start-up, before mainloop, is fine
tr.listen()  # the microphone streams on its own thread



def quit_app(*_: object) -> None:
    tr.close()
    root.destroy()


def tick() -> None:
    root.after(200, tick)


root.protocol("WM_DELETE_WINDOW", quit_app)
# Ctrl-C: Python runs signal handlers only between its own bytecodes, never inside Tk's C
# mainloop; the 200 ms tick lets the handler run, and it asks Tk to quit on the Tk thread
signal.signal(signal.SIGINT, lambda *_: root.after_idle(quit_app))
tick()
print("listening… close the window or press Ctrl-C to stop", file=sys.stderr, flush=True)
root.mainloop()
print("stopped", file=sys.stderr)
