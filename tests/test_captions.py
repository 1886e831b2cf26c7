"""Caption writers: SRT, WebVTT, JSONL and text, written live cue by cue."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from realtime_sync.captions import open_writer, render
from realtime_sync.transcription import Segment


def segs():
    return [
        Segment("item_1", "Hello world.", start_ms=300, end_ms=1500, final=True),
        Segment("item_2", "", error={"message": "failed"}, start_ms=1500, end_ms=2000,
                final=True),
        Segment("item_3", "A second, much longer sentence that needs wrapping onto two lines.",
                start_ms=3_723_456, end_ms=3_725_000, final=True),
    ]


def test_srt_numbers_cues_and_uses_comma_milliseconds():
    text = render(segs(), "srt")
    blocks = text.strip().split("\n\n")
    assert blocks[0].splitlines() == ["1", "00:00:00,300 --> 00:00:01,500", "Hello world."]
    second = blocks[1].splitlines()
    assert second[0] == "2" and second[1] == "01:02:03,456 --> 01:02:05,000"
    assert all(len(line) <= 42 for line in second[2:]) and len(second) == 4
    assert len(blocks) == 2  # the failed, empty turn has no cue


def test_vtt_has_a_header_and_dot_milliseconds():
    text = render(segs(), "vtt")
    assert text.startswith("WEBVTT\n\n")
    assert "00:00:00.300 --> 00:00:01.500" in text


def test_jsonl_keeps_every_turn_including_failures():
    lines = [json.loads(x) for x in render(segs(), "jsonl").splitlines()]
    assert [x["item_id"] for x in lines] == ["item_1", "item_2", "item_3"]
    assert lines[1]["error"] == {"message": "failed"} and lines[1]["text"] == ""
    assert lines[0]["start_ms"] == 300 and lines[0]["end_ms"] == 1500


def test_segments_without_times_get_consecutive_estimated_cues():
    text = render([Segment("a", "one two"), Segment("b", "three")], "srt")
    assert "00:00:00,000 --> 00:00:00,800" in text
    assert "00:00:00,800 --> 00:00:01,600" in text


def test_format_is_guessed_from_the_extension_and_unknown_ones_are_refused(tmp_path):
    for ext, first in ((".srt", "1"), (".vtt", "WEBVTT"), (".txt", "Hello world.")):
        path = tmp_path / f"out{ext}"
        with open_writer(path) as w:
            w.write(segs()[0])
        assert path.read_text().splitlines()[0] == first
    with pytest.raises(ValueError, match="unknown caption format"):
        open_writer(tmp_path / "x.doc")


def test_live_writing_flushes_each_cue_so_another_process_can_tail_it(tmp_path):
    path = tmp_path / "live.srt"
    writer = open_writer(path)
    writer.write(segs()[0])
    # another process reads the file while the writer is still open
    out = subprocess.run([sys.executable, "-c", f"print(open({str(path)!r}).read())"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "Hello world." in out
    time.sleep(0.01)
    writer.write(segs()[2])
    writer.close()
    assert path.read_text().count(" --> ") == 2
    writer.close()  # idempotent


def test_cues_never_overlap_even_when_vad_padding_reaches_back():
    padded = [Segment("a", "one", start_ms=0, end_ms=992),
              Segment("b", "two", start_ms=788, end_ms=3776)]  # prefix padding overlaps
    text = render(padded, "srt")
    assert "00:00:00,992 --> 00:00:03,776" in text
