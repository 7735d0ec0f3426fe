"""Per-plane acquisition times and focus positions that Micro-Manager stores with every image.

Micro-Manager (MMStack files and NDTiff datasets) writes a JSON summary of each image, with
``"ElapsedTime-ms"`` since the acquisition started and, from its acquisition engine (NDTiff),
the ``"ZPosition_um_Intended"`` of the image's focus, next to its pixels: in the image's IFD
as tag 51123 (MMStack), and at an offset that ``NDTiff.index`` gives (NDTiff).
:func:`times_and_intended_z` reads those, one ``pread`` per image (two for an MMStack IFD),
without parsing the JSON. :func:`read_ndtiff_index` reads an NDTiff dataset's index once for
every use of it.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Sequence

import numpy as np
import tifffile

__all__ = ["MM_METADATA_TAG", "NDTIFF_INDEX", "elapsed_seconds", "read_ndtiff_index",
           "times_and_intended_z"]

#: The index file of an NDTiff dataset, beside its files: it names the dataset (its folder)
NDTIFF_INDEX = "NDTiff.index"

#: The TIFF tag holding Micro-Manager's JSON metadata of an image
MM_METADATA_TAG = 51123
_NUMBER = rb'\s*:\s*"?([-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)'
_ELAPSED = re.compile(rb'"ElapsedTime-ms"' + _NUMBER)
_INTENDED_Z = re.compile(rb'"ZPosition_um_Intended"' + _NUMBER)
_IFD_BYTES = 1024  # read at once: the entries of a Micro-Manager IFD (13-17 of them) fit


def read_ndtiff_index(folder: str) -> list[tuple]:
    """Return the entries of the ``NDTiff.index`` in ``folder``, as tifffile reads them.

    Each entry is ``(axes, file name, pixel offset, width, height, pixel type, pixel
    compression, metadata offset, metadata length, metadata compression)``
    (:func:`tifffile.read_ndtiff_index`). Empty when the index cannot be read (it is corrupt or
    gone since tifffile read it): the images' names and times are then unknown.
    """
    try:
        return list(tifffile.read_ndtiff_index(os.path.join(folder, NDTIFF_INDEX)))
    except (OSError, ValueError, struct.error):
        return []


def times_and_intended_z(
    pages: Sequence[tifffile.TiffPage | tifffile.TiffFrame | None],
    ndtiff_index: list[tuple] | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Time and intended focus of each page, from Micro-Manager's image metadata.

    Parameters
    ----------
    pages : sequence of tifffile.TiffPage, tifffile.TiffFrame or None
        The planes of a series, in order (None: a plane no file holds), from files that
        tifffile flags as Micro-Manager (MMStack or NDTiff).
    ndtiff_index : list of tuple or None
        The entries of the dataset's ``NDTiff.index`` (:func:`read_ndtiff_index`) where the
        files are an NDTiff dataset (times found through it); None for MMStack files.

    Returns
    -------
    times : numpy.ndarray or None
        float64 seconds since the acquisition start, NaN for a page without a time; None
        when no page has one.
    z_positions : numpy.ndarray or None
        float64 intended z positions in µm, NaN for a page without one; None when no page
        has one.
    """
    times = np.full(len(pages), np.nan)
    z_positions = np.full(len(pages), np.nan)
    by_file: dict[str, list[int]] = {}
    for i, page in enumerate(pages):
        if page is not None:
            by_file.setdefault(page.parent.filehandle.path, []).append(i)
    for path, numbers in by_file.items():
        parent = pages[numbers[0]].parent
        spans = None if ndtiff_index is None else _ndtiff_spans(ndtiff_index, path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # gone since tifffile read it: its pages have no time
            continue
        try:
            size = os.fstat(fd).st_size
            for i in numbers:
                page = pages[i]
                if spans is not None:
                    span = spans.get(page.dataoffsets[0])
                else:
                    span = _metadata_span(fd, page.offset, parent.byteorder, parent.is_bigtiff)
                if span is not None:  # (a corrupt length is not allocated beyond the file)
                    offset, length = span
                    blob = os.pread(fd, max(0, min(length, size - offset)), offset)
                    times[i] = elapsed_seconds(blob)
                    z_positions[i] = _number(_INTENDED_Z, blob)
        finally:
            os.close(fd)
    return (None if np.isnan(times).all() else times,
            None if np.isnan(z_positions).all() else z_positions)


def _ndtiff_spans(entries: list[tuple], path: str) -> dict[int, tuple[int, int]]:
    """Pixel offset -> (metadata offset, length) of the images of ``path`` in index ``entries``."""
    name = os.path.basename(path)
    return {
        dataoffset: (metaoffset, metabytecount)
        for _, filename, dataoffset, *_, metaoffset, metabytecount, metacompression in entries
        if filename == name and metacompression == 0
    }


def _metadata_span(
    fd: int, ifd: int | None, byteorder: str, bigtiff: bool
) -> tuple[int, int] | None:
    """(offset, length) of the tag 51123 value of the IFD at ``ifd``, or None."""
    if not ifd:
        return None
    head = os.pread(fd, _IFD_BYTES, ifd)
    count_format, entry_format = ("Q", "HHQQ") if bigtiff else ("H", "HHII")
    count_size = struct.calcsize(count_format)
    if len(head) < count_size:
        return None
    entry = struct.Struct(byteorder + entry_format)
    (count,) = struct.unpack_from(byteorder + count_format, head)
    for k in range(min(count, (len(head) - count_size) // entry.size)):
        code, _, length, value = entry.unpack_from(head, count_size + k * entry.size)
        if code == MM_METADATA_TAG:
            return (value, length) if length > (8 if bigtiff else 4) else None
    return None


def elapsed_seconds(blob: bytes) -> float:
    """Return the ``"ElapsedTime-ms"`` of an image's JSON metadata ``blob`` in seconds (NaN: none).

    The number is found without parsing the JSON.
    """
    return _number(_ELAPSED, blob) / 1000.0


def _number(key: re.Pattern[bytes], blob: bytes) -> float:
    """Return the number that ``key`` finds in the JSON ``blob`` (NaN: none)."""
    match = key.search(blob)
    return float(match.group(1)) if match else np.nan
