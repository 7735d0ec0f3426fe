"""Datasets whose planes live in several TIFF files: multi-file OME-TIFF, NDTiff, Micro-Manager.

:func:`find_dataset` asks tifffile for the series of one file of the dataset. When a series
spans several files (OME-XML ``TiffData``/``UUID FileName`` references, an ``NDTiff.index``,
Micro-Manager stacks) or the file holds several positions with one shape (OME images), it
returns a frozen :class:`PlaneTable`: for every plane, which file and which byte offset.
tifffile reads and checks every referenced IFD (or index entry) once, at open. Planes are then
read with one ``os.preadv`` each.

Uncompressed, contiguous planes are read with one ``os.preadv`` each; other planes
(compressed, tiled) are decoded one page at a time by tifffile from their IFD offset. Planar
RGB pages raise a clear :class:`StackReadError`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

from ._errors import StackNotFoundError, StackReadError
from ._layout import PHYSICAL_METADATA_KEYS, ome_metadata, pims_axes

__all__ = ["DatasetFile", "PlaneTable", "find_dataset"]

MAPPED, DECODED = "mapped", "decoded"
_DATASET_FLAGS = ("ome", "ndtiff", "mmstack", "micromanager")
# OME length units -> the unit names used in metadata (micrometre by default in OME)
@dataclass(frozen=True, eq=False)
class PlaneTable:
    """Where every plane of a multi-file dataset is.

    Attributes
    ----------
    files : tuple of str
        The files holding planes.
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
    metadata : dict
        ``pixel_size_x``, ``pixel_size_y``, ``z_step``, ``unit``, ``frame_interval``,
        ``channel_names``, ``software``, ``kind``, ``storage``, ``series`` (None if unknown).
    """

    files: tuple[str, ...]
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
        one file and has no sibling positions (read it as a plain stack).

    Raises
    ------
    StackReadError
        The dataset cannot be read: a corrupt file, no such series, compressed or
        non-contiguous planes, planes that disagree with their series.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            if not set(tif.flags) & set(_DATASET_FLAGS):
                return None
            return _plane_table(tif, path, series)
    except (tifffile.TiffFileError, ValueError, IndexError, KeyError) as exc:
        raise StackReadError(path, f"cannot read the dataset ({exc})") from None


def _plane_table(tif: tifffile.TiffFile, path: str, series: int) -> PlaneTable | None:
    everything = tif.series
    if not 0 <= series < len(everything):
        raise StackReadError(path, f"no series {series} (the dataset has {len(everything)})")
    chosen = everything[series]
    same = [
        s
        for s in everything
        if (s.shape, s.axes, s.dtype) == (chosen.shape, chosen.axes, chosen.dtype)
    ]
    positions = same if len(same) == len(everything) and len(same) > 1 else [chosen]
    pages = [page for s in positions for page in s.pages]
    files = sorted({page.parent.filehandle.path for page in pages if page is not None})
    if len(positions) == 1 and len(files) <= 1:
        return None
    codes = chosen.axes
    plane_codes = "YXS" if codes.endswith("YXS") else "YX"
    if not codes.endswith(plane_codes):
        raise StackReadError(path, f"planes with axes {codes!r} are not supported")
    names = pims_axes(codes)
    cut = len(codes) - len(plane_codes)
    axes, plane_axes = names[:cut], names[cut:]
    shape = tuple(chosen.shape[:cut])
    plane_shape = tuple(chosen.shape[cut:])
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
        if tuple(key.shape) != plane_shape or key.dtype != chosen.dtype:
            raise StackReadError(
                where,
                f"page {page.index} does not match its series "
                f"({key.shape} {key.dtype} vs {plane_shape} {chosen.dtype})",
            )
        if key.planarconfig == 2 and len(plane_shape) == 3:
            raise StackReadError(where, "planar RGB pages in a multi-file dataset")
        file_index[i] = number[where]
        mapped = mapped and (
            key.compression == 1 and page.is_contiguous and sum(page.databytecounts) == nbytes
        )
        data_offsets[i] = page.dataoffsets[0] if page.dataoffsets else -1
        ifd_offsets[i] = -1 if page.offset is None else page.offset
    if not mapped and (ifd_offsets[file_index >= 0] < 0).any():
        raise StackReadError(path, "compressed planes indexed without their IFD")
    metadata = _metadata(tif, chosen, everything)
    metadata["storage"] = MAPPED if mapped else DECODED
    return PlaneTable(
        tuple(files),
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
    )


def _metadata(tif: tifffile.TiffFile, chosen, everything) -> dict[str, Any]:
    """Build the normalised metadata keys of a TiffStackND, from the OME-XML if any."""
    meta: dict[str, Any] = dict.fromkeys(PHYSICAL_METADATA_KEYS)
    meta.update(
        kind=chosen.kind,
        series=[
            {
                "index": i,
                "shape": tuple(s.shape),
                "axes": s.axes,
                "dtype": str(s.dtype),
                "kind": s.kind,
            }
            for i, s in enumerate(everything)
        ],
    )
    software = tif.pages.first.software
    meta["software"] = software or None
    xml = tif.ome_metadata
    if xml:
        # planes of a multi-file dataset carry no time stamps here: only the image's keys
        ome_metadata(xml, everything.index(chosen), "", (), meta)
    return meta


class DatasetFile:
    """One open file of a multi-file dataset; its planes are read by offset (thread-safe).

    Parameters
    ----------
    path : str
        The file (opened read-only).
    storage : str
        The table's storage: ``'decoded'`` also opens the file with tifffile.

    Raises
    ------
    StackNotFoundError
        The file does not exist (any more).
    StackReadError
        tifffile cannot open it.
    """

    def __init__(self, path: str, storage: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._tif = None
        try:
            self._file = open(path, "rb", buffering=0)  # closed by close()
        except FileNotFoundError:
            raise StackNotFoundError(path, "no such file (part of the dataset)") from None
        if storage == DECODED:
            try:
                self._tif = tifffile.TiffFile(self._file)
            except (tifffile.TiffFileError, ValueError, IndexError, KeyError) as exc:
                self._file.close()
                raise StackReadError(path, f"not a readable TIFF file ({exc})") from None

    def read(self, table: PlaneTable, offset: int) -> np.ndarray:
        """Read the plane at ``offset`` (pixels or IFD, see the table) into a fresh array.

        Raises
        ------
        StackReadError
            The file is shorter than the plane's end, or the page cannot be decoded.
        """
        native = table.dtype.newbyteorder("=")
        if self._tif is None:
            out = np.empty(table.plane_shape, native)
            got = os.preadv(self._file.fileno(), [out], offset)
            if got != out.nbytes:
                raise StackReadError(
                    self.path, f"file is truncated (plane at byte {offset} is incomplete)"
                )
            if not table.dtype.isnative:
                out.byteswap(inplace=True)
            return out
        try:
            with self._lock:
                self._tif.filehandle.seek(offset)
                page = tifffile.TiffPage(self._tif, 0)
            data = page.asarray(lock=self._lock)
        except (tifffile.TiffFileError, ValueError, KeyError, IndexError) as exc:
            raise StackReadError(
                self.path, f"cannot decode the page at byte {offset} ({exc})"
            ) from None
        return np.ascontiguousarray(data.reshape(table.plane_shape), dtype=native)

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._tif is not None:
                self._tif.close()
                self._tif = None
            self._file.close()
