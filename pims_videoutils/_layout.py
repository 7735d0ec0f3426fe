"""Layout discovery for single-file TIFF stacks (pure: no pims, no resources kept).

:func:`discover` looks at an open :class:`tifffile.TiffFile` and returns a frozen :class:`Layout`:
the axes and sizes of the stack, the sample type with the file's byte order, and for every plane
either its byte offset in the file (``storage == 'mapped'``) or the offset of the IFD whose page
must be decoded (``storage == 'decoded'``), plus the metadata in a normalised dict.

Three routes, chosen from the flags of page 0 (reading page 0 only):

* ImageJ hyperstacks and any tifffile series whose data are one contiguous block
  (``series.dataoffset``), including ImageJ files over 4 GB with a single IFD: plane offsets are
  ``dataoffset + k * plane_nbytes``, open cost independent of the page count.
* plain and tifffile "shaped" files with uncompressed, untiled pages: :mod:`._ifd` walks the IFD
  chain and proves, vectorised, that every page has page 0's layout and where its data lie;
  anything it cannot prove goes to the next route.
* everything else (OME, Micro-Manager, NDTiff, several series, non-uniform pages): tifffile's
  series; each page is mapped on its own when it is uncompressed and contiguous, and the IFDs
  of all pages have the same layout tags and put the data where tifffile does
  (:func:`._ifd.data_offsets`; tifffile reads every page of a series with the first page's
  layout), else decoded and checked page by page.

Axis names: tifffile's axis codes become pims axes ``T->t, Z->z, C->c, Y->y, X->x, S->s``
(samples per pixel, unless the series names them ``C``, ``Z`` or ``T``; ``s`` is only ever a
pixel's samples: an ``S`` outside the plane, separate planes of samples, -> ``c``); unknown
sequences ``Q`` and ``I`` -> ``t`` (``Q`` of length 1 dropped); positions/tiles/scenes
``R``, ``V``, ``P``, ``M`` -> ``p``; any other code, or a name already taken, -> the code in lower
case (then the first free letter). A code that a file's metadata repeats (axes ``'TTYX'``) keeps
its name on its innermost axis, so that the plane's ``Y``, ``X`` stay ``y``, ``x``.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

from . import _ifd
from ._errors import MALFORMED_TIFF_ERRORS, IncompleteDatasetWarning, StackReadError
from ._fork import renew_cached_property_locks, renew_locks_after_fork
from ._metadata import file_metadata, z_step_from_positions
from ._planetimes import read_ndtiff_index, times_and_intended_z
from ._wording import counted

MAPPED = "mapped"
DECODED = "decoded"

_DIRECT = {"T": "t", "Z": "z", "C": "c", "Y": "y", "X": "x", "S": "s"}
_PREFERRED = {"Q": "t", "I": "t", "R": "p", "V": "p", "P": "p", "M": "p", "S": "c"}
_SPARE = "abdefghijklmnopqruvw"
_FLAGS_WITH_SERIES = ("imagej", "ome", "micromanager", "ndtiff", "lsm", "stk", "fluoview",
                      "nih", "mdgel", "sis", "scn", "svs", "ndpi", "philips", "qpi", "bif",
                      "scanimage", "eer", "mmstack", "indica", "avs")


# the first word after the TIFF header of Micro-Manager's stack files and of NDTiff files
_MICROMANAGER_HEADERS = (54773648, 483729)


# an OME Plane element with a TheC, TheZ or TheT that is not an integer
_BAD_OME_PLANE = re.compile(r'<(?:[\w.-]+:)?Plane\s[^>]*?\bThe[CZT]\s*=\s*"(?!\s*\d+\s*")')
# an OME TiffData element with a negative IFD index (tifffile counts it from the last page)
_NEGATIVE_OME_IFD = re.compile(r'<(?:[\w.-]+:)?TiffData\s[^>]*?\bIFD\s*=\s*"\s*(-\s*\d+)')


def check_ome_ifd_indices(xml: str, path: str) -> None:
    """Raise if a TiffData element of the OME-XML ``xml`` gives a negative IFD index.

    tifffile indexes a file's page list with that value, so it counts from the last page:
    the planes would come out rotated, silently.

    Raises
    ------
    StackReadError
        Such a TiffData element exists (the file ``path`` is named).
    """
    negative = _NEGATIVE_OME_IFD.search(xml)
    if negative:
        raise StackReadError(path, "corrupt OME-XML: a TiffData element gives the negative "
                             f"IFD index {negative.group(1)}")


def check_layout_tags_once(page: tifffile.TiffPage, path: str) -> None:
    """Raise if tifffile's ``page`` holds a layout-defining tag twice (a corrupt page).

    tifffile reads such a page with the first value, other readers with the last: its pixels
    are not defined (see :func:`._ifd.duplicated_layout_tag`).

    Raises
    ------
    StackReadError
        The page holds such a tag twice (the file ``path`` is named).
    """
    duplicated = _ifd.duplicated_layout_tag(tag.code for tag in page.tags.values())
    if duplicated is not None:
        raise StackReadError(path, f"page {page.index} holds tag {duplicated} twice (a "
                             "corrupt page)")


def note_missing_positions(tif: tifffile.TiffFile, read: list[int], path: str,
                           metadata: dict[str, Any]) -> None:
    """Count the positions of a Micro-Manager acquisition that are not read.

    ``read``: the positions read (numbers of the acquisition's). ``metadata`` gets
    ``missing_positions``, the count of the others its summary lists; when there are any, an
    :class:`IncompleteDatasetWarning` says which position is read alone. Nothing for other
    files.
    """
    summary = (tif.micromanager_metadata or {}).get("Summary") or {}
    expected = summary.get("Positions")
    if not tif.is_mmstack or isinstance(expected, bool) or not isinstance(expected, int):
        return
    missing = metadata["missing_positions"] = max(0, expected - len(read))
    if missing:
        labels = " and ".join(_position_label(summary, p) for p in read)
        warnings.warn(IncompleteDatasetWarning(
            f"{path}: read as {labels} alone: {missing} of the acquisition's {expected} "
            "positions have no file beside it"), stacklevel=2)


def positions_of_series(tif: tifffile.TiffFile, ser) -> list[int]:
    """Return the Micro-Manager positions that tifffile's series ``ser`` holds.

    All of its ``R`` axis, else the one position of the file's index map: tifffile returns
    the position of the one file it finds of a multi-position acquisition alone ("Returning
    subset", a log line).
    """
    if "R" in ser.axes:
        return list(range(ser.shape[ser.axes.index("R")]))
    index = (tif.micromanager_metadata or {}).get("IndexMap")
    valid = isinstance(index, np.ndarray) and index.ndim == 2 and index.shape[1] == 5
    held = sorted({int(p) for p in index[:, 3]}) if valid else []  # (c, z, t, p, offset)
    return held if len(held) == 1 else [0]


def _position_label(summary: dict[str, Any], position: int) -> str:
    """Return the label a Micro-Manager summary gives a position (``Pos0``...), or its number."""
    stage = summary.get("StagePositions")
    entry = stage[position] if isinstance(stage, list) and 0 <= position < len(stage) else None
    if isinstance(entry, dict):
        label = entry.get("Label")
        if isinstance(label, str) and label:
            return label
    return f"position {position}"


def _renew_locks_after_fork() -> None:
    """In a forked child: new locks for tifffile's cached properties (see ``_fork``)."""
    renew_cached_property_locks(*[module for name, module in list(sys.modules.items())
                                  if name.partition(".")[0] == "tifffile" and module is not None])


renew_locks_after_fork(sys.modules[__name__])


def open_tiff(source, **options: Any) -> tifffile.TiffFile:
    """Open ``tifffile.TiffFile(source, **options)``, minding Micro-Manager's and OME's files.

    A file with Micro-Manager's per-image tag but without its file header (Micro-Manager's
    "separate image files") gets no ``micromanager_metadata``. Otherwise tifffile's search for
    that header logs four failed reads each time such a file is opened. OME-XML with Plane
    entries whose indices are not integers (tifffile >= 2026.11 refuses it) is given to
    tifffile without them (``omexml=``): they place nothing.
    """
    start = source.tell() if hasattr(source, "tell") else None  # (tifffile starts there)
    tif = tifffile.TiffFile(source, **options)
    xml = tif.ome_metadata if tif.is_ome else None
    if xml and _BAD_OME_PLANE.search(xml):
        cleaned = _without_bad_planes(xml)
        if cleaned is not None:
            tif.close()
            if start is not None:
                source.seek(start)
            tif = tifffile.TiffFile(source, **{**options, "omexml": cleaned})
    try:
        if tif.is_micromanager:
            tif.filehandle.seek(8)
            order = "little" if tif.byteorder == "<" else "big"
            if int.from_bytes(tif.filehandle.read(4), order) not in _MICROMANAGER_HEADERS:
                tif.__dict__["micromanager_metadata"] = None  # (the cached property, set first)
    except BaseException:
        tif.close()
        raise
    return tif


def _without_bad_planes(xml: str) -> str | None:
    """Return the OME-XML without its Plane elements whose TheC, TheZ or TheT is not an integer.

    None: the XML is not parsable (left to tifffile).
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for pixels in root.iter():
        for plane in [child for child in pixels if child.tag.rpartition("}")[2] == "Plane"]:
            if not all(plane.attrib.get(f"The{axis}", "0").strip().isdigit() for axis in "CZT"):
                pixels.remove(plane)
    return ET.tostring(root, encoding="unicode")


class _UnsupportedPage(Exception):
    """A page shape this reader does not handle (internal)."""


@dataclass(frozen=True, eq=False)
class Layout:
    """Where the planes of one series of a TIFF file are, and what they are.

    Attributes
    ----------
    path : str
        The file.
    kind : str
        ``'imagej'``, ``'ome'``, ``'shaped'``, ``'uniform'``, ``'ndtiff'``, ``'micromanager'`` or
        another tifffile series kind.
    axes : str
        pims names of the non-plane axes, outermost first (may be empty).
    shape : tuple of int
        Sizes of ``axes``.
    plane_axes : str
        ``'yx'`` or ``'yxs'`` (samples per pixel last); ``'yxc'`` (or ``'yxz'``, ``'yxt'``)
        for samples that the file's metadata names as channels (or depth, time).
    plane_shape : tuple of int
        Sizes of ``plane_axes``.
    dtype : numpy.dtype
        Sample type with the file's byte order.
    storage : str
        ``'mapped'``: ``plane_offsets`` hold the byte offset of every plane;
        ``'decoded'``: ``ifd_offsets`` hold the IFD offset of every plane's page.
    plane_offsets, ifd_offsets : numpy.ndarray or None
        int64 arrays of ``prod(shape)`` entries, planes in C order of ``axes``.
    planar : bool
        Decoded pages come as samples, y, x (planar configuration 2).
    metadata : dict
        Normalised metadata (see :class:`~pims_videoutils.readers.TiffStackND`).
    timestamps : numpy.ndarray or None
        Per-plane time stamps in seconds (NaN where unknown), or None.
    """

    path: str
    kind: str
    axes: str
    shape: tuple[int, ...]
    plane_axes: str
    plane_shape: tuple[int, ...]
    dtype: np.dtype
    storage: str
    plane_offsets: np.ndarray | None
    ifd_offsets: np.ndarray | None
    planar: bool
    metadata: dict[str, Any]
    timestamps: np.ndarray | None

    @property
    def nplanes(self) -> int:
        """Number of planes."""
        return math.prod(self.shape)

    @property
    def page_shape(self) -> tuple[int, ...]:
        """Shape of a decoded page: ``plane_shape``, samples first when ``planar``."""
        if self.planar:
            return (self.plane_shape[-1], *self.plane_shape[:-1])
        return self.plane_shape

    @property
    def plane_nbytes(self) -> int:
        """Bytes of one plane."""
        return math.prod(self.plane_shape) * self.dtype.itemsize


def pims_axes(codes: str) -> str:
    """Map tifffile axis codes to one-letter pims axis names (see the module docstring).

    Parameters
    ----------
    codes : str
        tifffile axes such as ``'TZCYX'`` or ``'QYX'``.

    Returns
    -------
    str
        pims axis names, same length and order.
    """
    names: list[str | None] = [None] * len(codes)
    taken: set[str] = set()
    for i in reversed(range(len(codes))):  # a repeated code: the innermost (plane) axis wins
        name = _DIRECT.get(codes[i])
        if name == "s" and i != len(codes) - 1:  # 's' only for a plane's samples ('YXS')
            name = None
        if name is not None and name not in taken:
            names[i] = name
            taken.add(name)
    for i, code in enumerate(codes):
        if names[i] is None:
            for candidate in (_PREFERRED.get(code), code.lower(), *_SPARE):
                if candidate and candidate not in taken and candidate != "s":
                    names[i] = candidate
                    taken.add(candidate)
                    break
    return "".join(names)  # type: ignore[arg-type]


def discover(tif: tifffile.TiffFile, path: str, series: int = 0, level: int = 0,
             size: int | None = None) -> Layout:
    """Describe where the planes of ``series`` (pyramid ``level``) are in an open TIFF file.

    Parameters
    ----------
    tif : tifffile.TiffFile
        The open file (only read).
    path : str
        Its path, for messages.
    series : int
        Index of the series to describe.
    level : int
        Pyramid level of the series (0: full resolution).
    size : int, optional
        The file's size in bytes (default: what the system says); a larger one describes a
        truncated file as if whole (see :func:`cut_imagej_size`).

    Returns
    -------
    Layout

    Raises
    ------
    StackReadError
        Truncated, corrupt or inconsistent file, unsupported layout, no such series or level.
    """
    try:
        page0 = tif.pages.first
    except IndexError:
        raise StackReadError(path, "no image in the file (invalid first IFD pointer)") from None
    if not math.prod(page0.shape):  # (tifffile >= 2026.11 leaves such a page out of its series)
        raise StackReadError(path, f"the first image has no pixels (shape {page0.shape})")
    flags = set(page0.flags)
    if size is None:
        size = os.fstat(tif.filehandle.fileno()).st_size
    try:
        # compressed pages differ in size, so their IFDs are irregular: nothing to gain
        if (not flags.intersection(_FLAGS_WITH_SERIES) and page0.compression == 1
                and not page0.is_tiled and level == 0):
            layout = _walked_layout(tif, path, series, size)
            if layout is not None:
                return layout
        return _series_layout(tif, path, series, size, level)
    except _UnsupportedPage as exc:
        raise StackReadError(path, str(exc)) from None


# --- route 2: plain and shaped files, proven by the IFD walker --------------------------------


def _walked_layout(tif: tifffile.TiffFile, path: str, series: int, size: int) -> Layout | None:
    page0 = tif.pages.first
    if page0.dtype is None or page0.imagedepth != 1 or page0.is_subifd or page0.subifds:
        return None
    with mmap.mmap(tif.filehandle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if sum(page0.databytecounts) >= _ifd.ADVICE_GAP:
            # IFDs far apart: without this, each page fault on a cold cache reads ahead (up to
            # the device's read_ahead_kb) of pixels around the IFD, and keeps the disk busy
            # after open returns; the walker asks for the IFDs' own pages instead
            buf.madvise(mmap.MADV_RANDOM)
        pages = _ifd.walk(buf, tif.byteorder, tif.is_bigtiff, page0.offset, page0)
    if isinstance(pages, str):
        raise StackReadError(path, pages)
    if pages is None:
        return None
    npages = len(pages.ifd_offsets)
    codes, plane_codes = _page_axes(page0)
    kind = "uniform"
    shape: tuple[int, ...] = (npages,) if npages > 1 else ()
    axes = "I" if npages > 1 else ""
    if page0.is_shaped:
        described, described_axes = _shaped_shape(page0.description)
        if described is not None and math.prod(described) == npages * math.prod(page0.shape):
            kind = "shaped"
            normal = _unit_axes_moved(described_axes or "Q" * len(described), described,
                                      tuple(page0.shape))
            if normal is None:
                return None
            full_axes, full = normal
            shape = full[: len(full) - len(page0.shape)]
            codes, plane_codes = _page_axes(page0, full_axes)
            axes = full_axes[: len(shape)] if full_axes.endswith(codes) else "Q" * len(shape)
            if math.prod(shape) != npages:
                return None
        elif described is None or math.prod(described) != math.prod(page0.shape):
            return None  # several differently shaped series: tifffile knows them
    if series != 0:
        raise StackReadError(path, f"series {series} does not exist (the file holds 1 series)")
    full_shape = (*shape, *page0.shape)
    info = [{"index": 0, "shape": full_shape, "axes": axes + codes, "dtype": str(page0.dtype),
             "kind": kind, "levels": [full_shape]}]
    names = pims_axes(axes + plane_codes)
    plane_names = names[len(axes):]
    if pages.data_offsets is not None and _mappable(page0):
        storage, plane_offsets, ifd_offsets = MAPPED, pages.data_offsets, None
    else:
        storage, plane_offsets, ifd_offsets = DECODED, None, pages.ifd_offsets
    layout = _make_layout(tif, path, kind, names[: len(axes)], shape, plane_names, page0,
                          storage, plane_offsets, ifd_offsets, info)
    _check_extent(layout, size)
    return layout


def _unit_axes_moved(axes: str, shape: tuple[int, ...],
                     page_shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]] | None:
    """Return tifffile's ``axes`` and ``shape`` of a series rearranged to end with the page's.

    Length-1 axes after the page's (an array ``(T, Y, X, 1)``) move before them (the planes'
    order is the same), and unknown axes (``Q``) of length 1 are dropped: they number
    nothing. None: the page is still not the tail.
    """
    moved = ""
    while len(shape) > len(page_shape) and shape[-len(page_shape):] != page_shape:
        if shape[-1] != 1:
            return None
        moved, axes, shape = axes[-1] + moved, axes[:-1], shape[:-1]
    cut = len(shape) - len(page_shape)
    if cut < 0 or shape[cut:] != page_shape:
        return None
    kept = [(a, n) for a, n in zip(axes[:cut] + moved, shape[:cut] + (1,) * len(moved),
                                   strict=True) if not (a == "Q" and n == 1)]
    return ("".join(a for a, _ in kept) + axes[cut:],
            tuple(n for _, n in kept) + shape[cut:])


def _shaped_shape(description: str) -> tuple[tuple[int, ...] | None, str | None]:
    """(shape, tifffile axes or None) from a tifffile "shaped" description."""
    try:
        meta = tifffile.tifffile.shaped_description_metadata(description)
    except ValueError:
        return None, None
    shape = meta.get("shape") if isinstance(meta, dict) else None
    if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) for n in shape):
        return None, None
    axes = meta.get("axes")
    if not (isinstance(axes, str) and len(axes) == len(shape) and axes.isupper()):
        axes = None
    return tuple(shape), axes


# --- route 1 and 3: tifffile series ----------------------------------------------------------


def _series_layout(tif: tifffile.TiffFile, path: str, series: int, size: int,
                   level: int = 0) -> Layout:
    if tif.is_ome and not tif.is_micromanager:
        from ._multifile import companion_file  # not at the top: _multifile imports this module

        companion = companion_file(tif.pages.first.description, path)
        if companion is not None:
            raise StackReadError(
                path, "is a BinaryOnly OME-TIFF: its axes and metadata are in "
                f"{os.path.basename(companion)}; open it with TiffSequenceND (any file of the "
                "dataset, or its folder)")
    if tif.is_ome:
        from ._multifile import check_ome_plane_count  # (_multifile imports this module)

        check_ome_plane_count(tif.ome_metadata or "", path)
    try:
        all_series = list(tif.series)  # (tifffile >= 2026.11: a lazy sequence)
    except MALFORMED_TIFF_ERRORS as exc:
        raise StackReadError(path, f"cannot parse the TIFF structure ({exc})") from exc
    info = series_info(all_series)
    if not 0 <= series < len(all_series):
        raise StackReadError(
            path, f"series {series} does not exist (the file holds {len(all_series)} series: "
            + "; ".join(f"{d['index']}: {d['axes']} {d['shape']}" for d in info) + ")")
    ser = all_series[series]
    if ser.kind == "ome":
        check_ome_ifd_indices(tif.ome_metadata or "", path)
    if ser.kind == "ome" and _ome_dataset_of_several_files(tif, all_series, path):
        raise StackReadError(path, "is one file of a multi-file OME-TIFF dataset (its OME-XML "
                             "puts planes in other files); open it with TiffSequenceND (any "
                             "file of the dataset, or its folder)")
    if not 0 <= level < len(ser.levels):
        raise StackReadError(
            path, f"level {level} does not exist (series {series} has {len(ser.levels)} "
            "pyramid level" + ("s: " if len(ser.levels) > 1 else ": ")
            + "; ".join(str(d) for d in info[series]["levels"]) + ")")
    ser = ser.levels[level]
    key = ser.keyframe
    if key is None or key.dtype is None:
        raise StackReadError(path, "unsupported sample format")
    check_layout_tags_once(key, path)
    normal = _unit_axes_moved(ser.axes, tuple(ser.shape), tuple(key.shape))
    series_axes, series_shape = normal or (ser.axes, tuple(ser.shape))
    codes, plane_codes = _page_axes(key, series_axes)
    if normal is None or not series_axes.endswith(codes):
        raise StackReadError(path, f"unsupported page layout {key.axes} in series {ser.axes}")
    outer_codes = series_axes[: len(series_axes) - len(codes)]
    shape = series_shape[: len(outer_codes)]
    names = pims_axes(outer_codes + plane_codes)
    nplanes = math.prod(shape)
    plane_nbytes = math.prod(key.shape) * key.dtype.itemsize
    storage, plane_offsets, ifd_offsets = DECODED, None, None
    page_times = page_z = None
    # (read once, for the channel names and the planes' times)
    ndtiff_index = read_ndtiff_index(tif.filehandle.dirname) if tif.is_ndtiff else None
    mappable = _mappable(key) and key.parent is tif
    # tifffile gives the pages of a series the key page's layout, whatever their own tags say,
    # and may make a page object of the first IFD alone: planes are mapped only where every
    # page's IFD was seen to agree, or where one IFD describes all planes by the file's
    # convention (ImageJ hyperstacks, truncated files)
    # (tifffile has no public list of them; without ``_pages`` in a later tifffile, every page
    # is made and checked below, or an ImageJ file mapped by its convention)
    made = [page for page in getattr(ser, "_pages", ()) if page is not None]
    by_convention = ser.is_truncated or ser.kind == "imagej"
    if mappable and ser.dataoffset is not None and (by_convention or len(made) == nplanes):
        # (before the offsets are made: a corrupt size may claim more planes than memory holds)
        _check_data_end(path, ser.dataoffset + nplanes * plane_nbytes, size)
        plane_offsets = ser.dataoffset + plane_nbytes * np.arange(nplanes, dtype=np.int64)
        if len(made) == nplanes and not data_as_ifds_say(tif, key, made, plane_offsets,
                                                          plane_nbytes):
            plane_offsets = None
    if plane_offsets is not None:
        storage = MAPPED
        if tif.is_micromanager and len(made) == nplanes:  # (e.g. an image of an acquisition)
            page_times, page_z = times_and_intended_z(made, ndtiff_index)
    else:
        if level and len(made) != len(ser):  # (tifffile cannot list such a level's pages)
            pages = _level_pages(tif, path, all_series[series], level, key)
        else:
            pages = list(ser.pages)
        if any(page is not None and page.parent is not tif for page in pages):
            raise StackReadError(path, f"series {series} spans several files (multi-file "
                                 "OME-TIFF or Micro-Manager dataset); open it with "
                                 "TiffSequenceND (any file of the dataset, or its folder)")
        _check_chain_end(tif, path)
        if len(pages) != nplanes:
            raise StackReadError(
                path, f"series {series} has {len(pages)} pages for {nplanes} planes")
        missing = sum(page is None for page in pages)
        if missing:  # (tifffile reads them as zeros)
            raise StackReadError(
                path, f"{missing} of the {nplanes} planes of series {series} are in no IFD of "
                "the file (its metadata puts them in IFDs it lacks, or nowhere: a truncated "
                "or inconsistent file); TiffSequenceND(path, fill_missing=0) reads the others")
        plane_offsets = _page_data_offsets(pages, plane_nbytes) if mappable else None
        if plane_offsets is not None and not data_as_ifds_say(tif, key, pages, plane_offsets,
                                                               plane_nbytes):
            plane_offsets = None
        if plane_offsets is not None:
            storage = MAPPED
        else:
            ifd_offsets = np.array([page.offset for page in pages], np.int64)
        if tif.is_micromanager:
            page_times, page_z = times_and_intended_z(pages, ndtiff_index)
    # (Micro-Manager's ImageJ header counts the images of one position of the whole dataset)
    if tif.pages.first.is_imagej and series == 0 and ser.kind != "mmstack":
        _check_imagej_count(tif, key, nplanes, size, path)
    layout = _make_layout(tif, path, ser.kind, names[: len(outer_codes)], shape,
                          names[len(outer_codes):], key, storage, plane_offsets, ifd_offsets,
                          info, series, page_times, page_z, ndtiff_index,
                          all_series[series].keyframe)
    _check_extent(layout, size)
    if ser.kind == "mmstack":
        note_missing_positions(tif, positions_of_series(tif, ser), path, layout.metadata)
    if level:
        _scale_pixel_sizes(layout.metadata, all_series[series].keyframe, key, level)
    return layout


def series_info(all_series: list) -> list[dict[str, Any]]:
    """Describe tifffile's series for ``metadata['series']``.

    Each as a dict: ``index``, ``shape``, ``axes`` (tifffile's codes), ``dtype``, ``kind`` and
    the shapes of its pyramid ``levels`` (the series itself first).
    """
    return [{"index": i, "shape": tuple(s.shape), "axes": s.axes, "dtype": str(s.dtype),
             "kind": s.kind, "levels": [tuple(level.shape) for level in s.levels]}
            for i, s in enumerate(all_series)]


def _level_pages(tif: tifffile.TiffFile, path: str, full, level: int, key) -> list:
    """Make the pages of pyramid ``level`` of the series ``full``: the SubIFDs of its pages.

    tifffile's series of such a level holds its first page alone, and iterating it gives the
    pages of level 0 (its data are read as one block after the first page's, unchecked).
    """
    pages = []
    for index, page in enumerate(full.pages):
        if page is None or not page.subifds or len(page.subifds) < level:
            raise StackReadError(path, f"page {index} of the series has no "
                                 f"SubIFD for pyramid level {level}")
        pages.append(tifffile.TiffFrame(tif, index, offset=page.subifds[level - 1],
                                        keyframe=key))
    return pages


def data_as_ifds_say(tif: tifffile.TiffFile, key, pages: list, plane_offsets: np.ndarray,
                     plane_nbytes: int) -> bool:
    """Tell whether the IFDs of ``pages`` have the key's layout and data at ``plane_offsets``.

    Checked with :func:`._ifd.data_offsets`. tifffile reads the pages of a series with the
    key page's layout, whatever their own tags say, and places the data of Micro-Manager's
    images 162 bytes after their IFDs without reading them. Frames made from an index
    (NDTiff's, IFD offset 0) have no IFD to ask: tifffile checked the index's shape and type
    against the key page. ``tif`` is the file of ``key`` and ``pages``; it is opened again by
    its path when tifffile has closed it (the other files of a multi-file dataset).
    """
    with_ifd = [k for k, page in enumerate(pages) if page.offset]
    if all(pages[k] is key for k in with_ifd):  # (tifffile parsed the key page itself)
        return True
    ifd_offsets = np.array([key.offset, *(pages[k].offset for k in with_ifd)], np.int64)
    handle = tif.filehandle
    with (open(handle.path, "rb") if handle.closed else contextlib.nullcontext(handle)) as file,\
            mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        said = _ifd.data_offsets(buf, tif.byteorder, tif.is_bigtiff, ifd_offsets, plane_nbytes)
    return said is not None and np.array_equal(said[1:], plane_offsets[with_ifd])


def _ome_dataset_of_several_files(tif: tifffile.TiffFile, all_series: list, path: str) -> bool:
    """Tell whether the file's OME series put planes in other files (a multi-file dataset).

    Pages in another file say so; so does a plane missing (a page None: tifffile could not
    read its file) where the OME-XML names a file other than this one, with another UUID.
    """
    pages = [page for s in all_series for page in s.pages]
    if any(page is not None and page.parent is not tif for page in pages):
        return True
    if all(page is not None for page in pages):
        return False
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return False
    own_uuid = (root.attrib.get("UUID") or "").strip()
    own_name = os.path.basename(path).lower()
    return any((uuid.text or "").strip() != own_uuid
               and uuid.attrib.get("FileName", "").lower() != own_name
               for uuid in root.iter() if uuid.tag.rpartition("}")[2] == "UUID")


def cut_imagej_size(tif: tifffile.TiffFile) -> int | None:
    """Return the size an ImageJ file cut in its pixel data had whole, or None.

    ImageJ writes the IFD of the first image, all the pixels, then the other IFDs: cut in its
    pixels, such a file keeps one IFD and a header that counts the images. None: not such a
    file, or a header whose images (over 2**27) no file could hold.
    """
    ij = tif.imagej_metadata or {}
    if not tif.is_imagej or len(tif.pages) != 1:
        return None
    page = tif.pages.first
    counts = [ij.get(name, 1) for name in ("images", "frames", "slices", "channels")]
    if not all(isinstance(n, int) and n >= 1 for n in counts):
        return None
    images, frames, slices, channels = counts
    # the planes as tifffile counts them (channels may be a page's samples)
    samples_are_channels = page.shaped[0] == channels or (
        images == frames * slices and page.shaped[4] == channels)
    planes = frames * slices * (1 if samples_are_channels else channels)
    if planes < 2 or planes > 2**27 or page.compression != 1 or not page.dataoffsets:
        return None
    whole = page.dataoffsets[0] + planes * page.nbytes
    return whole if whole > os.fstat(tif.filehandle.fileno()).st_size else None


def _check_imagej_count(tif: tifffile.TiffFile, key, nplanes: int, size: int,
                        path: str) -> None:
    """Raise StackReadError if an ImageJ header promises more planes than the series holds.

    Its count is ``images``, unless the planes are those of the channels x slices x frames it
    gives (which tifffile reads, deeming ``images`` unreliable; channels that are the samples
    of ``key`` not counted). A file holding more planes than ``images`` is read as tifffile
    reads it. The message says what the file lacks: IFDs, or (a file with one IFD, as ImageJ
    writes files over 4 GB, all images after the first's start) bytes; ``size``: the file's.
    """
    ij = tif.imagej_metadata or {}
    declared = ij.get("images")
    if not isinstance(declared, int) or declared <= nplanes:
        return
    names = ("frames", "slices", "channels")
    dims = [ij.get(name, 1) for name in names]
    if any(name in ij for name in names) and all(isinstance(n, int) for n in dims):
        counts = {math.prod(dims)}
        if dims[2] == key.samplesperpixel:
            counts.add(dims[0] * dims[1])
        if nplanes in counts:
            return
    npages = len(tif.pages)
    if npages == 1:
        room = max(0, size - key.dataoffsets[0]) // (math.prod(key.shape) * key.dtype.itemsize)
        lacks = ("has a single IFD (page), and from its image's start room for "
                 f"{counted(room, 'image')}")
    elif npages < declared:
        lacks = f"has only {npages} IFDs (pages)"
    else:
        lacks = f"has {npages} IFDs (pages), of which tifffile's series holds {nplanes}"
    raise StackReadError(path, f"ImageJ header declares {declared} images but the file "
                         f"{lacks} (truncated or corrupt file)")


def _check_chain_end(tif: tifffile.TiffFile, path: str) -> None:
    """Raise StackReadError unless the IFD chain that tifffile read ends with a null pointer.

    tifffile ends the chain quietly (with a log message) at a loop, at a pointer outside the
    file or at an unreadable IFD: its series then lack pages (or fill them with zeros). A
    pointer past the end of the file is reported as such: most often a truncated file.
    """
    last = tif.pages[len(tif.pages) - 1]
    fd = tif.filehandle.fileno()
    pointer = _ifd.next_ifd(lambda offset, n: os.pread(fd, n, offset), tif.byteorder,
                            tif.is_bigtiff, last.offset)
    if pointer == 0:
        return
    where = f"the IFD of page {len(tif.pages) - 1} (byte {last.offset})"
    size = os.fstat(fd).st_size
    if pointer is not None and pointer >= size:
        # (a Micro-Manager acquisition that stopped while writing: its series lists the
        # planes the file lacks, which the dataset reader can fill)
        remedy = ("; TiffSequenceND(path, fill_missing=0) reads the planes it holds"
                  if tif.is_micromanager else "")
        raise StackReadError(
            path, f"IFD chain runs past the end of the file: {where} points to byte "
            f"{pointer}, beyond its {size} bytes (a truncated file, or a corrupt pointer)"
            f"{remedy}")
    target = "nowhere readable" if pointer is None else f"byte {pointer}"
    raise StackReadError(
        path, f"corrupt IFD chain: {where} points to {target}: a loop or a broken IFD")


def _scale_pixel_sizes(meta: dict[str, Any], full, page, level: int) -> None:
    """Pixel sizes of a pyramid level's ``page``: those of ``full`` times the downsampling."""
    meta["level"] = level
    if meta["pixel_size_y"] is not None:
        meta["pixel_size_y"] *= full.imagelength / page.imagelength
    if meta["pixel_size_x"] is not None:
        meta["pixel_size_x"] *= full.imagewidth / page.imagewidth


def _page_data_offsets(pages: list, plane_nbytes: int) -> np.ndarray | None:
    """Return the data offset of each page if every page is one contiguous block, else None."""
    offsets = np.empty(len(pages), np.int64)
    for k, page in enumerate(pages):
        starts, counts = page.dataoffsets, page.databytecounts
        if sum(counts) != plane_nbytes or any(
            starts[i] + counts[i] != starts[i + 1] for i in range(len(starts) - 1)
        ):
            return None
        offsets[k] = starts[0]
    return offsets


# --- shared helpers -----------------------------------------------------------------------------


def _page_axes(page: tifffile.TiffPage, series_axes: str = "") -> tuple[str, str]:
    """(tifffile axes of the page as squeezed by tifffile, the same in plane order YX[S]).

    Samples that ``series_axes`` (the axes of the series or of a shaped description) name as
    channels, depth or time (``C``, ``Z``, ``T``: data that tifffile wrote as RGB because an
    axis had 3 or 4 elements) keep that name instead of ``S``.
    """
    codes = page.axes
    if codes == "YX":
        return codes, "YX"
    if page.imagedepth > 1:
        raise _UnsupportedPage(
            f"volumetric pages (ImageDepth {page.imagedepth}, page axes {codes!r}) are not "
            "supported; tifffile.imread reads them")
    if codes not in ("YXS", "SYX"):
        raise _UnsupportedPage(f"unsupported page axes {codes!r}")
    tail = series_axes[-3:]
    sample = codes.index("S")
    if len(tail) == 3 and tail[sample] in "CZT" and tail.replace(tail[sample], "S") == codes:
        return tail, "YX" + tail[sample]
    return codes, "YXS"


def _mappable(page: tifffile.TiffPage) -> bool:
    """Tell whether a page's data are raw samples that can be read straight from the file."""
    return (
        page.compression == 1
        and not page.is_tiled
        and page.fillorder == 1
        and page.predictor == 1
        and (page.planarconfig == 1 or page.samplesperpixel == 1)
        and page.dtype is not None
        and page.dtype.kind in "uifc"
        and page.bitspersample == page.dtype.itemsize * 8
        and page.imagedepth == 1
    )


def _check_extent(layout: Layout, size: int) -> None:
    offsets = layout.plane_offsets
    if offsets is None:
        offsets = layout.ifd_offsets
        if offsets is not None and offsets.size and offsets.max() >= size:
            raise StackReadError(layout.path, "an IFD lies beyond the end of the file")
        return
    if offsets.size:
        _check_data_end(layout.path, int(offsets.max()) + layout.plane_nbytes, size)


def _check_data_end(path: str, end: int, size: int) -> None:
    """Raise StackReadError if the planes, which end at byte ``end``, do not fit the file."""
    if end > size:
        raise StackReadError(
            path, f"file is truncated: planes need {end} bytes but the file has {size}")


def _make_layout(tif, path, kind, axes, shape, plane_axes, key, storage, plane_offsets,
                 ifd_offsets, info, series=0, page_times=None, page_z=None,
                 ndtiff_index=None, resolution_page=None) -> Layout:
    plane_shape = tuple(key.shape)
    if not math.prod(plane_shape):
        raise StackReadError(path, f"the image has no pixels (shape {plane_shape})")
    planar = key.axes == "SYX"
    if planar:
        plane_shape = (*plane_shape[1:], plane_shape[0])
    dtype = key.dtype.newbyteorder(tif.byteorder)
    metadata, timestamps = file_metadata(tif, key, series, axes, shape, ndtiff_index,
                                         resolution_page)
    if timestamps is None:
        timestamps = page_times
    z_step_from_positions(metadata, page_z, axes.lower(), shape)
    metadata["kind"] = kind
    metadata["storage"] = storage
    metadata["series"] = info
    return Layout(
        path=path, kind=kind, axes=axes.lower(), shape=tuple(int(n) for n in shape),
        plane_axes=plane_axes.lower(), plane_shape=plane_shape, dtype=dtype, storage=storage,
        plane_offsets=plane_offsets, ifd_offsets=ifd_offsets, planar=planar,
        metadata=metadata, timestamps=timestamps)
