"""Opening files and folders: :func:`open`, and the wrapper the start-up hook puts on pims.open.

Both decide with :func:`opens_as_sequence` (the only place that does) whether a path names many
TIFF files, read as one :class:`~pims_videoutils.TiffSequenceND`: a folder holding TIFF files
(or position sub-folders that do), an NDTiff dataset's ``NDTiff.index``, or a glob pattern
matching several files that all end in ``.tif``/``.tiff``. Any other file is itself (one image
of a Micro-Manager "separate image files" acquisition too, as in pims: dask-image's ``imread``
of a glob reads each file through ``pims.open`` as that file's frame). pims's own ``open``
hands every multi-file glob to ``pims.ImageSequence`` and fails on folders.

* :func:`open` is :func:`pims.open` that also takes paths and, when every candidate reader
  fails, says why each one failed.
* :func:`wrap_pims_open` replaces ``pims.open`` by a thin wrapper (run by the start-up hook
  ``_pims_videoutils_autoload`` right after pims is imported). At its first call the wrapper
  imports the readers registered in the ``pims.readers`` entry-point group; it sends what
  :func:`opens_as_sequence` accepts to ``TiffSequenceND`` and everything else, unchanged, to
  pims's own ``open``.
"""

from __future__ import annotations

import functools
import glob
import os
import stat
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ._errors import ReaderFallbackWarning, StackNotFoundError, StackReadError
from ._filenames import TIFF_SUFFIXES
from ._registration import ensure_readers_loaded
from ._wording import counted

__all__ = ["folder_contents", "open", "opens_as_sequence", "wrap_pims_open"]



def opens_as_sequence(path: str) -> bool:
    """Tell whether ``path`` names many TIFF files, to be read as one ``TiffSequenceND``.

    Parameters
    ----------
    path : str
        What was given to ``open``: a file, a folder or a glob pattern.

    Returns
    -------
    bool
        True for a folder holding at least one ``.tif``/``.tiff`` file (hidden files aside)
        or, if none, sub-folders that do (one per position); for the ``NDTiff.index`` file of
        an NDTiff dataset; and for a glob pattern that matches several files, all ending in
        ``.tif``/``.tiff`` (any case). False otherwise, e.g. for another file (also one image
        of a Micro-Manager "separate image files" acquisition, which
        :class:`~pims_videoutils.TiffSequenceND` opens as its acquisition), a pattern with one
        match, or a pattern that also matches other files (such as PNG images).
    """
    # (imported here: the readers are loaded only at the first call of ``open``)
    from .sequence import NDTIFF_INDEX, folder_holds_tiff, glob_files, position_folders

    if os.path.isdir(path):
        return folder_holds_tiff(path) or bool(position_folders(path))
    if os.path.exists(path):  # one file, even if its name holds glob characters
        return os.path.basename(path) == NDTIFF_INDEX and os.path.isfile(path)

    matches = glob_files(path)
    return len(matches) > 1 and all(m.lower().endswith(TIFF_SUFFIXES) for m in matches)


def _is_list_of_tiffs(sequence: Any) -> bool:
    """Tell whether ``sequence`` is a non-empty list or tuple of paths of ``.tif(f)`` files."""
    return (
        isinstance(sequence, (list, tuple)) and len(sequence) > 0
        and all(isinstance(name, (str, os.PathLike)) for name in sequence)
        and all(os.fspath(name).lower().endswith(TIFF_SUFFIXES) for name in sequence)
    )


def _open_sequence(path: str | list[str], kwargs: dict[str, Any]) -> Any:
    """Open what :func:`opens_as_sequence` accepted, or a list of TIFF files."""
    from .sequence import TiffSequenceND

    return TiffSequenceND(path, **kwargs)


def wrap_pims_open(pims_module: ModuleType) -> None:
    """Replace ``pims.open`` (and ``pims.api.open``) by a wrapper that knows our readers.

    The wrapper keeps the name, signature and docstring of pims's ``open`` (through
    :func:`functools.wraps`; the original is its ``__wrapped__``). At its first call (once per
    process, thread-safe) it imports every reader registered in the ``pims.readers``
    entry-point group. Then what :func:`opens_as_sequence` accepts (a folder holding TIFF
    files, an ``NDTiff.index``, a glob matching several TIFF files...) opens as
    :class:`~pims_videoutils.TiffSequenceND` (unless the glob's file names
    hold no common numbering and no option of ``TiffSequenceND`` was given: then pims's
    ``ImageSequence`` reads them, as it did, after a
    :class:`~pims_videoutils.ReaderFallbackWarning`), and so does a list of TIFF files
    (which pims's own ``open`` cannot take); every other argument goes to
    pims's ``open`` (a :class:`pathlib.Path` as its string, which pims needs, a leading ``~``
    as the home folder, and a glob with one match as that file or folder, as in :func:`open`),
    which chooses among the (now imported) readers as usual.

    Parameters
    ----------
    pims_module : module
        The ``pims`` package, right after its module has executed.

    Warns
    -----
    PluginLoadWarning
        At the wrapper's first call, for each registered reader that cannot be loaded.
    ReaderFallbackWarning
        When pims's readers open a TIFF file, or a glob of them, that ours refused: why.
    """
    original = pims_module.open

    @functools.wraps(original)
    def open(sequence, **kwargs):
        ensure_readers_loaded()
        path = os.fspath(sequence) if isinstance(sequence, os.PathLike) else sequence
        if _is_list_of_tiffs(path):  # (pims's own open fails on a list: glob.glob of it)
            return _open_sequence([os.path.expanduser(os.fspath(name)) for name in path], kwargs)
        if not isinstance(path, str):  # not a path: pims's business
            return original(path, **kwargs)
        path = os.path.expanduser(str(path))  # str: numpy.str_ (dask-image) lists as bytes
        if not os.path.exists(path):
            matches = glob.glob(path)
            if len(matches) == 1:  # pims would pass the pattern itself to each reader
                path = matches[0]
        if opens_as_sequence(path):
            try:
                return _open_sequence(path, kwargs)
            except StackReadError as exc:
                if os.path.exists(path) or not _names_cannot_be_arranged(path, kwargs):
                    raise
                from .sequence import TiffSequenceND

                # TIFF files not named as one numbering: pims's ImageSequence, as without us
                reader = original(path, **kwargs)
                _warn_fallback(path, reader, {TiffSequenceND: f"{type(exc).__name__}: {exc}"})
                return reader
        if path.lower().endswith(TIFF_SUFFIXES):  # (pims's TIFF readers would wait on a FIFO)
            _refuse_special_file(path)
        reader = original(path, **kwargs)  # (pims's open fails on pathlib.Path)
        if _fell_back(path, reader):  # ours refused the file: say why (pims keeps no reason)
            _warn_fallback(path, reader, _our_refusals(path, kwargs))
        return reader

    open.__doc__ = (original.__doc__ or "") + (
        "\n    Wrapped by pims-videoutils: registered readers (entry-point group pims.readers)"
        "\n    are imported at the first call; a folder of TIFF files (or of position folders),"
        "\n    an NDTiff.index, a glob matching"
        "\n    several TIFF files named as one numbering, or a list of TIFF files opens as"
        "\n    pims_videoutils.TiffSequenceND. Opt out with"
        "\n    the environment variable PIMS_VIDEOUTILS_NO_AUTOLOAD=1.\n"
    )
    api = getattr(pims_module, "api", None)  # (pims 0.7 defines open in pims.api)
    if getattr(api, "open", None) is original:
        api.open = open
    pims_module.open = open


def _names_cannot_be_arranged(pattern: str, kwargs: dict[str, Any]) -> bool:
    """Tell whether the files a glob matches have names that no grid of coordinates holds.

    Such as ``control.tif``, ``treated.tif``, or ``*/frame.tif`` in several folders; not a
    gap in a numbering (pims's ``ImageSequence`` would hide it). False as well when
    ``kwargs`` hold an option of ``TiffSequenceND``: the caller asked for ours.
    """
    import inspect

    from ._filenames import FileNameError, arrange_files
    from .sequence import TiffSequenceND, glob_files

    if not set(kwargs).isdisjoint(inspect.signature(TiffSequenceND).parameters):
        return False
    try:
        arrange_files(glob_files(pattern), fill_missing=True)
    except FileNameError:
        return True
    return False


def folder_contents(folder: str) -> str:
    """Describe what ``folder`` holds: its files counted by extension, and its sub-folders.

    Such as ``'3 .png files, 1 .txt file and 2 sub-folders'``, or ``'nothing'``; the six most
    frequent extensions, then a count of the other files, and of the hidden entries (which
    are not read).
    """
    extensions: dict[str, int] = {}
    folders = hidden = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                hidden += 1
                continue
            if entry.is_dir():
                folders += 1
            else:
                extension = os.path.splitext(entry.name)[1].lower() or "extensionless"
                extensions[extension] = extensions.get(extension, 0) + 1
    ranked = sorted(extensions.items(), key=lambda item: (-item[1], item[0]))
    parts = [counted(n, f"{extension} file") for extension, n in ranked[:6]]
    others = sum(n for _, n in ranked[6:])
    if others:
        parts.append(counted(others, "other file"))
    if folders:
        parts.append(counted(folders, "sub-folder"))
    if hidden:
        parts.append(f"{counted(hidden, 'hidden entry', 'hidden entries')} (not read)")
    if not parts:
        return "nothing"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _refuse_special_file(path: str) -> None:
    """Raise StackReadError if ``path`` exists but is neither a regular file nor a folder.

    Opening a FIFO waits for a writer: every reader tried would hang.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing (or an impossible name): left to the readers
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise StackReadError(path, "is not a regular file (a FIFO or a device); pims "
                             "readers need a file they can seek in")


def _fell_back(path: str, reader: Any) -> bool:
    """Tell whether a TIFF file went to a reader ranked below ours (so ours refused it)."""
    from ._planes import PlanesND
    from .readers import TiffStackND

    return (path.lower().endswith(TIFF_SUFFIXES) and not isinstance(reader, PlanesND)
            and getattr(type(reader), "class_priority", 10) < TiffStackND.class_priority)


def _our_refusals(path: str, kwargs: dict[str, Any]) -> dict[type, str]:
    """Why each of our readers refuses ``path``: its exception as text, by reader class."""
    from .readers import TiffStackND
    from .sequence import TiffSequenceND

    failures = {}
    for reader in (TiffStackND, TiffSequenceND):
        try:
            reader(path, **kwargs).close()
        except Exception as exc:  # any reason ours gave
            failures[reader] = f"{type(exc).__name__}: {exc}"
    return failures


def _warn_fallback(path: str, reader: Any, failures: dict[type, str]) -> None:
    """Warn that ``reader`` (not ours) opened the TIFF file ``path``, and why ours did not.

    ``failures`` holds each refusing reader's exception as text; ours are named in the
    warning, each distinct reason once (a file of a dataset is refused by ``TiffStackND``,
    which leaves it to ``TiffSequenceND``: the reason that one gives is the one that counts).
    Nothing is said when none of ours refused. Where warnings are errors, ``reader`` is
    closed before the error leaves: the caller never gets it.
    """
    from .readers import TiffStackND
    from .sequence import TiffSequenceND

    reasons: dict[str, str] = {}  # reason -> first reader that gave it
    for cls in (TiffStackND, TiffSequenceND):
        if cls in failures:
            reasons.setdefault(failures[cls], cls.__name__)
    if not reasons:
        return
    (first, first_name), *others = reasons.items()
    refusals = f"{first_name} could not read it ({first})" + "".join(
        f", nor could {name} ({reason})" for reason, name in others
    )
    try:
        warnings.warn(
            f"{path}: pims-videoutils' {refusals}; {type(reader).__name__} opened it instead",
            ReaderFallbackWarning,
            stacklevel=3,
        )
    except ReaderFallbackWarning:
        reader.close()
        raise


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


def open(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], **kwargs: Any) -> Any:
    """Open an image file with the best pims reader, like :func:`pims.open`.

    Differences from :func:`pims.open`: ``path`` may be a :class:`pathlib.Path` (or any
    ``os.PathLike``), and a leading ``~`` is the home folder for every reader; the readers
    registered in the ``pims.readers`` entry-point group and the readers of pims-videoutils
    are always candidates; a missing file raises
    :class:`~pims_videoutils.StackNotFoundError`; and when every candidate fails, the error
    lists each reader with the exception it raised (pims only says that all of them failed).
    A folder holding TIFF files (or position sub-folders that do), an NDTiff dataset's
    ``NDTiff.index``, or a glob pattern matching several files that are all TIFF files,
    opens as one :class:`~pims_videoutils.TiffSequenceND` (see :func:`opens_as_sequence`),
    and so does a list of TIFF files. Any other path that does not exist is read as a glob
    pattern: one match is opened (a folder of TIFF files as a ``TiffSequenceND``), several
    are handed to :func:`pims.open` (which returns a ``pims.ImageSequence``).

    Parameters
    ----------
    path : str, os.PathLike or list of them
        The file to open, a folder of TIFF files, a glob pattern, or a list of TIFF files.
    **kwargs
        Passed to the reader's constructor (to each candidate in turn).

    Returns
    -------
    pims.FramesSequence
        The reader of highest ``class_priority`` that accepted the file, or a
        ``TiffSequenceND`` for what :func:`opens_as_sequence` accepts.

    Raises
    ------
    TypeError
        If ``path`` is neither a string, ``os.PathLike[str]`` nor a list of TIFF files.
    StackNotFoundError
        If nothing exists at ``path`` and the pattern matches no file.
    StackReadError
        If ``path`` is a folder without TIFF files, is not a regular file (a FIFO, a device)
        or has no extension, if no reader handles its extension, or if every candidate
        reader raised (the message lists each one and its error; the highest-priority
        reader's exception is the ``__cause__``); for a folder or glob of TIFF files, as
        raised by ``TiffSequenceND`` (e.g. file names that cannot be arranged, or a gap in
        their numbering).
    """
    from . import readers, sequence  # noqa: F401  (ours are candidates, installed or not)

    ensure_readers_loaded()
    if _is_list_of_tiffs(path):
        return _open_sequence([os.path.expanduser(os.fspath(name)) for name in path], kwargs)
    target = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(target, str):
        raise TypeError(f"path must be a str or os.PathLike[str] (or a list of TIFF files), "
                        f"not {type(path).__name__}")
    target = os.path.expanduser(str(target))  # str: numpy.str_'s folder would list as bytes
    if opens_as_sequence(target):
        return _open_sequence(target, kwargs)
    if not os.path.exists(target):
        matches = glob.glob(target)
        if len(matches) > 1:
            import pims

            return pims.open(target, **kwargs)
        if not matches:
            raise StackNotFoundError(target, "no such file")
        target = matches[0]
        if opens_as_sequence(target):  # the pattern named a folder of TIFF files
            return _open_sequence(target, kwargs)
    if os.path.isdir(target):
        raise StackReadError(target, "is a folder holding no .tif or .tiff file (nor do its "
                             f"sub-folders); it holds {folder_contents(target)}; open one of "
                             "its files, or a glob pattern matching them")
    _refuse_special_file(target)
    extension = os.path.splitext(target)[1].lower().lstrip(".")
    if not extension:
        raise StackReadError(
            target, "has no file extension, so no reader can be chosen; use a reader class"
        )
    candidates = _candidates(extension)
    if not candidates:
        raise StackReadError(target, f"no installed pims reader handles '.{extension}' files")
    failures: dict[type, str] = {}
    first_error: Exception | None = None
    for reader in candidates:
        try:
            opened = reader(target, **kwargs)
        except Exception as exc:  # like pims.open: try the next reader, but keep the reason
            # Keep text and only the first exception: tracebacks may hold a failed reader's file.
            failures[reader] = f"{type(exc).__name__}: {exc}"
            first_error = first_error or exc
            continue
        if _fell_back(target, opened):
            _warn_fallback(target, opened, failures)
        return opened
    reason = f"none of the {len(failures)} candidate readers could open it:\n" + "\n".join(
        f"  - {reader.__module__}.{reader.__qualname__}: {text}"
        for reader, text in failures.items()
    )
    raise StackReadError(target, reason) from first_error
