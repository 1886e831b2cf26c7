"""Fetch the real-speech benchmark set: Asterisk's recorded prompts from Debian, with texts.

    python benchmarks/fetch_speech.py [--dir benchmarks/.cache/speech] [--seconds 150]

Debian's ``asterisk-core-sounds-{en,es,fr,it,ru}-wav`` packages hold studio recordings of
human voice talent (US English, Mexican Spanish, Canadian French, Italian, Russian) reading
telephone-system prompts, and ``asterisk-core-sounds-{lang}`` ships the text of every prompt
(``core-sounds-{lang}.txt``). Licence: CC-BY-SA-3.0 (Digium; see the packages' copyright
files). This script downloads the packages with ``apt-get download`` (no root needed, nothing
installed), extracts them with ``dpkg-deb``, picks prompts of four words or more whose text is
speech (not ``[tone]`` descriptions), in name order, until ``--seconds`` of speech per
language, and joins them into WAV files of about a minute (24 kHz mono PCM16, 0.8 s of silence
between prompts). ``manifest.json`` lists every file's language and segments
(start/end seconds, reference text). Re-running it gives the same set.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "benchmarks" / ".cache" / "speech"
VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June",
          "it": "it_IT_m_Carlo", "ru": "ru_RU_f_IvrvoiceRU"}
VERSION = "1.6.1-1"
RATE = 24000
GAP_S = 0.8
FILE_S = 60.0


def _texts(root: Path, lang: str) -> Dict[str, str]:
    path = root / "usr" / "share" / "doc" / f"asterisk-core-sounds-{lang}" / \
        f"core-sounds-{lang}.txt.gz"
    texts: Dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            text = text.strip()
            if name.strip() and text and "[" not in text and len(text.split()) >= 4:
                texts.setdefault(name.strip(), text)
    return texts


def _pcm(path: Path) -> bytes:
    return subprocess.run(["sox", str(path), "-t", "raw", "-r", str(RATE), "-c", "1", "-b", "16",
                           "-e", "signed-integer", "-"], check=True, capture_output=True).stdout


def main(argv: List[str] = sys.argv[1:]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--seconds", type=float, default=150.0,
                        help="seconds of speech per language")
    args = parser.parse_args(argv)
    out: Path = args.dir
    out.mkdir(parents=True, exist_ok=True)
    manifest: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        debs = Path(tmp)
        packages = [f"asterisk-core-sounds-{lang}{suffix}={VERSION}"
                    for lang in VOICES for suffix in ("", "-wav")]
        subprocess.run(["apt-get", "download", *packages], cwd=debs, check=True,
                       stdout=subprocess.DEVNULL)
        tree = debs / "x"
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        for lang, voice in VOICES.items():
            texts = _texts(tree, lang)
            sounds = tree / "usr" / "share" / "asterisk" / "sounds" / voice
            speech, part, chunk, segments = 0.0, 1, bytearray(), []

            def flush(lang: str = lang) -> None:
                nonlocal part, chunk, segments
                if not segments:
                    return
                name = f"{lang}_{part}.wav"
                with wave.open(str(out / name), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(RATE)
                    w.writeframes(bytes(chunk))
                manifest[name] = {"language": lang, "segments": segments}
                part, chunk, segments = part + 1, bytearray(), []

            gap = bytes(int(GAP_S * RATE) * 2)
            for name in sorted(texts):
                wav = sounds / f"{name}.wav"
                if not wav.is_file() or speech >= args.seconds:
                    continue
                pcm = _pcm(wav)
                if not chunk:
                    chunk += gap
                start = len(chunk) / (2 * RATE)
                chunk += pcm
                segments.append({"start": round(start, 3),
                                 "end": round(len(chunk) / (2 * RATE), 3),
                                 "text": re.sub(r"\s+", " ", texts[name])})
                chunk += gap
                speech += len(pcm) / (2 * RATE)
                if len(chunk) / (2 * RATE) >= FILE_S:
                    flush()
            flush()
            print(f"{lang}: {speech:.0f} s of speech in "
                  f"{sum(1 for m in manifest.values() if m['language'] == lang)} files")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False),
                                       encoding="utf-8")
    print(f"wrote {out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
