"""``open``: :func:`pims.open` that takes paths and says why every candidate reader failed."""

from __future__ import annotations

import glob
import os
from typing import Any

from ._errors import StackNotFoundError, StackReadError
from ._registration import ensure_readers_loaded

__all__ = ["open"]


def _reader_classes() -> set[type]:
    """Every reader class pims can see now: the imported subclasses of ``FramesSequence``."""
    from pims import FramesSequence

    found: set[type] = set()
    pending = [FramesSequence]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in found:
                found.add(subclass)
                pending.append(subclass)
    return found


def _candidates(extension: str) -> list[type]:
    """Readers that claim ``extension``, highest ``class_priority`` first, as pims orders them.

    Readers of equal priority are ordered by module and name, so the choice is reproducible
    (pims leaves it to set order).
    """
    eligible = [
        cls
        for cls in _reader_classes()
        if extension in {ext.lower().lstrip(".") for ext in cls.class_exts()}
    ]
    return sorted(
        eligible,
        key=lambda cls: (-getattr(cls, "class_priority", 10), cls.__module__, cls.__qualname__),
    )


def open(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """Open an image file with the best pims reader, like :func:`pims.open`.

    Differences from :func:`pims.open`: ``path`` may be a :class:`pathlib.Path` (or any
    ``os.PathLike``); the readers registered in the ``pims.readers`` entry-point group and the
    readers of pims-videoutils are always candidates; a missing file raises
    :class:`~pims_videoutils.StackNotFoundError`; and when every candidate fails, the error
    lists each reader with the exception it raised (pims only says that all of them failed).
    A path that does not exist is read as a glob pattern: one match is opened, several are
    handed to :func:`pims.open` unchanged (it returns a ``pims.ImageSequence``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to open, or a glob pattern.
    **kwargs
        Passed to the reader's constructor (to each candidate in turn).

    Returns
    -------
    pims.FramesSequence
        The reader of highest ``class_priority`` that accepted the file.

    Raises
    ------
    TypeError
        If ``path`` is neither a string nor ``os.PathLike``.
    StackNotFoundError
        If nothing exists at ``path`` and the pattern matches no file.
    StackReadError
        If ``path`` is a folder or has no extension, if no reader handles its extension, or
        if every candidate reader raised (the message lists each one and its error; the
        highest-priority reader's exception is the ``__cause__``).
    """
    from . import readers  # noqa: F401  (our own readers are candidates, installed or not)

    ensure_readers_loaded()
    target = os.fspath(path)
    if not os.path.exists(target):
        matches = glob.glob(target)
        if len(matches) > 1:
            import pims

            return pims.open(target, **kwargs)
        if not matches:
            raise StackNotFoundError(target, "no such file")
        target = matches[0]
    if os.path.isdir(target):
        raise StackReadError(
            target, "is a folder; pass a file, or a glob pattern such as 'folder/*.tif'"
        )
    extension = os.path.splitext(target)[1].lower().lstrip(".")
    if not extension:
        raise StackReadError(
            target, "has no file extension, so no reader can be chosen; use a reader class"
        )
    candidates = _candidates(extension)
    if not candidates:
        raise StackReadError(target, f"no installed pims reader handles '.{extension}' files")
    reasons: list[str] = []
    first_error: Exception | None = None
    for reader in candidates:
        try:
            return reader(target, **kwargs)
        except Exception as exc:  # like pims.open: try the next reader, but keep the reason
            # Keep text and only the first exception: tracebacks may hold a failed reader's file.
            reasons.append(
                f"{reader.__module__}.{reader.__qualname__}: {type(exc).__name__}: {exc}"
            )
            first_error = first_error or exc
    reason = f"none of the {len(reasons)} candidate readers could open it:\n" + "\n".join(
        f"  - {line}" for line in reasons
    )
    raise StackReadError(target, reason) from first_error
