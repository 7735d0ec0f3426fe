"""Read one-file-per-frame TIFF sequences with one ``preadv`` per frame, verified per file.

:class:`PlaneTemplate` learns, from the first file of a sequence, where its structure (header,
IFD, layout-defining tags, image description) and its pixels lie. Reading another file then
fetches its first bytes and its pixels together and checks those structural bytes against the
first file's: a file that differs is never guessed at, the caller opens it in full. Where the
first file carries Micro-Manager's image metadata (tag 51123: an image of a "separate image
files" acquisition), each file's own ``"ElapsedTime-ms"`` is read with its plane.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections.abc import Callable

import numpy as np
from pims import Frame

from ._layout import open_tiff
from ._planetimes import MM_METADATA_TAG, elapsed_seconds
from ._pread import read_at

__all__ = ["PlaneTemplate"]

#: Read-only; not waiting for a writer should a FIFO have taken a file's name (it then reads
#: short, and the caller's full open refuses it). No effect on regular files.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)


class PlaneTemplate:
    """Read single-plane files that share the first file's structure with one ``preadv`` each.

    Built from the first file when it holds one uncompressed, contiguous plane in one IFD
    placed, with its description and the values of its layout tags, before the pixels (the
    usual one-file-per-frame sequence). Each read fetches the
    bytes before the pixels and the pixels together. A file whose bytes before the pixels are
    those of the first file is thereby verified; otherwise it is checked, byte for byte, that the
    file has the first file's header, IFD position, tag list, layout-defining tags (size,
    samples, bits, compression, strips...), no second IFD and the same image description
    (ImageJ ``min=``/``max=`` lines aside). A file that differs in any of these is not
    guessed: :meth:`read` returns None and the caller opens it in full.

    When the first file has Micro-Manager's image metadata tag (51123), every file has it at
    the same place in its IFD (the tag list is checked): each read also takes the file's own
    ``"ElapsedTime-ms"`` from the tag's value (in the bytes read, or one more ``pread``
    where the value lies after the pixels).
    """

    _CHECKED_TAGS = frozenset(
        (256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 322, 323, 338, 339, 32997)
    )

    def __init__(self, tif, dtype: np.dtype, plane_shape: tuple[int, ...]) -> None:
        page = tif.pages.first
        self.head = int(page.dataoffsets[0])
        self.plane_shape = plane_shape
        self.dtype = dtype
        self.native = dtype.newbyteorder("=")
        self._plane_nbytes = math.prod(plane_shape) * dtype.itemsize
        big = tif.is_bigtiff
        self._entry = struct.Struct(tif.byteorder + ("4xQQ" if big else "4xII"))
        pointer = self._pointer = 8 if big else 4
        entry_size = 20 if big else 12
        count_size = 8 if big else 2
        ranges = [(0, 16 if big else 8), (page.offset, page.offset + count_size)]
        self._description = None
        self._offset = None  # (position, struct) of a single strip's offset, read per file
        self._image_metadata = None  # position of the entry of tag 51123, read per file
        for tag in page.tags:
            if tag.code == MM_METADATA_TAG:
                self._image_metadata = tag.offset
            ranges.append((tag.offset, tag.offset + 2))
            if tag.code == 270:
                if tag.valueoffset + tag.valuebytecount > self.head:  # (it may set the shape)
                    raise ValueError("the first file's description does not lie before its pixels")
                self._description = tag.offset
            if tag.code == 273 and tag.count == 1:
                ranges.append((tag.offset, tag.offset + 4 + pointer))
                value = {3: "H", 4: "I", 16: "Q"}.get(tag.dtype)
                if value is None:
                    raise ValueError(f"strip offsets of TIFF type {tag.dtype}")
                self._offset = (tag.offset + 4 + pointer, struct.Struct(tif.byteorder + value))
            elif tag.code in self._CHECKED_TAGS:
                ranges.append((tag.offset, tag.offset + entry_size))
                if tag.valuebytecount > pointer:
                    ranges.append((tag.valueoffset, tag.valueoffset + tag.valuebytecount))
        end_of_ifd = page.offset + count_size + entry_size * len(page.tags)
        ranges.append((end_of_ifd, end_of_ifd + pointer))
        if max(stop for _, stop in ranges) > self.head:
            raise ValueError("the first file's structure does not lie before its pixels")
        self._positions = np.concatenate([np.arange(a, b) for a, b in ranges])
        buffer = np.fromfile(tif.filehandle.path, np.uint8, count=self.head)
        self._expected = buffer[self._positions].tobytes()
        self._first_head = buffer.tobytes()
        self._raw_description = self._description_bytes(buffer)
        self._normalized_description = (
            None if self._raw_description is None else self._without_min_max(self._raw_description)
        )
        # Each thread reads heads into its own reused buffer: allocating one per read made
        # reads of 256 x 256 planes ~8 % slower (measured; the cause was not pinned down).
        self._thread_heads = threading.local()

    @classmethod
    def of(cls, path: str, plane_shape: tuple[int, ...], dtype: np.dtype) -> PlaneTemplate | None:
        """Build the template of a single-plane file, or None if its layout does not allow one.

        Parameters
        ----------
        path : str
            The first file, already read successfully as a stack of one plane.
        plane_shape : tuple of int
            Shape of its plane (``(y, x)`` or ``(y, x, samples)``).
        dtype : numpy.dtype
            Its sample type (any byte order: the file's is used).
        """
        with open_tiff(path) as tif:
            page = tif.pages.first
            if len(tif.pages) != 1 or not page.is_contiguous or page.compression != 1:
                return None
            dtype = np.dtype(dtype).newbyteorder(tif.byteorder)
            if sum(page.databytecounts) != math.prod(plane_shape) * dtype.itemsize:
                return None
            try:
                return cls(tif, dtype, plane_shape)
            except ValueError:
                return None

    def _description_bytes(self, head: np.ndarray) -> bytes | None:
        """Read a file's raw image description from its first bytes (None: none)."""
        if self._description is None:
            return None
        count, offset = self._entry.unpack_from(head, self._description)
        if count <= self._pointer:  # stored in the entry itself
            offset = self._description + 4 + self._pointer
        if offset + count > len(head):
            return b"\0beyond the bytes read"
        return head[offset : offset + count].tobytes()

    @staticmethod
    def _without_min_max(text: bytes) -> bytes:
        """Drop ImageJ's per-file ``min=``/``max=`` display range lines from a description."""
        lines = text.rstrip(b"\0").split(b"\n")
        return b"\n".join(line for line in lines if not line.startswith((b"min=", b"max=")))

    def _same_description(self, head: np.ndarray) -> bool:
        text = self._description_bytes(head)
        if text == self._raw_description:
            return True
        return text is not None and self._without_min_max(text) == self._normalized_description

    def read(self, path: str, allocate: Callable[..., np.ndarray] = np.empty) -> np.ndarray | None:
        """Read the plane of ``path``; None if it differs, is short or is no regular file.

        The caller then opens such a file in full, which tells why.
        ``allocate(shape, dtype)`` makes the returned array (``numpy.empty`` or another
        array type's); a :class:`pims.Frame` with ``metadata['timestamp']`` (seconds) where
        the file's Micro-Manager image metadata gives its ``"ElapsedTime-ms"``.
        """
        try:
            head = self._thread_heads.buffer
        except AttributeError:
            head = self._thread_heads.buffer = bytearray(self.head)
        plane = allocate(self.plane_shape, self.native)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError:
            return None
        seconds = math.nan
        try:
            got = read_at(fd, [head, plane], 0)  # the file's head, then its pixels
            if head != self._first_head:  # not a byte-identical head
                got = self._check_structure(fd, np.frombuffer(head, np.uint8), plane, got)
            if got != self.head + self._plane_nbytes:
                return None
            if self._image_metadata is not None:
                seconds = self._elapsed_seconds(fd, head)
        except OSError:  # e.g. a FIFO (no preadv): the caller's full open tells what it is
            return None
        finally:
            os.close(fd)
        if not self.dtype.isnative:
            plane.byteswap(inplace=True)
        if math.isnan(seconds):
            return plane
        if isinstance(plane, Frame):  # (a new Frame of ``allocate``, without metadata)
            plane.metadata = {"timestamp": seconds}
            return plane
        return Frame(plane, metadata={"timestamp": seconds})

    def _elapsed_seconds(self, fd: int, head: bytearray) -> float:
        """Return a verified file's ``"ElapsedTime-ms"`` (tag 51123) in seconds (NaN: none)."""
        count, offset = self._entry.unpack_from(head, self._image_metadata)
        if count <= self._pointer:  # (a value in the entry itself: too short to hold one)
            return math.nan
        if offset + count <= self.head:
            return elapsed_seconds(bytes(head[offset : offset + count]))
        # (a corrupt count is not allocated beyond the file)
        count = max(0, min(count, os.fstat(fd).st_size - offset))
        return elapsed_seconds(os.pread(fd, count, offset))

    def _check_structure(self, fd: int, head: np.ndarray, plane: np.ndarray, got: int) -> int:
        """Verify a head that differs from the first file's in bytes that may differ.

        Returns the number of bytes of head and ``plane`` read (re-reading the pixels from
        their own offset if they lie elsewhere), or -1 if the structure differs.
        """
        if got < self.head or head[self._positions].tobytes() != self._expected:
            return -1
        if not self._same_description(head):
            return -1
        if self._offset is not None:
            position, value = self._offset
            offset = value.unpack_from(head, position)[0]
            if offset != self.head:  # the pixels lie elsewhere in this file
                return read_at(fd, [plane], offset) + self.head
        return got
