"""Caption writers: SRT, WebVTT, JSONL and text, written live cue by cue."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    text = render([Segment("a", "one two"), Segment("b", "three")], "srt", min_cue_ms=0)
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
    text = render(padded, "srt", min_cue_ms=0)
    assert "00:00:00,992 --> 00:00:03,776" in text


def test_long_turns_become_several_cues_of_two_lines_of_42_characters_at_most():
    long = ("So the first thing we need to talk about today is the quarterly budget which as "
            "everyone knows is overspent by a considerable margin in the department of "
            "extraordinarily-long-hyphenated-compound-words-that-never-end and more")
    for fmt in ("srt", "vtt"):
        text = render([Segment("a", long, start_ms=1000, end_ms=13000, final=True)], fmt)
        blocks = [b.splitlines() for b in text.strip().split("\n\n") if " --> " in b]
        assert len(blocks) >= 3
        cue_lines = [line for b in blocks for line in b[2:]]
        assert all(len(b[2:]) <= 2 for b in blocks)
        # never inside a word: the words of the cues are the words of the turn
        assert " ".join(cue_lines).split() == long.split()
        assert all(len(line) <= 42 for line in cue_lines
                   if " " in line)  # a single word longer than a line gets a line of its own
        starts = [b[1].split(" --> ") for b in blocks]
        assert starts[0][0].endswith("01,000" if fmt == "srt" else "01.000")
        assert starts[-1][1].endswith("13,000" if fmt == "srt" else "13.000")
        assert all(a[1] == b[0] for a, b in zip(starts, starts[1:]))  # back to back


def test_turns_without_words_get_no_cue_and_no_jsonl_line():
    segs = [Segment("a", "Hello.", final=True), Segment("b", "", final=True),
            Segment("c", " ... ", final=True), Segment("d", "World", final=True)]
    assert render(segs, "srt", min_cue_ms=0).count(" --> ") == 2
    assert [json.loads(x)["text"] for x in render(segs, "jsonl").splitlines()] == \
        ["Hello.", "World"]


# -- readable captions (issue 22, item 10) ------------------------------------------------------
def cues(text: str) -> list:
    """(start_ms, end_ms, text) of each SRT cue."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        a, b = lines[1].split(" --> ")
        ms = [int(t[0:2]) * 3_600_000 + int(t[3:5]) * 60_000 + int(t[6:8]) * 1000 + int(t[9:12])
              for t in (a, b)]
        out.append((ms[0], ms[1], "\n".join(lines[2:])))
    return out


def test_a_short_turn_merges_into_the_next_cue_when_it_follows_closely():
    turns = [Segment("a", "Right now.", start_ms=1000, end_ms=1320, final=True),
             Segment("b", "Let us begin.", start_ms=1500, end_ms=3000, final=True)]
    assert cues(render(turns, "srt")) == [(1000, 3000, "Right now. Let us begin.")]


def test_a_short_turn_alone_is_lengthened_to_the_minimum_and_cues_never_overlap():
    turns = [Segment("a", "Now.", start_ms=1000, end_ms=1320, final=True),
             Segment("b", "Much later, a sentence of its own.", start_ms=5000, end_ms=7000,
                     final=True),
             Segment("c", "Bye.", start_ms=9000, end_ms=9200, final=True)]
    out = cues(render(turns, "srt", min_cue_ms=1500))
    assert out == [(1000, 2500, "Now."), (5000, 7000, "Much later, a sentence of its own."),
                   (9000, 10500, "Bye.")]
    assert all(b[0] >= a[1] for a, b in zip(out, out[1:]))


def test_no_cue_is_shorter_than_the_minimum_on_a_long_run_of_turns():
    import random

    rng = random.Random(22)
    vocabulary = ["the", "pound", "key", "now", "please", "enter", "your", "account", "number",
                  "followed", "by"]
    turns, t = [], 0
    for i in range(200):
        words = [rng.choice(vocabulary) for _ in range(rng.choice([1, 1, 2, 5, 12, 30]))]
        duration = 250 * len(words) + rng.randrange(100)
        t += rng.randrange(0, 3000)
        turns.append(Segment(f"i{i}", " ".join(words) + ".", start_ms=t, end_ms=t + duration,
                             final=True))
        t += duration
    out = cues(render(turns, "srt"))
    assert min(end - start for start, end, _ in out) >= 1000
    assert all(b[0] >= a[1] for a, b in zip(out, out[1:]))
    said = " ".join(s.text for s in turns).split()
    assert " ".join(text for _, _, text in out).split() == said


def test_a_long_turn_breaks_at_sentence_ends_not_before_the_last_words():
    text = ("Please enter your account number followed by the pound key. "
            "Then say your name after the tone, and wait.")
    out = [c[2] for c in cues(render([Segment("a", text, start_ms=0, end_ms=8000,
                                              final=True)], "srt"))]
    assert out[0].replace("\n", " ").endswith("pound key.")
    assert all(c.replace("\n", " ").split()[-1].lower() not in ("the", "by") for c in out)
    for cue in out:  # no line ends with a word that leans on the next
        assert all(line.split()[-1].lower() not in ("the", "by", "a", "of")
                   for line in cue.splitlines())


def test_max_line_length_is_honoured():
    text = "A fairly long sentence, spoken at length, that must wrap onto short lines."
    out = cues(render([Segment("a", text, start_ms=0, end_ms=6000, final=True)], "srt",
                      max_line_length=20))
    lines = [line for _, _, cue in out for line in cue.splitlines()]
    assert all(len(line) <= 20 for line in lines) and len(lines) > 3
    assert " ".join(lines).split() == text.split()
    with pytest.raises(ValueError):
        open_writer(io.StringIO(), "srt", max_line_length=3)


# -- hostile text: captions stay valid for any transcript ------------------------------------

_TIMING = re.compile(r"^\d\d:\d\d:\d\d[,.]\d\d\d --> \d\d:\d\d:\d\d[,.]\d\d\d$")
_INJECTIONS = [
    "hello\n\n2\n00:00:01,000 --> 00:00:09,000\ninjected cue",  # a fake cue after a blank line
    "00:00:01,000 --> 00:00:02,000",                           # a payload that is a timing line
    "a ---> b --> c",                                         # arrows, including overlapping ones
    "nul\x00byte bell\x07 esc\x1b[31m del\x7f c1\x9b",         # control characters
    "i <3 you & <b>bold</b> &amp; &lt;",                       # markup and entities
    "line\u2028separator\u2029para\x85nel\r\ncrlf\x0bvt\x0cff",  # every kind of line break
    "lone \ud800 surrogate \udfff",                            # unencodable in UTF-8
]


def _blocks(text):
    """Cue blocks of an SRT/VTT file, checking the separators: one blank line, never two."""
    assert "\n\n\n" not in text and "\r" not in text
    return [b.split("\n") for b in text.rstrip("\n").split("\n\n")]


def _check_cues(text, fmt):
    """Every block is index, timing line, 1-2 non-empty payload lines without arrows or
    control characters; the file encodes as UTF-8. Returns the payload lines."""
    text.encode("utf-8")  # no lone surrogate reached the file
    blocks = _blocks(text)
    if fmt == "vtt":
        assert blocks[0] == ["WEBVTT"]
        blocks = blocks[1:]
    payload = []
    for n, block in enumerate(blocks, 1):
        assert block[0] == str(n) and _TIMING.match(block[1]), block
        assert 1 <= len(block[2:]) <= 2, block
        for line in block[2:]:
            assert line.strip() and "-->" not in line and not _TIMING.match(line), block
            assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in line), block
            if fmt == "vtt":
                assert "<" not in line and ">" not in line
                assert re.fullmatch(r"([^&]|&amp;|&lt;|&gt;)*", line), line
        payload += block[2:]
    return payload


def _unescape_vtt(line):
    return line.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _visible(text):
    """What a caption shows of ``text``: controls dropped, whitespace runs one space."""
    kept = "".join("\ufffd" if unicodedata.category(c) == "Cs" else c for c in text
                   if c.isspace() or unicodedata.category(c) != "Cc")
    return " ".join(kept.split())


def _hostile_segments(texts):
    return [Segment(f"item_{i}", t, start_ms=1000 * i, end_ms=1000 * i + 900, final=True)
            for i, t in enumerate(texts)]


def test_srt_and_vtt_stay_valid_for_injected_cues_controls_markup_and_surrogates():
    segments = _hostile_segments(_INJECTIONS)
    srt = _check_cues(render(segments, "srt"), "srt")
    assert " ".join(srt).split() == " ".join(
        _visible(t).replace("--->", "->").replace("-->", "->") for t in _INJECTIONS).split()
    vtt = _check_cues(render(segments, "vtt"), "vtt")
    # WebVTT loses nothing visible: <3 and <b> come back as text, &amp; stays &amp;
    assert " ".join(_unescape_vtt(x) for x in vtt).split() == \
        " ".join(_visible(t) for t in _INJECTIONS).split()
    assert "i &lt;3 you &amp; &lt;b&gt;bold&lt;/b&gt; &amp;amp; &amp;lt;" in vtt


def test_text_captions_are_one_line_per_turn_whatever_the_text():
    lines = render(_hostile_segments(_INJECTIONS), "text").encode("utf-8").decode()
    assert lines.split("\n")[:-1] == [_visible(t) for t in _INJECTIONS]


def test_jsonl_keeps_every_character_and_one_record_per_line(tmp_path):
    path = tmp_path / "hostile.jsonl"
    with open_writer(path) as out:
        out.write_all(_hostile_segments(_INJECTIONS))
    raw = path.read_bytes().decode("utf-8")  # strict: nothing unencodable was written
    assert len(raw.splitlines()) == len(_INJECTIONS)  # even for readers splitting on U+2028
    assert [json.loads(x)["text"] for x in raw.splitlines()] == [t.strip() for t in _INJECTIONS]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=())), min_size=1,
                max_size=4))
def test_any_text_gives_valid_captions_in_every_format(texts):
    segments = _hostile_segments(texts)
    spoken = [t for t in texts if any(c.isalnum() for c in _visible(t))]
    for fmt in ("srt", "vtt"):
        payload = _check_cues(render(segments, fmt), fmt) if spoken else []
        if fmt == "vtt":
            assert " ".join(_unescape_vtt(x) for x in payload).split() == \
                " ".join(_visible(t) for t in spoken).split()
    records = render(segments, "jsonl").splitlines()
    assert [json.loads(x)["text"] for x in records] == [t.strip() for t in spoken]


def test_turns_of_different_speakers_are_never_merged():
    from types import SimpleNamespace

    turns = [SimpleNamespace(text="Hello there", start_ms=0, end_ms=900, role="user"),
             SimpleNamespace(text="Hi!", start_ms=1200, end_ms=1800, role="assistant")]
    assert cues(render(turns, "srt")) == [(0, 1000, "Hello there"), (1200, 2200, "Hi!")]
