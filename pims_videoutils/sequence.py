"""One N-D reader over many TIFF files: numbered sequences and multi-file datasets.

:class:`TiffSequenceND` has two modes, chosen from the first file:

* Multi-file datasets (OME-XML referencing other files, also BinaryOnly OME-TIFFs whose XML is
  in a companion file, several OME positions of one shape, NDTiff, Micro-Manager stacks):
  tifffile indexes every plane once (:mod:`._multifile`); planes are then read with one
  ``preadv`` each (small planes of a forward pass: one per 256 KiB), or decoded page by page
  when compressed, from a bounded cache of open files.
* Numbered sequences: the files are arranged on ``p``, ``t``, ``z``, ``c`` axes read from their
  names (:mod:`._filenames`), and the axes inside each file come from
  :class:`~pims_videoutils.readers.TiffStackND`. Opening parses the first file only. Files of
  one plane are read with one ``preadv`` after verifying their structure against the first
  file's (:mod:`._fastplane`); other files are opened as ``TiffStackND`` on first use, checked
  against the first file's layout and kept in a bounded cache (least recently used closed
  first, never while another thread reads them).
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import json
import math
import os
import re
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from pims import Frame

from ._errors import ReaderClosedError, StackNotFoundError, StackReadError
from ._fastplane import PlaneTemplate
from ._filenames import (
    AXIS_ORDER,
    TIFF_SUFFIXES,
    FileNameError,
    absolute_path,
    arrange_files,
    is_micromanager_image_name,
    natural_sorted,
)
from ._fork import renew_locks_after_fork
from ._layout import pims_axes
from ._metadata import micromanager_summary_metadata
from ._multifile import (
    NDTIFF_INDEX,
    DatasetFile,
    PlaneTable,
    files_indexed_by,
    files_named_by,
    find_dataset,
    stack_positions,
)
from ._open import folder_contents
from ._planes import Allocate, PlanesND, c_order_strides, fill_value
from .readers import TiffStackND, integer_option

__all__ = ["TiffSequenceND"]

_GLOB_CHARS = re.compile(r"[*?\[]")
_DEFAULT_MAX_OPEN_FILES = 128
_OME_COMPANION = ".companion.ome"
_OME_SUFFIXES = (".ome.tif", ".ome.tiff")
#: Beside the images of a Micro-Manager "separate image files" acquisition (each position's).
_MM_METADATA = "metadata.txt"
#: The folder of a pycro-manager / Micro-Magellan NDTiff dataset's full-resolution images
#: (``Downsampled_x2``... beside it hold the levels of a pyramid).
_NDTIFF_FULL_RESOLUTION = "Full resolution"
#: The summary of a Micro-Manager ``metadata.txt`` is its first key, within this many bytes;
#: the first are read alone first (the file lists every image after it: megabytes)
_MM_SUMMARY_BYTES = 1 << 20
_MM_SUMMARY_FIRST_BYTES = 64 << 10
_MM_SUMMARY_KEY = re.compile(r'"Summary"\s*:\s*')
#: Kinds of single-plane first files whose siblings may be read through a PlaneTemplate
#: (their layout is the file's one IFD; OME or Micro-Manager files may describe more).
_TEMPLATE_KINDS = ("imagej", "uniform", "shaped")


def _file_names(folder: str) -> list[str]:
    """Names of the regular files (or links to them) in a folder (``""``: the current one)."""
    with os.scandir(folder or os.curdir) as entries:
        return [entry.name for entry in entries if entry.is_file()]


def _is_tiff_name(name: str) -> bool:
    return name.lower().endswith(TIFF_SUFFIXES) and not name.startswith(".")


def folder_holds_tiff(folder: str) -> bool:
    """Tell whether ``folder`` holds a (non-hidden) ``.tif``/``.tiff`` file; stops at the first."""
    with os.scandir(folder or os.curdir) as entries:
        return any(_is_tiff_name(entry.name) and entry.is_file() for entry in entries)


def position_folders(folder: str) -> list[str]:
    """List the sub-folders of ``folder`` that hold TIFF files: one per position, as paths.

    Where some hold a Micro-Manager ``metadata.txt``, only those (an acquisition's positions,
    not, say, an ``analysis`` folder beside them), unless their summary counts more positions:
    then every folder holding TIFF files if that is their number. Hidden folders are skipped.

    Raises
    ------
    StackReadError
        The summary counts more positions than folders hold a ``metadata.txt``, and the
        folders holding TIFF files are not that many either.
    """
    with os.scandir(folder or os.curdir) as entries:
        subfolders = [e.path for e in entries if not e.name.startswith(".") and e.is_dir()]
    holding = [sub for sub in subfolders if folder_holds_tiff(sub)]
    acquired = [sub for sub in holding if os.path.isfile(os.path.join(sub, _MM_METADATA))]
    if not acquired or len(acquired) == len(holding):
        return holding
    positions = (_micromanager_summary(acquired[0]) or {}).get("Positions")
    if not isinstance(positions, int) or positions <= len(acquired):
        return acquired
    if len(holding) == positions:  # a position's metadata.txt is missing
        return holding
    without = sorted(os.path.basename(sub) for sub in set(holding) - set(acquired))
    raise StackReadError(
        folder,
        f"the Micro-Manager acquisition has {positions} positions (metadata.txt of "
        f"{os.path.basename(acquired[0])}), but only {len(acquired)} of the "
        f"{len(holding)} sub-folders holding TIFF files hold a metadata.txt (not "
        f"{', '.join(without)}); open the position folders one by one",
    )


def micromanager_acquisition(path: str) -> str | None:
    """Return the folder of the Micro-Manager acquisition that ``path`` is an image of, or None.

    An image of a "separate image files" acquisition has a Micro-Manager image name and a
    ``metadata.txt`` beside it. The acquisition is that folder, or, when the summary at the
    start of the ``metadata.txt`` counts several positions, its parent (one sub-folder per
    position).
    """
    if not is_micromanager_image_name(path):
        return None
    folder = os.path.dirname(path) or os.curdir
    summary = _micromanager_summary(folder)
    if summary is None:
        return None
    positions = summary.get("Positions")
    if isinstance(positions, int) and positions > 1:
        return os.path.dirname(absolute_path(folder))
    return folder


def _acquisition_image(folder: str, subfolders: list[str]) -> str | None:
    """Return an image of the Micro-Manager acquisition whose folder ``folder`` is, or None.

    That is, a Micro-Manager image in the first of its ``subfolders`` (by name) holding a
    ``metadata.txt`` (a position) whose acquisition (:func:`micromanager_acquisition`) is
    ``folder``.
    """
    position = next(
        (sub for sub in sorted(subfolders) if os.path.isfile(os.path.join(sub, _MM_METADATA))),
        None)
    if position is None:
        return None
    image = next(
        (name for name in _tiff_files(position) if is_micromanager_image_name(name)), None)
    if image is None or micromanager_acquisition(image) != absolute_path(folder):
        return None
    return image


def _micromanager_summary(folder: str) -> dict[str, Any] | None:
    """Read the summary of the Micro-Manager ``metadata.txt`` in ``folder``.

    None without such a file; ``{}`` when its summary cannot be read. Only the start of the
    file is read (it lists every image after the summary): its first 64 KiB, and up to 1 MiB
    if the summary does not end within them.
    """
    try:
        with open(os.path.join(folder, _MM_METADATA), "rb") as metadata:
            head = metadata.read(_MM_SUMMARY_FIRST_BYTES)
            summary = _summary_at_start(head)
            if summary is None and len(head) == _MM_SUMMARY_FIRST_BYTES:  # (cut off?)
                head += metadata.read(_MM_SUMMARY_BYTES - len(head))
                summary = _summary_at_start(head)
    except OSError:
        return None
    return summary or {}


def _summary_at_start(head: bytes) -> dict[str, Any] | None:
    """Parse the summary in the first bytes of a ``metadata.txt`` (None: not found whole).

    ``{}`` when the summary is not a JSON object.
    """
    text = head.decode("utf-8", errors="replace")
    key = _MM_SUMMARY_KEY.search(text)
    if key is None:
        return None
    try:
        summary, _ = json.JSONDecoder().raw_decode(text, key.end())
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else {}


def glob_files(pattern: str) -> list[str]:
    """List the files that ``glob.glob(pattern)`` lists, without a ``stat`` per file if it can.

    With wildcards in the last path component only (the usual ``"folder/img_*.tif"``), the
    folder is listed once and its names matched as ``glob`` does (``fnmatch``; names starting
    with a dot only for a pattern starting with one).
    """
    folder, name_pattern = os.path.split(pattern)
    if _GLOB_CHARS.search(folder):
        return [name for name in glob.glob(pattern) if os.path.isfile(name)]
    try:
        names = fnmatch.filter(_file_names(folder), name_pattern)
    except OSError:  # no such folder, or not readable: glob lists nothing
        return []
    hidden = name_pattern.startswith(".")
    prefix = os.path.join(folder, "") if folder else ""
    return [prefix + name for name in names if hidden or not name.startswith(".")]


def _list_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """List the TIFF files named by a folder, a glob or a list (unsorted: the grid orders them).

    A folder without TIFF files gives those of its position sub-folders
    (:func:`position_folders`); a Micro-Manager acquisition's folder
    (:func:`_acquisition_image`), even with TIFF files of its own (a projection, say), the
    images of its acquisition only.
    An NDTiff dataset's folder (holding an ``NDTiff.index``, or a ``Full resolution``
    folder holding one, as pycro-manager and Micro-Magellan save them, pyramid levels
    ``Downsampled_x2``... beside it) or ``NDTiff.index`` gives
    the files the index locates planes in (:func:`files_indexed_by`; if it names none,
    those of the folder), an OME
    ``.companion.ome`` file the TIFF files it names, and one image of a Micro-Manager
    acquisition the images of its acquisition (:func:`micromanager_acquisition`).
    """
    if isinstance(source, (str, os.PathLike)):
        text = str(os.fspath(source))  # (a numpy.str_ folder would be listed as bytes)
        if os.path.isdir(text):
            for index in (os.path.join(text, NDTIFF_INDEX),
                          os.path.join(text, _NDTIFF_FULL_RESOLUTION, NDTIFF_INDEX)):
                if os.path.isfile(index) and (indexed := files_indexed_by(index)):
                    return indexed  # an NDTiff dataset's folder (or pycro-manager's above it)
            names, subfolders = _tiffs_and_folders(text)
            image = _acquisition_image(text, subfolders)
            if image is not None:  # a Micro-Manager acquisition: its images, as from one
                return _acquisition_images(image, absolute_path(text))
            names = names or [
                name for folder in position_folders(text) for name in _tiff_files(folder)
            ]
            if not names:
                raise StackNotFoundError(
                    text, "the folder holds no .tif or .tiff file (nor do its sub-folders); it "
                    f"holds {folder_contents(text)}")
            return names
        if os.path.basename(text) == NDTIFF_INDEX and os.path.isfile(text):
            return files_indexed_by(text) or _list_files(os.path.dirname(text) or os.curdir)
        if text.lower().endswith(_OME_COMPANION) and os.path.isfile(text):
            return files_named_by(text)
        if os.path.isfile(text):  # one file, even if its name holds glob characters
            acquisition = micromanager_acquisition(text)
            return [text] if acquisition is None else _acquisition_images(text, acquisition)
        if _GLOB_CHARS.search(text):
            names = glob_files(text)
            if not names:
                raise StackNotFoundError(text, "no file matches this pattern")
            return names
        raise StackNotFoundError(text, "no such file or folder")
    names = [os.fspath(name) for name in source]
    if not names:
        raise StackNotFoundError("[]", "the list of files is empty")
    for name in names:
        if not os.path.isfile(name):
            if os.path.isdir(name):
                raise StackReadError(
                    name, "a folder in the list of files; give the folder alone as the source")
            raise StackNotFoundError(name, "no such file")
    return names


def _acquisition_images(image: str, acquisition: str) -> list[str]:
    """List the Micro-Manager images of the acquisition ``image`` is one of.

    Those of its folder, or of every position folder (:func:`position_folders`) when the
    acquisition is their parent; other TIFF files beside them (a projection, say) are not
    images of the acquisition.
    """
    folder = os.path.dirname(image) or os.curdir
    folders = [folder] if acquisition == folder else position_folders(acquisition)
    return [
        name for where in folders for name in _tiff_files(where)
        if is_micromanager_image_name(name)
    ]


def _tiffs_and_folders(folder: str) -> tuple[list[str], list[str]]:
    """Paths of the TIFF files directly in ``folder``, and of its sub-folders (hidden aside)."""
    prefix = os.path.join(folder, "")
    tiffs, folders = [], []
    with os.scandir(folder or os.curdir) as entries:
        for entry in entries:
            if entry.is_file():
                if _is_tiff_name(entry.name):
                    tiffs.append(prefix + entry.name)
            elif not entry.name.startswith(".") and entry.is_dir():
                folders.append(prefix + entry.name)
    return tiffs, folders


def _tiff_files(folder: str) -> list[str]:
    """Paths of the TIFF files directly in ``folder``."""
    prefix = os.path.join(folder, "")
    return [prefix + name for name in _file_names(folder) if _is_tiff_name(name)]


def _position_labels(files: Sequence[str]) -> list[str] | None:
    """Each file's folder name when the files come from several folders (positions), or None."""
    folders = [os.path.dirname(name) for name in files]
    if len(set(folders)) < 2:
        return None
    return [os.path.basename(folder) for folder in folders]


def _unnamed_axes(reader: TiffStackND, series: int) -> set[str]:
    """Return the reader's axes that its file does not name (tifffile's ``Q``, ``I`` codes)."""
    codes = reader.metadata["series"][series]["axes"]
    return {name for code, name in zip(codes, pims_axes(codes), strict=True) if code in "QI"}


def _inner_axis_names(
    file_sizes: dict[str, int], name_axes: Sequence[str], unnamed: set[str]
) -> dict[str, str]:
    """Name the axes inside the files that the file names do not number: axis -> file axis.

    An axis of size > 1 that the file's format leaves unnamed (a plain multi-page file, read
    as ``t``) but that the file names already number becomes the first of ``z``, ``t``,
    ``c`` still free: a folder of unlabelled z-stacks named by time point gives ``t, z``.
    """
    taken = set(name_axes) | set(file_sizes)
    names = {}
    for axis, size in file_sizes.items():
        if axis in name_axes and size > 1 and axis in unnamed:
            free = next((a for a in "ztc" if a not in taken), None)
            if free is None:
                continue
            taken.add(free)
            names[free] = axis
        elif axis not in name_axes:
            names[axis] = axis
    return names


def _is_text_path(path: Any) -> bool:
    """Tell whether ``path`` is a ``str`` or an ``os.PathLike`` giving one."""
    return isinstance(path, (str, os.PathLike)) and isinstance(os.fspath(path), str)


def _checked_source(
    source: Any,
) -> str | os.PathLike[str] | tuple[str | os.PathLike[str], ...]:
    """Return a reader's source: a path as given, or a sequence of files as a tuple.

    Raises
    ------
    TypeError
        ``source`` is neither a ``str`` (or ``os.PathLike``) path nor an iterable of them.
    """
    if _is_text_path(source):
        return source
    if isinstance(source, (bytes, bytearray, os.PathLike)) or not isinstance(source, Iterable):
        raise TypeError(f"source must be a folder, glob or file (str or os.PathLike[str]) or a "
                        f"sequence of files, not {type(source).__name__}")
    names = tuple(source)
    for name in names:
        if not _is_text_path(name):
            raise TypeError(f"each file of the source must be a str or os.PathLike[str], "
                            f"not {type(name).__name__} ({name!r})")
    return names


def _source_label(source: Any) -> str:
    """How a source is named in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    names = [os.fspath(name) for name in source]
    return f"[{names[0]!r}, ... {len(names)} files]" if len(names) > 1 else repr(names)


class _Closeable(Protocol):
    def close(self) -> None: ...

    def _renew_locks_after_fork(self) -> None: ...


_Opened = TypeVar("_Opened")


def _out_of_file_descriptors(error: BaseException) -> bool:
    """Tell whether ``error``, or an error it was raised from, is a limit of open files.

    The process's (``EMFILE``) or the system's (``ENFILE``).
    """
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            return True
        error = error.__cause__ or error.__context__
    return False


def _opened_closing_idle_files(
    open_file: Callable[[], _Opened], path: str, holding: _OpenFiles | None = None
) -> _Opened:
    """Return ``open_file()``, closing every reader's idle files first if too many are open.

    ``open_file`` is called again after closing the idle files of every reader of the process
    when it failed for the process's limit of open files. ``path``: the file or source
    opened, for the error; ``holding``: the cache whose lock the caller holds.

    Raises
    ------
    StackReadError
        ``path`` cannot be opened although every idle file was closed: the process holds as
        many files as it may (``ulimit -n``) elsewhere.
    """
    try:
        return open_file()
    except OSError as error:
        if not _out_of_file_descriptors(error):
            raise
    with _OpenFiles._everywhere_lock:
        caches = list(_OpenFiles._everywhere)
    for cache in caches:
        if cache is holding:
            cache._close_idle()
        elif cache._lock.acquire(blocking=False):  # (never wait: that could deadlock)
            try:
                cache._close_idle()
            finally:
                cache._lock.release()
    try:
        return open_file()
    except OSError as error:
        if not _out_of_file_descriptors(error):
            raise
        raise StackReadError(
            path,
            "cannot open: too many open files (the process's limit, ulimit -n, is reached "
            "although the readers' idle files were closed); close other readers or files, "
            "or give a smaller max_open_files",
        ) from None


class _OpenFiles:
    """A bounded, thread-safe LRU cache of open per-file readers (or raw files).

    A reader is closed when it is evicted or the cache closed, but never while another
    thread uses it: readers in use are counted and stay open (the cache may then exceed its
    bound briefly) until released.

    Idle readers count against the process's limit of open files (``ulimit -n``), together
    with those of every other cache of the process (other readers, readers a dask worker
    re-opened): when a file cannot be opened for that limit, the idle readers of every cache
    are closed and the file opened again.
    """

    #: Every cache of this process: where idle files are closed when no file can be opened.
    _everywhere: ClassVar[weakref.WeakSet[_OpenFiles]] = weakref.WeakSet()
    #: Guards adding to and listing ``_everywhere`` (a set changing while listed raises).
    _everywhere_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, capacity: int, open_reader, paths: Sequence[str]) -> None:
        self._capacity = capacity
        self._open_reader = open_reader
        self._paths = paths  # named in errors
        self._lock = threading.Lock()
        self._readers: OrderedDict[int, _Closeable] = OrderedDict()
        self._users: dict[int, int] = {}
        self._closed = False
        with _OpenFiles._everywhere_lock:
            _OpenFiles._everywhere.add(self)
        renew_locks_after_fork(self)

    def _renew_locks_after_fork(self) -> None:
        """In a forked child: a new lock; no reader in use (their threads are not there).

        A closed cache closes the readers they were using (their releases would have): with
        their own locks renewed first, since this may run before their turn.
        """
        self._lock = threading.Lock()
        self._users.clear()
        if self._closed:
            for reader in self._readers.values():
                reader._renew_locks_after_fork()
            self._evict()

    def add(self, number: int, reader: _Closeable) -> None:
        """Put an already open reader in the cache (the first file)."""
        with self._lock:
            self._readers[number] = reader
            self._evict()

    def acquire(self, number: int) -> Any:
        """Return the open reader of file ``number``, opening it if needed; pair with release."""
        with self._lock:
            if self._closed:
                raise ReaderClosedError(f"{self._paths[number]}: reader is closed")
            reader = self._readers.get(number)
            if reader is None:
                reader = self._readers[number] = _opened_closing_idle_files(
                    lambda: self._open_reader(number), self._paths[number], holding=self)
            else:
                self._readers.move_to_end(number)
            self._users[number] = self._users.get(number, 0) + 1
            self._evict()
            return reader

    def _close_idle(self) -> None:
        """Close every reader no thread uses (lock held)."""
        for number in [n for n in self._readers if n not in self._users]:
            self._readers.pop(number).close()

    def release(self, number: int) -> None:
        """Mark file ``number`` as no longer used by the caller."""
        with self._lock:
            left = self._users.pop(number) - 1
            if left:
                self._users[number] = left
            self._evict()

    def _evict(self) -> None:
        """Close least recently used idle readers beyond the capacity (lock held).

        Once the cache is closed its capacity is 0: readers still in use are closed when
        their last user releases them.
        """
        excess = len(self._readers) - (0 if self._closed else self._capacity)
        if excess <= 0:
            return
        idle = [n for n in self._readers if n not in self._users][:excess]
        for number in idle:
            self._readers.pop(number).close()

    def open_count(self) -> int:
        """Count the per-file readers currently open."""
        with self._lock:
            return len(self._readers)

    def close(self) -> None:
        """Close every reader, those in use once released; later acquisitions raise.

        Acquiring after this raises :class:`ReaderClosedError`.
        """
        with self._lock:
            self._closed = True
            self._evict()


def _renew_locks_after_fork() -> None:
    """In a forked child: a new lock for the list of every open-files cache (see ``_fork``).

    (Each cache renews its own lock.)
    """
    _OpenFiles._everywhere_lock = threading.Lock()


renew_locks_after_fork(sys.modules[__name__])


class TiffSequenceND(PlanesND):
    r"""Many TIFF files as one lazy N-D reader with real ``p``, ``t``, ``z``, ``c`` axes.

    Parameters
    ----------
    source : str, os.PathLike or sequence of them
        A folder (its ``.tif``/``.tiff`` files), a glob such as ``"data/img_*.tif"``, or a list
        of files. Each file may itself be a stack. A folder without TIFF files but with
        sub-folders holding them (one per position or well, e.g. Micro-Manager's ``Pos0``,
        ``Pos1``) spans them all: unless the file names number positions, the sub-folders
        are the ``p`` axis, in natural order (where some hold a Micro-Manager
        ``metadata.txt``, only those); sub-folders that each hold one multi-file dataset
        of one layout (say a Micro-Manager stack split over several files) are read as one
        dataset with the sub-folders as ``p``. A folder with TIFF files of its own is read
        as those files, its sub-folders ignored, unless it is a Micro-Manager acquisition
        (a sub-folder's ``metadata.txt`` counts several positions): then its positions are
        read, as from any one of its images. When the files are one multi-file dataset (OME-TIFF
        whose OME-XML references other files or holds several positions, NDTiff,
        Micro-Manager stacks), the reader spans that dataset instead, with positions as the
        ``p`` axis; any one file of the dataset, or its folder (or an NDTiff dataset's
        ``NDTiff.index``, or an OME ``.companion.ome`` file), opens it (from a file of a
        dataset split by position, such as ``acq_MMStack_Pos1.ome.tif``, frames show that
        file's position: ``default_coords['p']``); the folder above a
        pycro-manager or Micro-Magellan dataset's ``Full resolution`` folder opens its
        full-resolution images (a pyramid's ``Downsampled_x2``... open by their folder).
        So does any one image of a Micro-Manager "separate image files" acquisition (an
        image name with ``metadata.txt`` beside it): its folder, or all its position
        folders when the ``metadata.txt`` counts several positions (frames then show the
        image's position).
    pattern : str or re.Pattern, optional
        Regular expression with named groups among ``t``, ``z``, ``c``, ``p`` searched in each
        file name (without extension), e.g. ``r"cell(?P<p>\d+)_(?P<t>\d+)"``. By default the
        built-in conventions are used: ``img_t0001_z003_c1.tif`` style tokens (also
        Micro-Manager's ``img_channel000_position000_time000000000_z000.tif``), Micro-Manager
        1.4 ``img_000000000_DAPI_000.tif``, and plain numbering (``banana0002.tif``: the one
        varying number becomes ``t``, or ``p`` when each file is a time series whose format
        names its ``t`` axis, e.g. ``run1.ome.tif``, ``run2.ome.tif``). Giving a pattern
        also turns off the detection of multi-file datasets: the files are then arranged by
        their names only.
    fill_missing : int or float, optional
        By default a gap in the numbering or a missing combination of coordinates raises
        :class:`StackReadError`. With a value, the missing planes read as that value.
    max_open_files : int, default 128
        At most this many files are kept open; the least recently used is closed first.
        When the process reaches its limit of open files (``ulimit -n``), the idle files of
        every reader of the process are closed.
    series : int, default 0
        The series read in each file (see :class:`~pims_videoutils.readers.TiffStackND`). In
        a multi-file dataset whose series all share one shape, every series is a position.
    copy : bool, default True
        Passed to each file's reader when files are opened as stacks; planes read with one
        ``preadv`` are always fresh arrays.

    Attributes
    ----------
    files : tuple of str
        The files (absolute paths), in the C order of the file-name axes (for numbered
        names, their natural order); for a multi-file dataset, sorted by name (position
        folders each holding one: folder after folder).
    grid : FileGrid or None
        Which file holds which file-name coordinates (None for a multi-file dataset).
    metadata : dict
        The keys of ``TiffStackND.metadata`` (from the first file, or the dataset's OME-XML;
        for a Micro-Manager acquisition, updated from its ``metadata.txt`` summary) plus
        ``files`` (count), ``file_axes`` (axis -> coordinates read from the file names),
        ``file_pattern`` (the naming convention, or the dataset kind) and ``missing_files``
        (count of filled gaps or missing planes).

    Raises
    ------
    StackNotFoundError
        The folder, glob or a listed file does not exist, or holds no TIFF file (nor do the
        folder's sub-folders); or a file a
        multi-file dataset needs is missing (its OME companion, an earlier part of a
        Micro-Manager position, a file named by the NDTiff index, or a file holding every
        plane of an OME image: such a position cannot be filled).
    StackReadError
        File names that cannot be arranged (different patterns, ambiguous numbers, duplicates,
        a gap without ``fill_missing``), a file-name axis that is also an axis inside the
        files, a folder in a list of files, or an unreadable first file; a multi-file dataset
        with missing or unreadable files (without ``fill_missing``; with it too for a file of
        the dataset that tifffile fails on, or an unreadable file holding every plane of an
        OME image), a file of another acquisition (its OME UUID differs) or planar RGB pages.
        A file whose layout differs from the first file's raises when it is first read,
        naming the file and the difference; so does a file of a multi-file dataset that was
        replaced, shortened or rewritten since the reader was opened (the planes' offsets
        were found then), when it is (re)opened to read a plane, or is no regular file any
        more. A file that cannot be opened because the process has as many files open as
        it may (``ulimit -n``), even after every reader's idle files were closed.
    ValueError
        An invalid ``pattern``, ``max_open_files < 1``, a ``fill_missing`` value the pixel
        type cannot hold, or ``copy=False`` with files whose byte order is not native.
    TypeError
        ``series`` or ``max_open_files`` is not an integer, or ``source`` is not a path or a
        sequence of paths.

    Notes
    -----
    Axes: the file-name axes (``p, t, z, c`` order) then the axes inside each file; only
    axes of size > 1 appear, plus ``y``, ``x`` (and ``s`` for RGB samples). An axis inside
    the files that their format does not name (plain multi-page files) and that the file
    names already number becomes the first of ``z``, ``t``, ``c`` still free. Default
    iteration over ``t``, else ``z``, else the outermost file-name axis; frames bundle the
    plane axes. Reading is thread-safe. A reader pickles as its source and options and
    re-lists the files when loaded (:class:`StackReadError` if they lost an axis its axis
    settings name, or a default coordinate is beyond its axis now); pickling a closed
    reader raises
    :class:`~pims_videoutils.ReaderClosedError`.
    """

    #: Just below :class:`~pims_videoutils.readers.TiffStackND` (20): ``pims.open`` on a file
    #: tries this reader when ``TiffStackND`` refuses a file that belongs to a multi-file
    #: dataset, and before pims's own TIFF readers (10 and less).
    class_priority = 19

    @classmethod
    def class_exts(cls) -> set[str]:
        """File extensions this reader claims from ``pims.open``."""
        # "ome": a .companion.ome file; "index": an NDTiff dataset's NDTiff.index
        return {"tif", "tiff", "ome.tif", "ome.tiff", "ome", "index"}

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        pattern: str | re.Pattern[str] | None = None,
        fill_missing: float | None = None,
        max_open_files: int = _DEFAULT_MAX_OPEN_FILES,
        series: int = 0,
        copy: bool = True,
    ) -> None:
        series = integer_option("series", series)
        max_open_files = integer_option("max_open_files", max_open_files)
        if max_open_files < 1:
            raise ValueError(f"max_open_files must be at least 1, not {max_open_files}")
        self._source = _checked_source(source)
        # what a pickled reader re-opens: these files, also after os.chdir or in a worker process
        self._abs_source = (
            absolute_path(self._source) if isinstance(self._source, (str, os.PathLike))
            else tuple(absolute_path(name) for name in self._source)
        )
        self._options = {
            "pattern": pattern,
            "fill_missing": fill_missing,
            "max_open_files": max_open_files,
            "series": series,
            "copy": copy,
        }
        label = _source_label(self._source)
        _opened_closing_idle_files(lambda: self._open_source(label), label)

    def _open_source(self, label: str) -> None:
        """List the files, find how they are arranged, open the first file or the dataset.

        Starts from scratch (no axes), also when called again after closing idle files.
        """
        super().__init__()
        pattern, series, copy, fill_missing, max_open_files = (
            self._options[name]
            for name in ("pattern", "series", "copy", "fill_missing", "max_open_files")
        )
        # absolute (listed from the absolute source, without a cost per file), so that files
        # opened later are the same after an os.chdir
        self.files = tuple(_list_files(self._abs_source))
        self.grid = None
        self._template = None
        self._template_paths: list[str | None] = []  # the file of each plane (None: a gap)
        # a folder (or one Micro-Manager image) whose files lie in position sub-folders
        from_folders = isinstance(self._source, (str, os.PathLike)) and os.path.exists(label)
        folders = _position_labels(self.files) if from_folders else None
        self._table = None
        if pattern is None:
            self._table = (
                self._dataset_of_all(label, series) if folders is None
                else self._dataset_per_folder(label, series, folders)
            )
        if self._table is not None:
            self._init_dataset(self._table, label, fill_missing)
            if folders is not None:
                self.metadata["file_axes"] = {"p": natural_sorted(set(folders))}
            self._files = _OpenFiles(max_open_files, self._open_raw, self.files)
            self._show_the_position_of_the_source()
            return
        try:
            self.grid = arrange_files(
                self.files, pattern, fill_missing=fill_missing is not None, folders=folders)
        except FileNameError as exc:
            raise StackReadError(label, str(exc)) from None
        # files in grid order (C order of the file-name axes: natural order of numbered names)
        self.files = self.grid.files
        first = TiffStackND(self.files[0], series=series, copy=copy)
        try:
            self._init_sequence(first, label, fill_missing)
            if (
                not self._inner_axes
                and self._storage == "mapped"
                and self.metadata["kind"] in _TEMPLATE_KINDS
            ):
                self._template = PlaneTemplate.of(first.path, self._plane_shape, self._dtype)
                self._template_paths = [None if s < 0 else self.files[s] for s in self.grid.slots]
        except BaseException:
            first.close()
            raise
        self._files = _OpenFiles(max_open_files, self._open_file, self.files)
        self._files.add(0, first)
        self._show_the_position_of_the_source()

    def _show_the_position_of_the_source(self) -> None:
        """Make the position of the file the reader was opened from the default ``p``.

        A reader opened from one file of an acquisition of several positions (a
        Micro-Manager ``acq_MMStack_Pos1.ome.tif``, an image in ``Pos1/``) spans every
        position; when the files are split by position (each holds planes of one position),
        its frames show that file's position (they showed position 0) unless
        ``default_coords`` says otherwise. Files split by size (NDTiff, the continuations
        of a Micro-Manager file of every position) keep position 0, even where one of them
        happens to hold one position.
        """
        source = self._abs_source
        if self.sizes.get("p", 1) < 2 or not isinstance(source, str):
            return
        names = {source, os.path.realpath(source)}  # (a dataset may list its real paths)
        number = next((n for n, name in enumerate(self.files) if name in names), None)
        if number is None:  # a folder, a glob, an NDTiff.index or a .companion.ome
            return
        if self._table is not None and "p" in self._table.axes:
            file_index = self._table.file_index
            axis = self._table.axes.index("p")
            position = np.arange(file_index.shape[axis]).reshape(
                [-1 if k == axis else 1 for k in range(file_index.ndim)])
            position = np.broadcast_to(position, file_index.shape)
            # each (file, position) pair that holds a plane
            pairs = np.unique(np.stack([file_index.ravel(), position.ravel()]), axis=1)
            files, positions = pairs[:, pairs[0] >= 0]
        elif self.grid is not None and "p" in self.grid.axes:  # a file is one cell
            axis = self.grid.axes.index("p")
            cells = self.grid.cells.items()
            files = np.array([n for _, n in cells])
            positions = np.array([index[axis] for index, _ in cells])
        else:  # positions inside every file
            return
        held = positions[files == number]  # (none: a file whose planes are all missing)
        if len(np.unique(files)) == len(files) and held.size:  # one position per file
            self.default_coords = {"p": int(held[0])}

    def _dataset_of_all(
        self, label: str, series: int, files: Sequence[str] | None = None
    ) -> PlaneTable | None:
        """Return the first file's multi-file dataset, if the source lists only its files.

        The first file by name, not in the order the folder lists them: the outcome does not
        depend on the file system; OME-TIFF names first (multi-file datasets have them, a
        projection saved beside one may not). ``files``: these rather than all the files.
        """
        files = self.files if files is None else files
        named_ome = [name for name in files if name.lower().endswith(_OME_SUFFIXES)]
        probe = min(named_ome or files)
        table = find_dataset(probe, series)
        if table is None:
            return None
        # (absolute_path: a file named through a link and ``..`` is where the system finds
        # it, which ``os.path.abspath`` could make a file of the dataset by the letters)
        in_dataset = {absolute_path(f) for f in table.dataset_files}
        others = [f for f in files if absolute_path(f) not in in_dataset]
        if others:  # (tifffile names files by their real paths: the source may link to them)
            in_dataset.update(os.path.realpath(f) for f in table.dataset_files)
            others = [f for f in others if os.path.realpath(f) not in in_dataset]
        if not others:
            return table
        if len(table.dataset_files) == 1:  # positions inside each file of a numbered sequence
            return None
        other = min(others)
        common = os.path.commonpath([probe, other])  # (files of several folders: name those)
        # (a path through ``..`` whole: relpath would drop the ``..`` by the letters)
        shown = other if os.pardir in other.split(os.sep) else os.path.relpath(other, common)
        raise StackReadError(
            label,
            f"{os.path.relpath(probe, common)} belongs to a dataset of "
            f"{len(table.dataset_files)} files, but the source also holds {len(others)} other "
            f"TIFF files (e.g. {shown}); open one file of the dataset instead",
        )

    def _dataset_per_folder(
        self, label: str, series: int, folders: list[str]
    ) -> PlaneTable | None:
        """Return the datasets of the position folders as one, positions as ``p``, or None.

        None when the first folder holds no dataset of several files (files read one by one,
        the folders as ``p``; only its first file is probed, as for one folder).

        Raises
        ------
        StackReadError
            Some folders hold a multi-file dataset and others do not, or the datasets differ.
        """
        by_folder: dict[str, list[str]] = {}
        for name, folder in zip(self.files, folders, strict=True):
            by_folder.setdefault(folder, []).append(name)
        order = natural_sorted(by_folder)
        first = self._dataset_of_all(label, series, by_folder[order[0]])
        if first is None or len(first.dataset_files) == 1:  # (positions inside one file each)
            return None
        tables = [first] + [self._dataset_of_all(label, series, by_folder[f]) for f in order[1:]]
        if None in tables:
            raise StackReadError(
                label,
                f"position folder {order[0]} holds a multi-file dataset but "
                f"{order[tables.index(None)]} does not; open the position folders one by one",
            )
        return stack_positions(tables)

    def _init_axes(
        self,
        outer: list[tuple[str, int]],
        plane: list[tuple[str, int]],
        dtype: np.dtype,
        fill_missing: float | None,
    ) -> None:
        """Declare the axes (outer then plane), the frame getter and the default iteration."""
        self._dtype = np.dtype(dtype).newbyteorder("=")
        self._plane_axes = "".join(axis for axis, _ in plane)
        self._plane_shape = tuple(size for _, size in plane)
        self._fill = None if fill_missing is None else fill_value(fill_missing, self._dtype)
        for axis, size in (*outer, *plane):
            self._init_axis(axis, size)
        self._outer_sizes = tuple(outer)
        self._plane_reader = self._sequence_plane if self._table is None else self._dataset_plane
        self._init_planes(self._plane_axes)
        order = [a for a in AXIS_ORDER if a in self.sizes and a not in self._plane_axes]
        preferred = [a for a in ("t", "z") if a in self.sizes] or order[:1]
        self.iter_axes = preferred[:1]

    def _init_dataset(self, table: PlaneTable, label: str, fill_missing: float | None) -> None:
        """Set axes, dtype and metadata from a multi-file dataset's plane table."""
        missing = int(np.count_nonzero(table.file_index < 0))
        if missing and fill_missing is None:
            why = ("files missing, an acquisition stopped early, or metadata that puts planes "
                   "in IFDs a file lacks?")
            if table.unreadable:
                why = "; ".join(
                    f"{os.path.basename(name)} cannot be read: {reason}"
                    for name, reason in sorted(table.unreadable.items())
                )
            raise StackReadError(
                label,
                f"{missing} planes of the dataset are in no file ({why}); pass fill_missing= "
                "to fill them",
            )
        self.files = table.files
        self._inner_axes = ()
        outer = list(zip(table.axes, table.shape, strict=True))
        plane = list(zip(table.plane_axes, table.plane_shape, strict=True))
        self._init_axes(outer, plane, table.dtype, fill_missing)
        self.metadata = dict(table.metadata)
        self.metadata.update(
            files=len(table.files), file_axes={}, file_pattern=table.kind, missing_files=missing
        )
        interval = self.metadata.get("frame_interval")
        self._frame_rate = 1.0 / interval if interval else None
        self._storage = table.storage

    def _init_sequence(self, first: TiffStackND, label: str, fill_missing: float | None) -> None:
        """Set axes, dtype and metadata from the first file and the file grid."""
        plane_axes = first.plane_axes
        file_sizes = {a: n for a, n in first.sizes.items() if a not in plane_axes}
        unnamed = _unnamed_axes(first, self._options["series"])
        if (
            self.grid.pattern == "numbered"  # the t of the names is only a number (run1, run2)
            and file_sizes.get("t", 1) > 1
            and "t" not in unnamed  # (an unnamed t inside the files is renamed, see below)
            and "p" not in file_sizes
            and "p" not in self.grid.axes
            and "p" not in self.grid.constants
        ):
            self.grid = self.grid.renamed("t", "p")  # time series numbered: runs, positions
        names = _inner_axis_names(file_sizes, self.grid.axes, unnamed)
        renamed = {f for a, f in names.items() if a != f}
        clashes = [a for a in self.grid.axes if file_sizes.get(a, 1) > 1 and a not in renamed]
        if clashes:
            axis = clashes[0]
            raise StackReadError(
                label,
                f"the file names number the files along {axis!r}, but each file also has a "
                f"{axis!r} axis of {file_sizes[axis]}; give pattern= with another axis",
            )
        self._file_sizes = file_sizes
        self._inner_names = names  # axis here -> axis in each file
        self._inner_axes = tuple(names)
        outer = [*zip(self.grid.axes, self.grid.shape, strict=True)]
        outer += [(a, file_sizes[names[a]]) for a in self._inner_axes]
        plane = [(a, first.sizes[a]) for a in plane_axes]
        self._init_axes(outer, plane, first.pixel_type, fill_missing)
        self.metadata = dict(first.metadata)
        self.metadata.update(
            files=len(self.files),
            file_axes={a: list(self.grid.values[a]) for a in self.grid.axes},
            file_pattern=self.grid.pattern,
            missing_files=len(self.grid.slots) - len(self.files),
        )
        if is_micromanager_image_name(self.files[0]):
            self._add_acquisition_summary()
        interval = self.metadata.get("frame_interval")
        self._frame_rate = 1.0 / interval if interval else None
        self._storage = first.storage

    def _add_acquisition_summary(self) -> None:
        """Add what a Micro-Manager acquisition's ``metadata.txt`` says to the metadata.

        The frame interval, z step, pixel size, software and channel names; Micro-Manager 1.4
        names channels in the file names, so there the channel names are the ``c`` axis's
        (in its order).
        """
        summary = _micromanager_summary(os.path.dirname(self.files[0]) or os.curdir)
        if not summary:
            return
        micromanager_summary_metadata(summary, self.metadata)
        if self.grid.pattern == "micromanager1.4":
            self.metadata["channel_names"] = (
                [str(name) for name in self.grid.values["c"]] if "c" in self.grid.axes
                else [str(self.grid.constants["c"])])

    def _open_raw(self, number: int) -> DatasetFile:
        """Open file ``number`` of a multi-file dataset for reading planes at known offsets."""
        table = self._table
        identity = table.identities[number] if table.identities else None
        return DatasetFile(self.files[number], table.storage, identity)

    def _dataset_plane(self, coords: dict[str, int]) -> np.ndarray:
        """Read one plane of a multi-file dataset from its file and offset."""
        files = self._files
        if files is None:
            raise ReaderClosedError(f"{_source_label(self._source)}: reader is closed")
        table = self._table
        index = tuple([coords[a] for a in table.axes])
        number = int(table.file_index[index])
        if number < 0:
            return np.full(self._plane_shape, self._fill, dtype=self._dtype)
        handle = files.acquire(number)
        try:
            plane = handle.read(table, int(table.offsets[index]))
        finally:
            files.release(number)
        if table.timestamps is not None and not math.isnan(table.timestamps[index]):
            plane = Frame(plane, metadata={"timestamp": float(table.timestamps[index])})
        return plane

    def _open_file(self, number: int) -> TiffStackND:
        """Open file ``number`` and check that it has the first file's layout."""
        path = self.files[number]
        reader = TiffStackND(path, series=self._options["series"], copy=self._options["copy"])
        difference = self._compare_layout(reader)
        if difference:
            reader.close()
            first = os.path.basename(self.files[0])
            raise StackReadError(
                path, f"its layout differs from the first file {first}: {difference}"
            )
        return reader

    def _compare_layout(self, reader: TiffStackND) -> str:
        """Describe how a file's layout differs from the first file's ('' if it does not)."""
        plane_axes = reader.plane_axes
        plane = tuple(reader.sizes[a] for a in plane_axes)
        if (plane_axes, plane) != (self._plane_axes, self._plane_shape):
            return f"planes {plane_axes}={plane} instead of {self._plane_axes}={self._plane_shape}"
        sizes = {a: n for a, n in reader.sizes.items() if a not in plane_axes}
        if sizes != self._file_sizes:
            return f"axes {sizes} instead of {self._file_sizes}"
        dtype = np.dtype(reader.pixel_type)
        if dtype != self._dtype:
            return f"pixel type {dtype} instead of {self._dtype}"
        return ""

    def _plane_at(self, coords: dict[str, int]) -> np.ndarray:
        for axis, size in self._outer_sizes:
            if not 0 <= coords[axis] < size:
                raise IndexError(f"coordinate {axis}={coords[axis]} out of range 0..{size - 1}")
        return self._plane_reader(coords)

    def _sequence_plane(self, coords: dict[str, int]) -> np.ndarray:
        """Read one plane: find its file from the file-name coordinates, then read inside it."""
        number = self.grid.file_number(coords)
        return self._file_plane(number, {f: coords[a] for a, f in self._inner_names.items()})

    def _plane_numbering(self) -> dict[str, int] | None:
        """Files of one plane, arranged on the axes in their order here: plane number = cell."""
        axes = [axis for axis, _ in self._outer_sizes]
        if self._table is not None or self._inner_axes or axes != list(self.grid.axes):
            return None
        return c_order_strides(list(self._outer_sizes))

    def _read_plane(self, number: int, allocate: Allocate = np.empty) -> np.ndarray:
        template = self._template
        # the usual case, read here rather than through _file_plane: a shorter path per frame
        if template is not None and self._files is not None:
            path = self._template_paths[number]
            if path is not None:
                plane = template.read(path, allocate)
                if plane is not None:
                    return plane
        slot = self.grid.slots[number]
        return self._file_plane(None if slot < 0 else slot, {})

    def _file_plane(self, number: int | None, inner: dict[str, int]) -> np.ndarray:
        """Read the plane at ``inner`` coordinates of file ``number`` (None: a gap, filled)."""
        files = self._files
        if files is None:
            raise ReaderClosedError(f"{_source_label(self._source)}: reader is closed")
        if number is None:
            return np.full(self._plane_shape, self._fill, dtype=self._dtype)
        if self._template is not None:
            plane = self._template.read(self.files[number])
            if plane is not None:
                return plane
        reader = files.acquire(number)
        try:
            return reader.get_plane(**inner)
        finally:
            files.release(number)

    @property
    def pixel_type(self) -> np.dtype:
        """The sample type of the planes (native byte order)."""
        return self._dtype

    @property
    def frame_rate(self) -> float | None:
        """Frames per second from the first file's frame interval, or None."""
        return self._frame_rate

    @property
    def storage(self) -> str:
        """How the first file's planes are read: ``'mapped'`` or ``'decoded'``."""
        return self._storage

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._files is None

    def open_file_count(self) -> int:
        """Count the files currently open (at most ``max_open_files`` when idle)."""
        files = self._files  # (read once: another thread may close the reader meanwhile)
        return 0 if files is None else files.open_count()

    def close(self) -> None:
        """Close every open file (idempotent); reading afterwards raises ReaderClosedError.

        A file another thread is reading from is closed when that read has finished.
        """
        files, self._files = self._files, None
        if files is not None:
            files.close()

    def __reduce__(self):
        if self.closed:  # (re-opened in another process, it would read again)
            raise ReaderClosedError(
                f"{_source_label(self._source)}: a closed reader cannot be pickled")
        state = {
            "iter_axes": self.iter_axes,
            "bundle_axes": self.bundle_axes,
            "default_coords": dict(self.default_coords),
        }
        return (_restore, (type(self), self._abs_source, self._options, state))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{a}={n}" for a, n in self.sizes.items())
        state = "closed" if self.closed else f"{len(self.files)} files"
        label = _source_label(self._source)
        return f"<{type(self).__name__} {label} ({state}) {sizes} {self._dtype}>"


def _restore(cls: type, source: Any, options: dict[str, Any], state: dict[str, Any]):
    """Re-open a pickled reader and restore its axis settings."""
    reader = cls(source, **options)
    reader._restore_axis_settings(_source_label(source), state["iter_axes"],
                                  state["bundle_axes"], state["default_coords"])
    return reader
