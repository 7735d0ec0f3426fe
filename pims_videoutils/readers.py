"""pims readers: :class:`TiffStackND`, a lazy N-D reader for single-file TIFF stacks."""

from __future__ import annotations

import math
import mmap
import operator
import os
import stat
import threading
from typing import Any

import numpy as np
from pims import Frame

from ._decode import PageDecoder
from ._errors import MALFORMED_TIFF_ERRORS, ReaderClosedError, StackNotFoundError, StackReadError
from ._filenames import absolute_path
from ._fork import renew_locks_after_fork
from ._layout import MAPPED, Layout, cut_imagej_size, discover, open_tiff
from ._planes import Allocate, PlanesND, c_order_strides, fill_value
from ._pread import PlaneReads, PositionalFile

__all__ = ["TiffStackND"]


def integer_option(name: str, value: Any) -> int:
    """Return ``value`` as an int (numpy integers too); TypeError naming ``name`` otherwise."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__} "
                        f"({value!r})") from None


class TiffStackND(PlanesND):
    """Lazy, memory-frugal N-D reader of a single-file TIFF stack.

    Uncompressed pages are never decoded: each plane is read with one ``os.preadv`` from its own
    offset into a fresh array in native byte order: safe to modify, thread-safe, no page-fault
    penalty on a cold cache. Planes of up to 8 KiB read one after another are copied out of one
    ``preadv`` per 256 KiB of the file; a forward pass over planes that come from the disk asks
    the kernel to read 8 MiB ahead. Compressed, tiled, planar or bit-packed pages are decoded
    one page at a time through tifffile (codecs beyond deflate and PackBits, such as LZW, need
    imagecodecs).

    Parameters
    ----------
    path : str or os.PathLike
        The TIFF file (opened read-only, never written).
    series : int, optional
        Which series of the file (OME images, several tifffile series); ``metadata['series']``
        lists them.
    level : int, optional
        Pyramid level of the series (0, the default: full resolution; ``metadata['series']``
        lists the shape of every level). Pixel sizes in ``metadata`` are the level's.
    copy : bool, optional
        True (default): every plane is a fresh writable array. False: planes of ``'mapped'``
        storage are zero-copy read-only views into one read-only mapping of the file (needs the
        file's byte order to be native; decoded planes are fresh arrays anyway). As with any
        memory map (``tifffile.memmap`` too), truncating the file while views of it are used
        kills the process (SIGBUS); with True, a truncated file raises StackReadError.
    fill_missing : int or float, optional
        Read an ImageJ file cut in its pixels (a save that crashed, a copy that stopped:
        ImageJ writes the first image's IFD, every image, then the other IFDs), which is
        otherwise refused: every image it holds whole is read, the others are this value
        (``metadata['missing_planes']`` counts them). Other truncated files are still
        refused (a Micro-Manager file: :class:`~pims_videoutils.sequence.TiffSequenceND`
        takes the same option). tifffile, and so pims's ``TiffStack``, read one image of
        such a file.

    Attributes
    ----------
    axes, sizes
        pims axes of the file: ``t`` time, ``z`` depth, ``c`` channel, ``y``, ``x``, ``s``
        samples per pixel (RGB; ``c``, ``z`` or ``t`` where the file's metadata names them so,
        e.g. a ``(T, 3, Y, X)`` array that tifffile wrote as RGB with axes ``'TCYX'``).
        tifffile's unknown sequences ``Q``/``I`` become ``t`` (``Q`` of length 1, as in an array
        ``(T, Y, X, 1)``, are dropped); positions/tiles/scenes ``R``, ``V``, ``P``, ``M`` become
        ``p``; ``S`` outside the plane (separate planes of samples) becomes ``c``; any other
        tifffile axis code becomes its lower-case letter (the first free letter when taken,
        never ``s``). Defaults:
        ``iter_axes = 't'`` (``'z'`` without ``t``, else the first non-plane axis),
        ``bundle_axes = 'yx'`` (``'yxs'`` for RGB, ``'yxc'`` for such channels).
    metadata : dict
        Always has ``pixel_size_x``, ``pixel_size_y``, ``z_step`` (in ``unit``), ``unit``,
        ``frame_interval`` (seconds), ``channel_names``, ``software``, ``kind``
        (``'imagej'``, ``'ome'``, ``'shaped'``, ``'uniform'``, ``'ndtiff'``, ...), ``storage``,
        ``series`` (index, shape, axes, dtype, kind and pyramid ``levels`` shapes of every series
        in the file): None when unknown, or when the file holds no positive finite number
        there (a bad metadata value never makes the pixels unreadable); ``level`` for a pyramid
        level other than 0. Lengths are in ``unit``, the unit of the x pixel size (other axes'
        units are converted to it). Plus ``imagej_metadata``, ``ome_xml``,
        ``micromanager_metadata`` and a palette's ``colormap`` where present, and for a
        Micro-Manager stack ``missing_positions``: the acquisition's positions without a file
        here (a file of one position alone: read with an :class:`IncompleteDatasetWarning`),
        and with ``fill_missing`` the count of ``missing_planes``.
    frame_rate : float or None
        ``1 / metadata['frame_interval']`` when known.
    storage : str
        ``'mapped'`` (planes read from their offsets) or ``'decoded'`` (pages decoded).
    path : str
        The file.

    Raises
    ------
    StackNotFoundError
        The file does not exist.
    StackReadError
        Not a TIFF, empty, truncated, corrupt or inconsistent file, not a regular file (a
        folder, a FIFO, a device), volumetric pages (ImageDepth > 1), or no such series or
        level.
    TypeError
        ``path`` is not a ``str`` or ``os.PathLike[str]``; ``series`` or ``level`` is not an
        integer.
    ValueError
        ``copy=False`` on a file whose byte order is not native; a ``fill_missing`` that the
        pixel type cannot hold.

    Notes
    -----
    Opening costs the same whatever the page count for ImageJ hyperstacks (also the truncated
    > 4 GB single-IFD kind), contiguous tifffile series, and plain or tifffile-shaped files whose
    pages provably share one layout: a vectorised walk of the IFD chain (about 30 ms per
    100,000 pages, warm) replaces tifffile's per-page objects. Such uniform files are one
    stack even when tifffile lists each separately written page as its own series. Other
    files (OME, Micro-Manager, mixed pages) use tifffile's series. A file of a multi-file
    OME-TIFF dataset (even one holding all of its own series), series spanning several files
    (Micro-Manager, NDTiff) and BinaryOnly OME-TIFFs (metadata in a companion file) are
    refused with StackReadError: :class:`~pims_videoutils.sequence.TiffSequenceND` reads them.
    So is a file whose metadata put planes in IFDs it lacks (tifffile reads them as zeros);
    ``TiffSequenceND(path, fill_missing=0)`` reads it, filling them.

    The reader pickles as its path and options (a few hundred bytes) and re-opens the file when
    unpickled (:class:`StackReadError` if the file lost an axis its ``iter_axes``,
    ``bundle_axes`` or ``default_coords`` name, or a default coordinate is beyond its axis
    now); pickling a closed reader raises
    :class:`ReaderClosedError`. Frames carry
    ``metadata['timestamp']`` (seconds) where the file stores per-plane time stamps (OME
    ``DeltaT``; Micro-Manager's and NDTiff's ``ElapsedTime-ms``). Reading from
    several threads is safe, and so is closing while other threads read: the file is released
    when their reads end.
    """

    class_priority = 20

    @classmethod
    def class_exts(cls) -> set[str]:
        """File extensions this reader claims."""
        return {"tif", "tiff", "ome.tif", "ome.tiff"}

    def __init__(self, path: str | os.PathLike[str], *, series: int = 0, level: int = 0,
                 copy: bool = True, fill_missing: float | None = None) -> None:
        super().__init__()
        self._path = os.fspath(path)
        if not isinstance(self._path, str):
            raise TypeError(f"path must be a str or os.PathLike[str], not {type(path).__name__}")
        # what a pickled reader re-opens: this file, also after os.chdir or in a worker process
        self._abspath = absolute_path(self._path)
        self._options = {"series": integer_option("series", series),
                         "level": integer_option("level", level),
                         "copy": bool(copy), "fill_missing": fill_missing}
        self._lock = threading.RLock()  # tifffile's page parsing; close() and _release()
        self._file, self._tif, self._mmap = None, None, None
        self._decoder: PageDecoder | None = None  # decoded storage
        self._closed = False
        self._reads_in_flight: list[int] = []  # one entry per read under way (see _read_plane)
        # planes a truncated file lacks (read as the fill value), or None
        self._missing: np.ndarray | None = None
        self._fill: np.ndarray | None = None
        renew_locks_after_fork(self)
        self._layout = self._open()
        try:
            self._init_reader(copy)
        except BaseException:  # (a reader that failed to open leaves nothing open)
            self.close()
            raise

    def _init_reader(self, copy: bool) -> None:
        """Set up the mapping, axes and defaults of the opened file's layout."""
        layout = self._layout
        if not copy and layout.storage == MAPPED and not layout.dtype.isnative:
            raise ValueError(
                f"{self._path}: copy=False needs native byte order, but the file is "
                f"{'big' if layout.dtype.byteorder == '>' else 'little'}-endian; use copy=True")
        if not copy and layout.storage == MAPPED:
            self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        for name, size in zip(layout.axes, layout.shape, strict=True):
            self._init_axis(name, size)
        for name, size in zip(layout.plane_axes, layout.plane_shape, strict=True):
            self._init_axis(name, size)
        self._native = layout.dtype.newbyteorder("=")
        fill_missing = self._options["fill_missing"]
        if fill_missing is not None:
            self._fill = fill_value(fill_missing, self._native)
            if layout.storage == MAPPED:  # (decoded pages are all in the file: their IFDs are)
                size = os.fstat(self._file.fileno()).st_size
                missing = layout.plane_offsets + layout.plane_nbytes > size
                if missing.any():
                    self._missing = missing
            layout.metadata["missing_planes"] = (
                0 if self._missing is None else int(self._missing.sum()))
        self._init_planes(layout.plane_axes)
        for default in ("t", "z", *layout.axes):
            if default in layout.axes:
                self.iter_axes = default
                break

    def _open(self) -> Layout:
        try:
            mode = os.stat(self._path).st_mode
            if stat.S_ISREG(mode):  # (opening a FIFO would wait for a writer)
                self._file = open(self._path, "rb", buffering=0)  # owned until close()
        except FileNotFoundError:
            raise StackNotFoundError(self._path, "no such file") from None
        except ValueError as exc:  # e.g. a NUL character in the path
            raise StackReadError(self._path, f"cannot open ({exc})") from None
        except OSError as exc:
            raise StackReadError(self._path, f"cannot open ({exc.strerror})") from None
        if self._file is None:
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (FIFO, device...)"
            raise StackReadError(self._path, f"is {what}, not a TIFF file")
        self._reads = PlaneReads(self._file.fileno(), self._path)
        try:
            if os.fstat(self._file.fileno()).st_size == 0:
                raise StackReadError(self._path, "empty file")
            try:
                self._tif = open_tiff(PositionalFile(self._file))
            except MALFORMED_TIFF_ERRORS as exc:
                raise StackReadError(self._path, f"not a readable TIFF file ({exc})") from None
            try:
                try:
                    layout = discover(self._tif, self._path, self._options["series"],
                                      self._options["level"])
                except StackReadError as error:
                    layout = self._discover_cut_imagej(error)
            except MALFORMED_TIFF_ERRORS as exc:
                raise StackReadError(self._path, f"corrupt TIFF structure ({exc})") from None
            if layout.storage == MAPPED:
                self._tif.close()
                self._tif = None
            else:
                self._decoder = PageDecoder(self._tif, self._reads, self._lock)
            return layout
        except BaseException:
            self.close()
            raise

    def _discover_cut_imagej(self, error: StackReadError) -> Layout:
        """Return the layout of an ImageJ file cut in its pixels, as if whole, or raise.

        tifffile is told the file has the size it had whole, so that it makes the series the
        ImageJ header describes; the planes past the real end are then missing (see
        ``_init_reader``). Without ``fill_missing``, ``error`` (what the file's layout
        failed with) is raised, naming the option where it reads the file.
        """
        whole = cut_imagej_size(self._tif)
        if whole is None:
            raise error
        self._tif.close()
        self._tif = open_tiff(PositionalFile(self._file), size=whole)
        try:
            layout = discover(self._tif, self._path, self._options["series"],
                              self._options["level"], size=whole)
        except StackReadError:
            raise error from None
        if self._options["fill_missing"] is None:
            raise StackReadError(self._path, f"{error.reason}; TiffStackND(path, "
                                 "fill_missing=0) reads the images it holds") from None
        return layout

    # --- reading ---------------------------------------------------------------------------

    @property
    def pixel_type(self) -> np.dtype:
        """Sample type of the frames (native byte order)."""
        return self._native

    @property
    def storage(self) -> str:
        """``'mapped'`` or ``'decoded'``."""
        return self._layout.storage

    @property
    def path(self) -> str:
        """The file."""
        return self._path

    @property
    def metadata(self) -> dict[str, Any]:
        """Normalised file metadata (see the class docstring)."""
        return self._layout.metadata

    @property
    def frame_rate(self) -> float | None:
        """Frames per second, from the frame interval, or None."""
        interval = self._layout.metadata.get("frame_interval")
        return 1.0 / interval if interval else None

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def _plane_at(self, coords: dict[str, int]) -> np.ndarray:
        return self._read_plane(self._plane_index(coords))

    def _plane_numbering(self) -> dict[str, int]:
        return c_order_strides(list(zip(self._layout.axes, self._layout.shape, strict=True)))

    def _plane_index(self, coords: dict[str, int]) -> int:
        """Index of the plane at ``coords`` (one per non-plane axis), checking the ranges."""
        index = 0
        for name, size in zip(self._layout.axes, self._layout.shape, strict=True):
            value = int(coords[name])
            if not 0 <= value < size:
                raise IndexError(f"coordinate {name}={value} out of range 0..{size - 1}")
            index = index * size + value
        return index

    def _read_plane(self, index: int, allocate: Allocate = np.empty) -> np.ndarray:
        """Plane number ``index`` (C order of the non-plane axes); see ``PlanesND._read_plane``.

        Counted as a read in flight, so that a :meth:`close` from another thread releases the
        file only after it (never under a ``preadv``, whose descriptor could meanwhile belong
        to another file). The count is a list, whose ``append`` and ``pop`` are atomic: cheaper
        than taking the lock twice per plane. The order makes it safe: a read is counted before
        it checks ``_closed``, and :meth:`close` sets ``_closed`` before it checks the count, so
        either the read sees the reader closed or the close sees the read and leaves the
        release to it.
        """
        layout = self._layout
        in_flight = self._reads_in_flight
        in_flight.append(index)
        try:
            if self._closed:
                raise ReaderClosedError(f"{self._path}: reader is closed")
            if self._missing is not None and self._missing[index]:
                plane = allocate(layout.plane_shape, self._native)
                plane[...] = self._fill
            elif layout.storage != MAPPED:
                plane = self._decode(layout.ifd_offsets.item(index), index)
            elif self._mmap is not None:
                plane = np.ndarray(layout.plane_shape, layout.dtype, self._mmap,
                                   layout.plane_offsets.item(index))
            else:
                plane = self._reads.plane(layout.plane_shape, layout.dtype,
                                          layout.plane_offsets.item(index), allocate)
        finally:
            in_flight.pop()
            if self._closed:
                self._release_when_idle()
        if layout.timestamps is not None and not math.isnan(layout.timestamps[index]):
            plane = Frame(plane, metadata={"timestamp": float(layout.timestamps[index])})
        return plane

    def _decode(self, ifd_offset: int, index: int) -> np.ndarray:
        layout = self._layout
        data = self._decoder.decode(ifd_offset, index)
        # (a page of the stack's size in another layout, e.g. samples not planar, must not be
        # reshaped into the plane: its pixels would be scrambled)
        if data.shape != layout.page_shape or data.dtype.newbyteorder("=") != self._native:
            raise StackReadError(
                self._path, f"page {index} decodes to {data.shape} {data.dtype}, not the "
                f"stack's {layout.page_shape} {self._native} (file changed since it was "
                "opened, or inconsistent pages)")
        if layout.planar:
            data = np.moveaxis(data, 0, -1)
        return np.ascontiguousarray(data, dtype=self._native)

    # --- lifetime -----------------------------------------------------------------------------

    def _renew_locks_after_fork(self) -> None:
        """In a forked child: a new lock, no reads in flight (their threads are not there).

        The file of a reader closed while they were under way is released (their ends would
        have released it). Idempotent.
        """
        self._lock = threading.RLock()
        self._reads_in_flight.clear()
        if self._decoder is not None:
            self._decoder.lock = self._lock
        if self._closed:
            self._release()

    def close(self) -> None:
        """Close the reader (idempotent): later reads raise :class:`ReaderClosedError`.

        The file is released at once, or when the reads that other threads have in flight
        end. Views from ``copy=False`` keep the mapping alive.
        """
        self._closed = True
        self._release_when_idle()

    def _release_when_idle(self) -> None:
        """Release the file unless reads are in flight (the last of them releases it)."""
        with self._lock:
            if not self._reads_in_flight:
                self._release()

    def _release(self) -> None:
        """Release the mapping, close tifffile's handle and the file (idempotent; lock held).

        The mapping is not closed but dropped: the zero-copy views of ``copy=False`` hold it
        (it is their ``base``; numpy keeps no buffer export that would make ``close()``
        refuse), so closing it would leave them pointing at unmapped memory (a segfault). It
        is unmapped, and its own descriptor closed, when the last of them goes.
        """
        self._mmap = None
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __reduce__(self):
        if self._closed:  # (re-opened in another process, it would read again)
            raise ReaderClosedError(f"{self._path}: a closed reader cannot be pickled")
        state = (self.iter_axes, self.bundle_axes, dict(self.default_coords))
        return (_reopen, (type(self), self._abspath, dict(self._options), state))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        status = "closed" if self.closed else self.storage
        return f"<{type(self).__name__} {self._path!r} ({sizes}) {self.pixel_type} {status}>"


def _reopen(cls, path, options, state):
    """Re-open a pickled reader and restore its axis settings."""
    reader = cls(path, **options)
    reader._restore_axis_settings(path, *state)
    return reader
