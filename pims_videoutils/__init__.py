"""pims-videoutils: lazy N-D readers for microscopy TIFF stacks and video export for PIMS.

The public names are imported on first use, so ``import pims_videoutils`` stays cheap (it does
not import numpy or pims).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._errors import (
    ExportArgumentError,
    FFmpegError,
    IncompleteDatasetWarning,
    PimsVideoutilsError,
    PluginLoadWarning,
    ReaderClosedError,
    ReaderFallbackWarning,
    StackNotFoundError,
    StackReadError,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._open import open
    from .export import VideoResult, to_video
    from .readers import TiffStackND
    from .sample import write_sample
    from .sequence import TiffSequenceND

_LAZY = {
    "TiffSequenceND": "sequence",
    "TiffStackND": "readers",
    "VideoResult": "export",
    "open": "_open",
    "to_video": "export",
    "write_sample": "sample",
}

__all__ = [
    "ExportArgumentError",
    "FFmpegError",
    "IncompleteDatasetWarning",
    "PimsVideoutilsError",
    "PluginLoadWarning",
    "ReaderClosedError",
    "ReaderFallbackWarning",
    "StackNotFoundError",
    "StackReadError",
    "TiffSequenceND",
    "TiffStackND",
    "VideoResult",
    "__version__",
    "open",
    "to_video",
    "write_sample",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
