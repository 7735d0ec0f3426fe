"""Datasets whose planes live in several TIFF files: multi-file OME-TIFF, NDTiff, Micro-Manager.

:func:`find_dataset` asks tifffile for the series of one file of the dataset. When a series
spans several files (OME-XML ``TiffData``/``UUID FileName`` references, an ``NDTiff.index``,
Micro-Manager ``*_MMStack_Pos*.ome.tif`` stacks) or the file holds several positions with one
shape (OME images), it returns a frozen :class:`PlaneTable`: for every plane, which file and
which byte offset. tifffile reads and checks every referenced IFD (or index entry) once, at
open.

OME-TIFF files whose OME-XML only says ``<BinaryOnly MetadataFile="..."/>`` keep their
metadata in another file: a ``.companion.ome`` XML file, or the dataset's master OME-TIFF.
:func:`companion_file` finds it; :func:`find_dataset` then hands its XML to tifffile
(``TiffFile(omexml=...)``) and always returns a table, even for one file (a reader of the file
alone would not know its axes).

Uncompressed, contiguous planes are read with one ``os.preadv`` each (small planes of a
forward pass: one per 256 KiB, see :mod:`._pread`); other planes
(compressed, tiled) are decoded one page at a time by tifffile from their IFD offset. Planar
RGB pages raise a clear :class:`StackReadError`.
"""

from __future__ import annotations

import errno
import math
import mmap
import os
import re
import stat
import struct
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from xml.sax.saxutils import quoteattr, unescape

import numpy as np
import tifffile

from ._decode import PageDecoder
from ._errors import MALFORMED_TIFF_ERRORS, StackNotFoundError, StackReadError
from ._filenames import absolute_path
from ._fork import renew_locks_after_fork
from ._layout import (
    check_layout_tags_once,
    check_ome_ifd_indices,
    data_as_ifds_say,
    note_missing_positions,
    open_tiff,
    pims_axes,
    positions_of_series,
    series_info,
)
from ._metadata import file_metadata, ome_plane_times, z_step_from_positions
from ._planetimes import NDTIFF_INDEX, read_ndtiff_index, times_and_intended_z
from ._pread import PlaneReads, PositionalFile

__all__ = [
    "NDTIFF_INDEX",
    "DatasetFile",
    "FileIdentity",
    "PlaneTable",
    "companion_file",
    "continued_file",
    "files_indexed_by",
    "files_named_by",
    "find_dataset",
    "stack_positions",
]

MAPPED, DECODED = "mapped", "decoded"
_DATASET_FLAGS = ("ome", "ndtiff", "mmstack", "micromanager")
#: a Micro-Manager continuation file: ``{base}_{part}.ome.tif`` continues ``{base}.ome.tif``
#: (positions with Micro-Manager's default labels ``Pos0``...: other labels may end in digits)
_MM_PART = re.compile(
    r"^(?P<base>.+_MMStack(?:_Pos\d+)?)_(?P<part>\d+)(?P<ext>(?:\.ome)?\.tiff?)$"
)
#: an NDTiff continuation file: ``{base}_{part}.tif`` continues ``{base}.tif``
_NDTIFF_PART = re.compile(r"^(?P<base>.+_NDTiffStack)_(?P<part>\d+)(?P<ext>\.tiff?)$")
_OME_START = re.compile(r"<(?:[\w.-]+:)?OME\b[^>]*>")
_IMAGE_START = re.compile(r"<(?:[\w.-]+:)?Image[\s/>]")
_UUID_ATTRIBUTE = re.compile(r"""\sUUID\s*=\s*(?:"([^"]*)"|'([^']*)')""")
#: a ``<UUID FileName="...">urn:uuid:...</UUID>`` element: its attributes and its text
_UUID_ELEMENT = re.compile(r"<(?:[\w.-]+:)?UUID\b([^>]*)>([^<]*)<")
_FILE_NAME = re.compile(r"""\sFileName\s*=\s*(?:"([^"]*)"|'([^']*)')""")
# an OME Pixels element (not self-closing) and its content, and one of its SizeZ/C/T
_PIXELS = re.compile(r"<(?:[\w.-]+:)?Pixels\b([^>]*)(?<!/)>(.*?)</(?:[\w.-]+:)?Pixels\s*>",
                     re.DOTALL)
_PLANE_SIZE = re.compile(r"""\sSize([ZCT])\s*=\s*["']\s*(\d+)\s*["']""")
#: Bytes of the smallest IFD (a tag count, one tag, a next pointer): a plane needs one
_MIN_IFD_BYTES = 18
#: Planes an OME-XML may claim before its files' sizes are looked at
_PLANES_UNCHECKED = 100_000


@dataclass(frozen=True, eq=False)
class PlaneTable:
    """Where every plane of a multi-file dataset is.

    Attributes
    ----------
    files : tuple of str
        The files holding planes.
    dataset_files : tuple of str
        Every file holding planes of any series of the dataset (more than ``files`` when the
        series differ in shape, so that only the chosen one is read).
    kind : str
        tifffile's series kind (``'ome'``, ``'ndtiff'``, ``'mmstack'``...).
    axes : str
        pims names of the non-plane axes, outermost first (``p`` first for several positions).
    shape : tuple of int
        Sizes of ``axes``.
    plane_axes : str
        ``'yx'`` or ``'yxs'``.
    plane_shape : tuple of int
        Sizes of ``plane_axes``.
    dtype : numpy.dtype
        Sample type with the files' byte order.
    storage : str
        ``'mapped'``: every plane is uncompressed and contiguous, ``offsets`` are the offsets
        of its pixels; ``'decoded'``: ``offsets`` are the offsets of the planes' IFDs, decoded
        by tifffile.
    file_index : numpy.ndarray
        int32 array of ``shape``: index into ``files``, -1 for a plane no file holds.
    offsets : numpy.ndarray
        int64 array of ``shape``: byte offset of each plane's pixels or IFD in its file.
    timestamps : numpy.ndarray or None
        float64 array of ``shape``: seconds since the acquisition start of each plane (NaN
        where unknown; the OME ``Plane`` ``DeltaT``, or Micro-Manager's per-image times), or
        None.
    unreadable : dict of str to str
        Files the OME-XML puts planes in that exist but cannot be read, or hold none of those
        planes (their planes are missing), each with the reason.
    identities : tuple of FileIdentity
        Each file of ``files`` as it was when its planes were indexed (empty: not checked);
        see :meth:`DatasetFile.__init__`.
    metadata : dict
        ``pixel_size_x``, ``pixel_size_y``, ``z_step``, ``unit``, ``frame_interval``,
        ``channel_names``, ``software``, ``kind``, ``storage``, ``series`` (None if unknown),
        ``ome_companion`` (the file holding the OME-XML of a BinaryOnly dataset, else None),
        plus ``ome_xml``, ``micromanager_metadata``, ``imagej_metadata`` where present.
    """

    files: tuple[str, ...]
    dataset_files: tuple[str, ...]
    kind: str
    axes: str
    shape: tuple[int, ...]
    plane_axes: str
    plane_shape: tuple[int, ...]
    dtype: np.dtype
    storage: str
    file_index: np.ndarray
    offsets: np.ndarray
    metadata: dict[str, Any]
    timestamps: np.ndarray | None = None
    unreadable: dict[str, str] = field(default_factory=dict)
    identities: tuple[FileIdentity, ...] = ()


@dataclass(frozen=True)
class FileIdentity:
    """Which file a path named, and its size and modification time, when it was indexed."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileIdentity:
        """Return the identity of a file from its ``os.stat``/``os.fstat`` result."""
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)

    def change(self, now: FileIdentity) -> str | None:
        """Describe how the file ``now`` is not this one any more (None: it still is).

        A file of the same size and modification time still is (even if its inode number
        differs: some network file systems make them up), and so is the same file (inode)
        that only grew (an acquisition still writing to it: the planes indexed before lie
        where they were).
        """
        if (now.size, now.mtime_ns) == (self.size, self.mtime_ns):
            return None
        if (now.device, now.inode) != (self.device, self.inode):
            return "another file now has its name"
        if now.size < self.size:
            return f"{self.size - now.size} bytes shorter"
        if now.size == self.size:
            return "rewritten"
        return None


def find_dataset(path: str, series: int = 0) -> PlaneTable | None:
    """Describe the dataset ``path`` belongs to, if its planes span several files or positions.

    Parameters
    ----------
    path : str
        One TIFF file of the dataset.
    series : int, default 0
        The series used when the file's series differ in shape (else all are positions).

    Returns
    -------
    PlaneTable or None
        None for a file that is not OME, NDTiff or Micro-Manager, or whose series lies in this
        one file, complete, and has no sibling positions (read it as a plain stack); never
        None for a BinaryOnly OME-TIFF whose companion metadata exists.

    Raises
    ------
    StackNotFoundError
        The companion metadata file of a BinaryOnly OME-TIFF does not exist, an earlier
        part of a Micro-Manager position continued in ``path`` is missing, or a file named
        by the dataset's index (NDTiff) is missing.
    StackReadError
        The dataset cannot be read: a corrupt file or companion, no such series, compressed or
        non-contiguous planes, planes that disagree with their series.
    """
    try:
        with open_tiff(path) as tif:
            flags = set(tif.flags)
            if not flags & set(_DATASET_FLAGS):
                return None
            companion = None
            if "ome" in flags and not flags & {"mmstack", "ndtiff"}:
                companion = companion_file(tif.pages.first.description, path)
            if companion is None:
                if "mmstack" in flags:
                    _check_mm_parts(path)
                if "ndtiff" in flags:
                    _check_ndtiff_index(path)
                return _plane_table(tif, path, series)
            description = tif.pages.first.description
        xml = _companion_xml(companion, path)
        seen = _as_seen_from(xml, description, companion)
        with open_tiff(path, omexml=seen) as tif:
            table = _plane_table(tif, path, series, companion)
        table.metadata["ome_xml"] = xml
        return table
    except StackReadError:  # also StackNotFoundError, a FileNotFoundError: already explained
        raise
    except FileNotFoundError as exc:  # a file the dataset's index names (NDTiff.index)
        raise StackNotFoundError(
            exc.filename or path,
            f"no such file, but the dataset of {os.path.basename(path)} names it",
        ) from None
    except MALFORMED_TIFF_ERRORS as exc:
        raise StackReadError(path, f"cannot read the dataset ({exc})") from None


def _check_ndtiff_index(path: str) -> None:
    """Raise StackReadError if the ``NDTiff.index`` beside ``path`` is empty.

    tifffile then fails with a message about an empty array reduction, naming no index.
    """
    index = os.path.join(os.path.dirname(path), NDTIFF_INDEX)
    try:
        empty = os.path.getsize(index) == 0
    except OSError:  # no index: tifffile reads the file's own pages
        return
    if empty:
        raise StackReadError(index, "the NDTiff index is empty (an acquisition that wrote "
                                    "no image, or a copy cut short)")


def stack_positions(tables: Sequence[PlaneTable]) -> PlaneTable:
    """Join the datasets of several position folders into one, the positions as a new ``p``.

    Parameters
    ----------
    tables : sequence of PlaneTable
        One dataset per position, in the order of the positions.

    Returns
    -------
    PlaneTable
        Their files one position after the other, the metadata of the first.

    Raises
    ------
    StackReadError
        The datasets differ in axes, shape, pixel type or storage (naming the first that
        differs), or each already has positions.
    """
    first = tables[0]

    def layout(table: PlaneTable) -> str:
        axes = ", ".join(f"{a}={n}" for a, n in zip(table.axes, table.shape, strict=True))
        plane = "x".join(map(str, table.plane_shape))
        return f"{axes}, planes {plane} {table.dtype.str} {table.storage}"

    for table in tables[1:]:
        if layout(table) != layout(first):
            raise StackReadError(
                table.files[0],
                f"its dataset ({layout(table)}) differs from that of {first.files[0]} "
                f"({layout(first)}); open the position folders one by one",
            )
    if "p" in first.axes:
        raise StackReadError(
            first.files[0], "the dataset of each position folder has positions itself; open "
            "the position folders one by one")
    starts = np.cumsum([0] + [len(table.files) for table in tables[:-1]])
    file_index = np.stack([
        np.where(table.file_index < 0, -1, table.file_index + start)
        for table, start in zip(tables, starts, strict=True)
    ]).astype(np.int32)
    timestamps = None
    if any(table.timestamps is not None for table in tables):
        timestamps = np.stack([
            np.full(first.shape, np.nan) if table.timestamps is None else table.timestamps
            for table in tables
        ])
    identities = ()
    if all(table.identities for table in tables):
        identities = tuple(identity for table in tables for identity in table.identities)
    return replace(
        first,
        files=tuple(name for table in tables for name in table.files),
        dataset_files=tuple(name for table in tables for name in table.dataset_files),
        axes="p" + first.axes,
        shape=(len(tables), *first.shape),
        file_index=file_index,
        offsets=np.stack([table.offsets for table in tables]),
        metadata=dict(first.metadata),
        timestamps=timestamps,
        unreadable={k: v for table in tables for k, v in table.unreadable.items()},
        identities=identities,
    )


def companion_file(description: str, path: str) -> str | None:
    """Return the metadata file a BinaryOnly OME-XML description points to, or None.

    Parameters
    ----------
    description : str
        The ImageDescription of the file's first page.
    path : str
        The TIFF file (``MetadataFile`` is relative to its folder).

    Returns
    -------
    str or None
        The path of the ``MetadataFile`` (a ``.companion.ome`` XML file or a master OME-TIFF),
        or None when the description is not a BinaryOnly OME-XML document.
    """
    if "BinaryOnly" not in description:
        return None
    try:
        root = ET.fromstring(description)
    except ET.ParseError:
        return None
    for element in root:
        if element.tag.endswith("BinaryOnly") and element.attrib.get("MetadataFile"):
            folder = os.path.dirname(absolute_path(path))
            return os.path.join(folder, element.attrib["MetadataFile"])
    return None


def files_named_by(companion: str) -> list[str]:
    """List the existing files whose planes an OME companion file (``.companion.ome``) describes.

    Raises
    ------
    StackReadError
        The file is not OME-XML with images.
    StackNotFoundError
        None of the files it names exists.
    """
    xml = _companion_xml(companion, companion)
    named = sorted(name for name in _named_files(xml, companion) if os.path.isfile(name))
    if not named:
        raise StackNotFoundError(companion, "none of the TIFF files its OME-XML names exists")
    return named


def files_indexed_by(index: str) -> list[str]:
    """List the existing files whose planes an NDTiff dataset's ``NDTiff.index`` locates.

    Only the file name of each entry is read (an entry: a length and JSON axes, a length and
    the file name, then 32 bytes); a cut-off last entry is ignored, as tifffile does. An
    index that names no file (empty) gives an empty list.

    Raises
    ------
    StackReadError
        The index cannot be read.
    StackNotFoundError
        None of the files it names exists.
    """
    names: set[bytes] = set()
    try:
        with open(index, "rb") as file, (
            mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            if os.fstat(file.fileno()).st_size else memoryview(b"")
        ) as data:
            position, end = 0, len(data)
            while position + 4 <= end:
                position += 4 + struct.unpack_from("<I", data, position)[0]  # the axes
                if position + 4 > end:
                    break
                length = struct.unpack_from("<I", data, position)[0]
                if position + 4 + length + 32 > end:
                    break
                names.add(bytes(data[position + 4 : position + 4 + length]))
                position += 4 + length + 32
    except OSError as exc:
        raise StackReadError(index, f"cannot read the NDTiff index ({exc.strerror})") from None
    if not names:
        return []
    folder = os.path.dirname(absolute_path(index))
    named = sorted(os.path.join(folder, name.decode("utf-8", "replace")) for name in names)
    existing = [name for name in named if os.path.isfile(name)]
    if not existing:
        raise StackNotFoundError(
            named[0], f"no such file, nor any other file the NDTiff index {index} names")
    return existing


def _companion_xml(companion: str, path: str) -> str:
    """Read the OME-XML of a BinaryOnly dataset from its companion file or master OME-TIFF."""
    name = os.path.basename(path)
    if not os.path.isfile(companion):
        raise StackNotFoundError(
            companion, f"the OME metadata file of {name} (BinaryOnly OME-TIFF) does not exist"
        )
    try:
        with open(companion, "rb") as file:
            start = file.read(4)
        if start in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            with tifffile.TiffFile(companion) as master:
                xml = master.pages.first.description
        else:
            with open(companion, encoding="utf-8") as file:
                xml = file.read()
        root = ET.fromstring(xml)
    except (OSError, UnicodeDecodeError, ET.ParseError, *MALFORMED_TIFF_ERRORS) as exc:
        raise StackReadError(
            companion, f"cannot read the OME metadata of {name} from it ({exc})"
        ) from None
    if not root.tag.endswith("OME") or not any(e.tag.endswith("Image") for e in root):
        raise StackReadError(companion, f"holds no OME images, so cannot describe {name}")
    return xml


def _as_seen_from(xml: str, description: str, companion: str) -> str:
    """Give the root of the dataset's OME-XML the UUID of this file's own OME root (or none).

    tifffile takes the root's UUID for the file it opens: the companion's (or the master
    file's) UUID would map the planes of the master file to this one.
    """
    own = ET.fromstring(description).attrib.get("UUID")
    start = _OME_START.search(xml)
    if start is None:
        raise StackReadError(companion, "no <OME> start tag found in its OME-XML")
    tag = _UUID_ATTRIBUTE.sub("", start.group())
    if own:
        tag = f"{tag[:-1]} UUID={quoteattr(own)}>"
    return xml[: start.start()] + tag + xml[start.end() :]


def continued_file(path: str) -> str | None:
    """Return the first file of what ``path`` continues, or None.

    Micro-Manager splits a position, and NDTiff a dataset, over files of at most 4 GB:
    ``acq_MMStack_Pos0_1.ome.tif`` continues ``acq_MMStack_Pos0.ome.tif`` (beside it),
    ``acq_NDTiffStack_1.tif`` continues ``acq_NDTiffStack.tif``. From the names only: no file
    is opened.
    """
    name = os.path.basename(path)
    match = _MM_PART.match(name) or _NDTIFF_PART.match(name)
    if match is None:
        return None
    return os.path.join(os.path.dirname(path), f"{match['base']}{match['ext']}")


def _check_mm_parts(path: str) -> None:
    """Raise if ``path`` continues a Micro-Manager position whose earlier files are missing."""
    match = _MM_PART.match(os.path.basename(path))
    if match is None:
        return
    folder = os.path.dirname(path)
    base, ext = match["base"], match["ext"]
    earlier = [f"{base}{ext}"] + [f"{base}_{k}{ext}" for k in range(1, int(match["part"]))]
    missing = [name for name in earlier if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise StackNotFoundError(
            os.path.join(folder, missing[0]),
            f"no such file, but {os.path.basename(path)} continues it (one Micro-Manager "
            f"position split over several files; {len(missing)} earlier part(s) missing)",
        )


def _plane_table(
    tif: tifffile.TiffFile, path: str, series: int, companion: str | None = None
) -> PlaneTable | None:
    if tif.is_ome:
        check_ome_plane_count(tif.ome_metadata or "", path)
    try:
        everything = list(tif.series)  # (tifffile >= 2026.11: a lazy sequence)
    except MALFORMED_TIFF_ERRORS as exc:  # tifffile fails on a broken file of the dataset
        _close_other_files(exc.__traceback__, tif)
        if tif.ome_metadata:
            _check_files_readable(_named_files(tif.ome_metadata, path), path)  # name it
        raise
    if not 0 <= series < len(everything):
        raise StackReadError(path, f"no series {series} (the dataset has {len(everything)})")
    if everything[series].kind == "ome":
        check_ome_ifd_indices(tif.ome_metadata, path)
        _check_no_image_lost(tif.ome_metadata, path, len(everything))
    chosen = everything[series]
    same = [
        s
        for s in everything
        if (s.shape, s.axes, s.dtype) == (chosen.shape, chosen.axes, chosen.dtype)
    ]
    positions = same if len(same) == len(everything) and len(same) > 1 else [chosen]
    pages = _without_lost_images([page for s in positions for page in s.pages])
    codes, series_shape = chosen.axes, tuple(chosen.shape)
    alone = None
    if chosen.kind == "mmstack" and len(positions) == 1:
        alone = _one_position_alone(pages, codes, series_shape)
        if alone is not None:
            pages, codes, series_shape = alone[1:]
    files = sorted({page.parent.filehandle.path for page in pages if page is not None})
    dataset_files = sorted(
        {page.parent.filehandle.path for s in everything for page in s.pages if page is not None}
    )
    complete = all(page is not None for page in pages)  # else missing planes: error or fill
    named = _named_files(tif.ome_metadata, path) if chosen.kind == "ome" else {}
    if len(files) > 1:
        _check_uuids(named, pages, path)
    unreadable = {}  # files tifffile skipped: their planes are missing, but they are not others
    if not complete:
        held = {os.path.normpath(os.path.abspath(name)) for name in dataset_files}
        unreadable = {
            name: _why_unreadable(name) or "none of the pages the OME-XML puts planes on is in it"
            for name in named.keys() - held
            if os.path.isfile(name)
        }
        dataset_files = sorted({*dataset_files, *unreadable})
    if len(positions) == 1 and len(dataset_files) <= 1 and companion is None and complete:
        return None
    plane_codes = "YXS" if codes.endswith("YXS") else "YX"
    if not codes.endswith(plane_codes):
        raise StackReadError(path, f"planes with axes {codes!r} are not supported")
    names = pims_axes(codes)
    cut = len(codes) - len(plane_codes)
    axes, plane_axes = names[:cut], names[cut:]
    shape = series_shape[:cut]
    plane_shape = series_shape[cut:]
    if len(positions) > 1:
        if "p" in axes:
            raise StackReadError(path, "positions both as series and as an axis")
        axes, shape = "p" + axes, (len(positions), *shape)
    dtype = np.dtype(chosen.dtype).newbyteorder(tif.byteorder)
    nbytes = int(np.prod(plane_shape)) * dtype.itemsize
    number = {name: i for i, name in enumerate(files)}
    file_index = np.full(len(pages), -1, np.int32)
    data_offsets = np.zeros(len(pages), np.int64)
    ifd_offsets = np.zeros(len(pages), np.int64)
    mapped = True
    for i, page in enumerate(pages):
        if page is None:
            continue
        key = page.keyframe
        where = page.parent.filehandle.path
        if key is page:  # (each file's key page once: the other pages are read by their IFDs)
            check_layout_tags_once(key, where)
        if tuple(key.shape) != plane_shape or key.dtype != chosen.dtype:
            raise StackReadError(
                where,
                f"page {page.index} does not match its series "
                f"({key.shape} {key.dtype} vs {plane_shape} {chosen.dtype})",
            )
        if key.planarconfig == 2 and len(plane_shape) == 3:
            raise StackReadError(where, "planar RGB pages in a multi-file dataset")
        if page.parent.byteorder != tif.byteorder:
            raise StackReadError(where, f"its byte order differs from {os.path.basename(path)}'s")
        file_index[i] = number[where]
        mapped = mapped and (
            key.compression == 1 and page.is_contiguous and sum(page.databytecounts) == nbytes
        )
        data_offsets[i] = page.dataoffsets[0] if page.dataoffsets else -1
        ifd_offsets[i] = -1 if page.offset is None else page.offset
    mapped = mapped and _mapped_as_ifds_say(pages, data_offsets, nbytes)
    if not mapped and (ifd_offsets[file_index >= 0] < 0).any():
        raise StackReadError(path, "compressed planes indexed without their IFD")
    # (read once, for the channel names and the planes' times)
    ndtiff_index = read_ndtiff_index(tif.filehandle.dirname) if tif.is_ndtiff else None
    metadata = _metadata(tif, chosen, everything, ndtiff_index)
    metadata["storage"] = MAPPED if mapped else DECODED
    if chosen.kind == "mmstack":
        read = [alone[0]] if alone is not None else positions_of_series(tif, chosen)
        note_missing_positions(tif, read, path, metadata)
    times = z_positions = None
    if tif.is_micromanager:
        times, z_positions = times_and_intended_z(pages, ndtiff_index)
    if chosen.kind == "ome":  # (the OME-XML's times first, as for one file)
        ome_times = ome_plane_times(tif.ome_metadata, [everything.index(s) for s in positions],
                                    axes, shape)
        times = times if ome_times is None else ome_times
    z_step_from_positions(metadata, z_positions, axes, shape)
    metadata["ome_companion"] = companion
    # (tifffile has read every file: one more stat each costs little)
    identities = tuple(FileIdentity.of(os.stat(name)) for name in files)
    return PlaneTable(
        tuple(files),
        tuple(dataset_files),
        chosen.kind,
        axes,
        shape,
        plane_axes,
        plane_shape,
        dtype,
        MAPPED if mapped else DECODED,
        file_index.reshape(shape),
        (data_offsets if mapped else ifd_offsets).reshape(shape),
        metadata,
        None if times is None else times.reshape(shape),
        unreadable,
        identities,
    )


def _one_position_alone(pages: list, axes: str, shape: tuple[int, ...]):
    """Find the one Micro-Manager position (``R`` axis) whose planes are all in the files.

    tifffile returns the position of the one file it finds of a multi-position acquisition
    alone, but fills the missing positions' planes with zeros when a position spans several
    files (continuations ``_Pos0_1``): both are the files of one position, read alone.

    Returns
    -------
    tuple or None
        ``(position, its pages, axes, shape)`` without the ``R`` axis, where the pages of one
        position are all there and those of every other position none; else None.
    """
    if "R" not in axes:
        return None
    r = axes.index("R")
    outer = shape[: len(axes) - (3 if axes.endswith("YXS") else 2)]
    numbers = np.moveaxis(np.arange(len(pages)).reshape(outer), r, 0).reshape(outer[r], -1)
    present = np.array([page is not None for page in pages])[numbers]
    whole, empty = present.all(axis=1), ~present.any(axis=1)
    if whole.sum() != 1 or not (whole | empty).all():
        return None
    position = int(np.argmax(whole))
    kept = [pages[i] for i in numbers[position]]
    return position, kept, axes[:r] + axes[r + 1 :], shape[:r] + shape[r + 1 :]


def _mapped_as_ifds_say(pages: list, data_offsets: np.ndarray, plane_nbytes: int) -> bool:
    """Tell whether each file's IFDs of ``pages`` give the layout and data places tifffile does.

    See :func:`._layout.data_as_ifds_say`, asked once per file, with the file's key page
    (False where tifffile took a page's layout from another file's page).
    """
    by_file: dict[int, list[int]] = {}  # id of a file's TiffFile -> positions of its pages
    for i, page in enumerate(pages):
        if page is not None:
            by_file.setdefault(id(page.parent), []).append(i)
    for positions in by_file.values():
        file_pages = [pages[i] for i in positions]
        key = file_pages[0].keyframe
        if key.parent is not file_pages[0].parent or not data_as_ifds_say(
                key.parent, key, file_pages, data_offsets[positions], plane_nbytes):
            return False
    return True


def _without_lost_images(pages: list) -> list:
    """Replace the pages of images cut off their files (an acquisition that crashed) by None.

    tifffile gives a Micro-Manager image whose IFD and pixels lie beyond the end of a truncated
    file an IFD offset of 0 and no data ("missing data are zeroed"); an index (NDTiff) may
    list images whose pixels lie beyond it.
    """
    sizes: dict[int, int] = {}  # id of a file's TiffFile -> the file's size
    kept = []
    for page in pages:
        if page is not None:
            offsets, counts = page.dataoffsets, page.databytecounts
            size = sizes.get(id(page.parent))
            if size is None:
                size = sizes[id(page.parent)] = page.parent.filehandle.size
            if len(offsets) == 1:  # the usual case, without the general expression
                end = offsets[0] + counts[0]
            else:
                end = max(map(int.__add__, offsets, counts), default=0)
            if end > size or (page.offset == 0 and not any(counts)):
                page = None
        kept.append(page)
    return kept


def check_ome_plane_count(xml: str, path: str) -> None:
    """Raise if the images of the OME-XML claim more planes than its files can hold.

    tifffile's series list every plane an image claims (``SizeZ * SizeC * SizeT``) before
    finding them: a tiny file whose XML claims 10**7 planes cost seconds and hundreds of MB.
    Each plane needs an IFD of its own in one of the files the XML names (or ``path``);
    claims are taken as they are where one of those files is gone (``fill_missing``).

    Raises
    ------
    StackReadError
        The claim exceeds what the files can hold.
    """
    claimed = 0
    for attributes, content in _PIXELS.findall(xml):
        if "TiffData" in content:  # (tifffile makes no series of an image without)
            sizes = dict(_PLANE_SIZE.findall(attributes))
            claimed += math.prod(int(sizes.get(axis, 1)) for axis in "ZCT")
    if claimed <= _PLANES_UNCHECKED:
        return
    files = {os.path.realpath(path), *_named_files(xml, path)}
    try:
        total = sum(os.stat(name).st_size for name in files)
    except OSError:
        return
    if claimed > total // _MIN_IFD_BYTES:
        raise StackReadError(path, f"corrupt OME-XML: its images claim {claimed} planes, more "
                             f"than its {len(files)} file(s) of {total} bytes can hold")


def _named_files(xml: str, path: str) -> dict[str, str]:
    """Map each file the OME-XML names (``<UUID FileName=...>``) to the UUID it gives it.

    Files are real paths (links resolved, as tifffile names the files it opens), relative to
    the real folder of ``path`` (where tifffile looks for them).
    """
    folder = os.path.dirname(os.path.realpath(path))
    named = {}
    # (once per file, not per plane: Bio-Formats names a plane's file in each TiffData)
    for attributes, text in dict.fromkeys(_UUID_ELEMENT.findall(xml)):
        name = _FILE_NAME.search(attributes)
        if name is not None:
            file = os.path.join(folder, unescape(_attribute_value(name)))
            named[os.path.realpath(file)] = _uuid(text)
    return named


def _attribute_value(match: re.Match[str]) -> str:
    """Return the value of an attribute matched as ``"..."`` (group 1) or ``'...'`` (group 2)."""
    return match[1] if match[2] is None else match[2]


def _uuid(text: str) -> str:
    """Normalise a UUID of the OME-XML for comparison (``urn:uuid:`` prefix and case dropped)."""
    return unescape(text).strip().lower().removeprefix("urn:uuid:")


def _check_uuids(named: dict[str, str], pages, path: str) -> None:
    """Raise if a file holding planes is not the one the OME-XML names: its own UUID differs.

    tifffile finds the files of a dataset by their ``FileName`` alone: a file of another
    acquisition under that name (a re-run written over it, a copy) would give its pixels as
    this dataset's. ``named``: see :func:`_named_files`.
    """
    parents = {id(page.parent): page.parent for page in pages if page is not None}
    for tif in parents.values():
        file = os.path.normpath(os.path.abspath(tif.filehandle.path))
        start = _OME_START.search(tif.pages.first.description or "")
        own = None if start is None else _UUID_ATTRIBUTE.search(start.group())
        if own is None or not named.get(file):
            continue
        own = _attribute_value(own)
        if _uuid(own) != named[file]:
            raise StackReadError(
                file,
                f"its OME UUID {own} is not the {named[file]} that the OME-XML of "
                f"{os.path.basename(path)} gives it: a file of another acquisition?",
            )


def _why_unreadable(file: str) -> str | None:
    """Tell why tifffile cannot read every IFD of ``file`` (None: it can, or there is no file).

    Raises
    ------
    OSError
        The process (``EMFILE``) or the system (``ENFILE``) has as many files open as it
        may: no reason of the file's (tifffile skips a dataset's files then, as unreadable
        ones), the caller may close files and try again.
    """
    if not os.path.isfile(file):
        return None
    try:
        with open_tiff(file) as tif:
            tif.pages.useframes = True
            for _ in tif.pages:
                pass
    except (OSError, *MALFORMED_TIFF_ERRORS) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            raise
        return f"{type(exc).__name__}: {exc}"
    return None


def _close_other_files(traceback, tif: tifffile.TiffFile) -> None:
    """Close the files other than ``tif`` that tifffile had open where it failed.

    tifffile leaves a file of a dataset open when it fails reading its IFDs (until the garbage
    collector finds it, with a ResourceWarning).
    """
    while traceback is not None:
        for value in traceback.tb_frame.f_locals.values():
            if isinstance(value, tifffile.TiffFile) and value is not tif:
                value.close()
        traceback = traceback.tb_next


def _check_files_readable(named: dict[str, str], path: str) -> None:
    """Raise StackReadError naming the first file of the dataset that tifffile cannot read."""
    for name in sorted(named):
        reason = _why_unreadable(name)
        if reason is not None:
            dataset = os.path.basename(path)
            raise StackReadError(name, f"cannot read this file of the dataset of {dataset} "
                                 f"({reason})")


def _check_no_image_lost(xml: str, path: str, found: int) -> None:
    """Raise if an OME image is missing from tifffile's ``found`` series for want of its files.

    tifffile skips an image whose every plane is in missing or unreadable files: its position
    would vanish from the dataset without a word.
    """
    if len(_IMAGE_START.findall(xml)) <= found:  # the usual case, without parsing the XML
        return
    images = [e for e in ET.fromstring(xml) if e.tag.endswith("Image")]
    folder = os.path.dirname(os.path.realpath(path))  # (where tifffile looks for them)
    names = {
        u.attrib["FileName"]
        for image in images
        for u in image.iter()
        if u.tag.endswith("UUID") and u.attrib.get("FileName")
    }
    missing = sorted(n for n in names if not os.path.isfile(os.path.join(folder, n)))
    if missing:
        raise StackNotFoundError(
            os.path.join(folder, missing[0]),
            f"no such file, but the OME-XML of {os.path.basename(path)} puts planes in it "
            f"({len(missing)} file(s) missing; {len(images) - found} of the dataset's "
            f"{len(images)} images have no file left)",
        )
    for name in sorted(names):
        reason = _why_unreadable(os.path.join(folder, name))
        if reason is not None:
            raise StackReadError(
                os.path.join(folder, name),
                f"cannot read it ({reason}), but the OME-XML of {os.path.basename(path)} puts "
                f"planes in it ({len(images) - found} of the dataset's {len(images)} images "
                "have no readable file left)",
            )


def _metadata(tif: tifffile.TiffFile, chosen, everything,
              ndtiff_index: list[tuple] | None) -> dict[str, Any]:
    """Build the normalised metadata of a TiffStackND from the first page, OME-XML and MM.

    ``ndtiff_index``: the entries of an NDTiff dataset's index (None for other datasets).
    """
    # planes of a multi-file dataset carry no time stamps here: only the image's keys
    meta, _ = file_metadata(tif, chosen.keyframe, everything.index(chosen), "", (), ndtiff_index)
    meta.update(kind=chosen.kind, series=series_info(everything))
    return meta


def _open_nonblocking(path: str, flags: int) -> int:
    """Open ``path`` for :func:`open` without waiting for a FIFO's writer."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


class DatasetFile:
    """One open file of a multi-file dataset; its planes are read by offset (thread-safe).

    Parameters
    ----------
    path : str
        The file (opened read-only).
    storage : str
        The table's storage: ``'decoded'`` also opens the file with tifffile.
    identity : FileIdentity, optional
        The file as its planes were indexed: the offsets hold only in that file.

    Raises
    ------
    StackNotFoundError
        The file does not exist (any more).
    StackReadError
        It cannot be opened, tifffile cannot open it, or the file is not ``identity`` any
        more (another file put in its place, or the file shortened or rewritten; one that
        only grew is read).
    """

    def __init__(self, path: str, storage: str, identity: FileIdentity | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._tif = None
        self._decoder: PageDecoder | None = None  # decoded storage
        renew_locks_after_fork(self)  # (once what the renewal uses is set)
        try:  # (not waiting for a writer should a FIFO have taken the name: no effect on files)
            self._file = open(path, "rb", buffering=0, opener=_open_nonblocking)  # see close()
        except FileNotFoundError:
            raise StackNotFoundError(path, "no such file (part of the dataset)") from None
        except OSError as exc:  # (a folder or an unreadable file now has its name)
            raise StackReadError(path, f"cannot open ({exc.strerror})") from None
        status = os.fstat(self._file.fileno())
        if not stat.S_ISREG(status.st_mode):
            self._file.close()
            raise StackReadError(path, "is not a regular file (FIFO, device...) any more")
        if identity is not None:
            change = identity.change(FileIdentity.of(status))
            if change is not None:
                self._file.close()
                raise StackReadError(
                    path, f"changed since the dataset was opened ({change}); open it again")
        self._reads = PlaneReads(self._file.fileno(), path)
        if storage == DECODED:
            try:
                self._tif = open_tiff(PositionalFile(self._file))
            except (tifffile.TiffFileError, ValueError, IndexError, KeyError) as exc:
                self._file.close()
                raise StackReadError(path, f"not a readable TIFF file ({exc})") from None
            self._decoder = PageDecoder(self._tif, self._reads, self._lock)

    def read(self, table: PlaneTable, offset: int) -> np.ndarray:
        """Read the plane at ``offset`` (pixels or IFD, see the table) into a fresh array.

        Raises
        ------
        StackReadError
            The file is shorter than the plane's end, or the page cannot be decoded, or
            decodes to another size or type than the dataset's planes (the file changed).
        """
        if self._tif is None:
            return self._reads.plane(table.plane_shape, table.dtype, offset)
        data = self._decoder.decode(offset)
        native = table.dtype.newbyteorder("=")
        if _without_ones(data.shape) != _without_ones(table.plane_shape) or (
                data.dtype.newbyteorder("=") != native):
            raise StackReadError(
                self.path, f"the page at byte {offset} decodes to {data.shape} {data.dtype}, "
                f"not the dataset's {table.plane_shape} {native} (its own tags contradict "
                "its series, or the file changed since it was opened)")
        return np.ascontiguousarray(data.reshape(table.plane_shape), dtype=native)

    def _renew_locks_after_fork(self) -> None:
        """In a forked child: a new lock (another thread may have held the parent's)."""
        self._lock = threading.RLock()
        if self._decoder is not None:
            self._decoder.lock = self._lock

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._tif is not None:
                self._tif.close()
                self._tif = None
            self._file.close()


def _without_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` without its axes of length 1 (a decoded page may have or lack them)."""
    return tuple(n for n in shape if n != 1)
