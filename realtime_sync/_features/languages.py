"""Language codes the transcription models know (Whisper's list: ISO-639-1, plus ``haw`` and
``yue``), with English names, for checking ``--language`` and hinting at the right code."""

from __future__ import annotations

import difflib
from typing import Dict, Optional

__all__ = ["LANGUAGES", "normalize_language"]

LANGUAGES: Dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "ba": "Bashkir", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bo": "Tibetan",
    "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fo": "Faroese",
    "fr": "French", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa", "haw": "Hawaiian",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole",
    "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian", "is": "Icelandic",
    "it": "Italian", "ja": "Japanese", "jw": "Javanese", "ka": "Georgian", "kk": "Kazakh",
    "km": "Khmer", "kn": "Kannada", "ko": "Korean", "la": "Latin", "lb": "Luxembourgish",
    "ln": "Lingala", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian", "mg": "Malagasy",
    "mi": "Maori", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi",
    "ms": "Malay", "mt": "Maltese", "my": "Burmese", "ne": "Nepali", "nl": "Dutch",
    "nn": "Norwegian Nynorsk", "no": "Norwegian", "oc": "Occitan", "pa": "Punjabi",
    "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "sa": "Sanskrit", "sd": "Sindhi", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian",
    "sn": "Shona", "so": "Somali", "sq": "Albanian", "sr": "Serbian", "su": "Sundanese",
    "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "tg": "Tajik",
    "th": "Thai", "tk": "Turkmen", "tl": "Tagalog", "tr": "Turkish", "tt": "Tatar",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "yi": "Yiddish",
    "yo": "Yoruba", "yue": "Cantonese", "zh": "Chinese",
}
"""Code -> English name."""

_ALIASES = {"jv": "jw", "iw": "he", "in": "id", "nb": "no", "fil": "tl", "zh-cn": "zh",
            "zh-tw": "zh", "pt-br": "pt", "en-us": "en", "en-gb": "en"}


def normalize_language(value: str) -> str:
    """The known code for ``value`` (case and a region suffix such as ``en-US`` ignored).

    Raises:
        ValueError: not a known code; the message suggests one (``english`` -> ``en``).
    """
    text = value.strip()
    code = text.lower().replace("_", "-")
    code = _ALIASES.get(code, code)
    if code in LANGUAGES:
        return code
    base = code.split("-")[0]
    if base in LANGUAGES and "-" in code:
        return base
    raise ValueError(f"unknown language {value!r}: {_hint(text)}")


def _hint(text: str) -> str:
    by_name = {name.lower(): code for code, name in LANGUAGES.items()}
    lowered = text.lower()
    if lowered in by_name:
        return f"use the code {by_name[lowered]!r} for {LANGUAGES[by_name[lowered]]}"
    close = difflib.get_close_matches(lowered, list(by_name), n=1, cutoff=0.75)
    if close:
        code = by_name[close[0]]
        return f"did you mean {code!r} ({LANGUAGES[code]})?"
    return ("give an ISO-639-1 code such as 'en', 'de', 'fr' or 'es', or leave --language "
            "out to detect it")


def language_name(code: Optional[str]) -> Optional[str]:
    """The English name of a known code."""
    return LANGUAGES.get(code or "")
