"""Reading planes from their offsets in a file: one ``preadv`` each, read-ahead for disk runs.

A plane in the page cache costs one ``preadv``. Where Linux offers it, that ``preadv`` is
made with ``RWF_NOWAIT``, which copies only what is cached and so also tells whether the plane
is. A plane that had to come (partly) from the disk, starting within :data:`READ_AHEAD_BYTES`
after the previous read, is part of a forward pass over a cold file: the kernel is then
asked (``posix_fadvise(WILLNEED)``) to read the next :data:`READ_AHEAD_BYTES` in the
background, which its own read-ahead (128 KiB on many systems) does not. The planes of that
run that arrive so keep the window going (advised again when less than half of it is left),
so the pass does not wait for the disk once per window. A jump (a random read) ends the run.
Reads that never met the disk are never advised, so a warm pass costs nothing extra.

Reads that tifffile makes (decoding a compressed page of 64 KiB or more) are announced with
:meth:`PlaneReads.will_read`, which advises their bytes exactly, and in a forward run the
window after them. Otherwise the kernel took the reads of the page's IFD, just before, for the
start of a sequential stream, and read two to four times the page's bytes from the disk.

Systems without ``os.preadv`` (Windows) read with a seek and a read under one lock.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

import numpy as np

from ._errors import StackReadError

__all__ = ["READ_AHEAD_BYTES", "PlaneReads", "read_at"]

READ_AHEAD_BYTES = 8 << 20
_PREADV = getattr(os, "preadv", None)
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
_SEEK_LOCK = threading.Lock()  # a seek and a read on a shared descriptor stay together


def read_at(fd: int, buffers: list[np.ndarray | bytearray], offset: int) -> int:
    """Fill the contiguous ``buffers`` one after another from ``offset``; return the bytes read.

    One system call where the OS has ``preadv``: fewer bytes than the buffers hold only at the
    end of the file (or, rarely, on an interrupted read: :class:`PlaneReads` continues).
    """
    if _PREADV is not None:
        return _PREADV(fd, buffers, offset)
    with _SEEK_LOCK:
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, sum(memoryview(buffer).nbytes for buffer in buffers))
    start = 0
    for buffer in buffers:
        piece = data[start : start + memoryview(buffer).nbytes]
        memoryview(buffer).cast("B")[: len(piece)] = piece
        start += len(piece)
    return len(data)


class PlaneReads:
    """Reads byte ranges of one open file (its descriptor ``fd``, owned by the caller).

    Thread-safe: the read-ahead bookkeeping is advisory, a race only moves an advice.
    ``path`` names the file in errors.
    """

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self._nowait = _NOWAIT if _PREADV is not None and _WILLNEED is not None else 0
        self._last_end: int | None = None  # end of the last read of a run (or disk read)
        self._advised_to = 0  # end of the advised window; 0: no run being read ahead

    def read_bytes(self, offset: int, nbytes: int) -> bytes:
        """Return the file's ``nbytes`` bytes from ``offset`` (one read; fewer at the end)."""
        out = bytearray(nbytes)
        return bytes(out[: read_at(self.fd, [out], offset)])

    def plane(
        self,
        shape: tuple[int, ...],
        dtype: np.dtype,
        offset: int,
        allocate: Callable[..., np.ndarray] = np.empty,
    ) -> np.ndarray:
        """Read the plane of ``shape`` and file ``dtype`` at ``offset`` into a fresh native array.

        ``allocate(shape, dtype)`` makes the array (``numpy.empty`` or another array type's).

        Raises
        ------
        StackReadError
            The file ends before the plane does.
        """
        swap = not dtype.isnative
        out = allocate(shape, dtype.newbyteorder("=") if swap else dtype)
        if self.read(out, offset) < out.nbytes:
            raise StackReadError(self.path, "file is shorter than when it was opened "
                                 f"(plane at byte {offset} is truncated)")
        if swap:
            out.byteswap(inplace=True)
        return out

    def read(self, out: np.ndarray, offset: int) -> int:
        """Fill the contiguous array ``out`` with the file's bytes from ``offset``.

        Returns
        -------
        int
            The bytes read: ``out.nbytes``, or fewer when the file ends before.
        """
        if self._nowait:
            done = self._read_cached(out, offset)
            if done < out.nbytes or self._advised_to:  # (a warm pass skips the call)
                self._read_ahead(offset, out.nbytes, from_disk=done < out.nbytes)
        else:
            done = read_at(self.fd, [out], offset)
        if done < out.nbytes:
            rest = out.reshape(-1).view(np.uint8)
            while done < out.nbytes:
                got = read_at(self.fd, [rest[done:]], offset + done)
                if got == 0:  # end of the file
                    break
                done += got
        return done

    def will_read(self, offset: int, nbytes: int) -> None:
        """Prepare for a read of ``nbytes`` from ``offset`` that tifffile makes next.

        The kernel is asked for exactly these bytes (a few microseconds when they are cached),
        and, in a forward run, for the window after them (see the module docstring). The cache
        is not probed first: an ``RWF_NOWAIT`` read of bytes not cached starts the kernel's own
        read-ahead.
        """
        if _WILLNEED is None or nbytes <= 0:
            return
        os.posix_fadvise(self.fd, offset, nbytes, _WILLNEED)
        self._read_ahead(offset, nbytes, from_disk=True)

    def _read_cached(self, out: np.ndarray, offset: int) -> int:
        """Read what of ``out``'s bytes the page cache holds (RWF_NOWAIT); return the count."""
        try:
            return _PREADV(self.fd, [out], offset, self._nowait)
        except BlockingIOError:  # nothing of the plane is cached
            return 0
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            self._nowait = 0  # a file system that cannot tell: plain reads from now on
            return 0

    def _read_ahead(self, offset: int, nbytes: int, from_disk: bool) -> None:
        """Advise read-ahead in a forward run that met the disk (see the module docstring)."""
        end = offset + nbytes
        last, self._last_end = self._last_end, end
        if last is None or not last <= offset <= last + READ_AHEAD_BYTES:
            self._advised_to = 0  # the first read, or a jump: a random access, no run
            return
        if not from_disk and not self._advised_to:
            return  # a cached run that never met the disk
        if self._advised_to >= end + READ_AHEAD_BYTES // 2:
            return  # half a window or more is already on its way
        start = max(end, self._advised_to)
        self._advised_to = end + READ_AHEAD_BYTES
        os.posix_fadvise(self.fd, start, self._advised_to - start, _WILLNEED)
