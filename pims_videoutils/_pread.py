"""Reading planes from their offsets in a file: one ``preadv`` each, read-ahead for disk runs.

A plane in the page cache costs one ``preadv``, except small planes (up to
:data:`RUN_PLANE_BYTES`) read in a forward pass: there the system call would cost more than
copying the plane, so each thread reads the next :data:`RUN_BYTES` of the file at once and
copies the following planes out of them (see :meth:`PlaneReads.plane`). A thread has one such
window, whatever the number of files it reads (a dataset of many open files costs no more).

Where Linux offers it, each ``preadv`` is
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
import io
import os
import sys
import threading
from collections.abc import Callable

import numpy as np

from ._errors import StackReadError
from ._fork import renew_locks_after_fork

__all__ = ["READ_AHEAD_BYTES", "PlaneReads", "PositionalFile", "read_at"]

READ_AHEAD_BYTES = 8 << 20
#: Planes up to this size, read in a forward pass, are copied from a window of the file read
#: at once (:data:`RUN_BYTES`) rather than read one system call each.
RUN_PLANE_BYTES = 8 << 10
RUN_BYTES = 256 << 10
#: A read is part of a forward pass when it starts at most this far after the previous one
#: (on the same thread) ended: an IFD or the planes of other channels between, say.
RUN_GAP_BYTES = 16 << 10
_PREADV = getattr(os, "preadv", None)
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", None)
_SEEK_LOCK = threading.Lock()  # a seek and a read on a shared descriptor stay together


def _renew_locks_after_fork() -> None:
    """In a forked child: a new ``_SEEK_LOCK`` (see ``_fork``)."""
    global _SEEK_LOCK
    _SEEK_LOCK = threading.Lock()


renew_locks_after_fork(sys.modules[__name__])


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


class PositionalFile(io.RawIOBase):
    """An open file, read-only, whose seek position lives in this object (what tifffile gets).

    tifffile seeks and then reads. The position of an open file is shared by every process
    that inherited its descriptor (``fork``, as ``multiprocessing`` and
    ``ProcessPoolExecutor`` start workers on Linux), so a reader used in a process and its
    forked children would read at each other's positions (pages that fail to decode). This
    object reads with :func:`read_at` from its own position instead, which ``fork`` copies.
    Not thread-safe (a seek and its read belong together: callers hold their lock); closing
    it leaves ``file`` open.

    Parameters
    ----------
    file : io.FileIO
        The open file (its ``name`` names this one).
    """

    def __init__(self, file: io.FileIO) -> None:
        super().__init__()
        self._file = file
        self.name = file.name
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence == os.SEEK_END:
            offset += os.fstat(self.fileno()).st_size
        elif whence != os.SEEK_SET:
            raise ValueError(f"invalid whence ({whence})")
        if offset < 0:
            raise OSError(errno.EINVAL, f"negative seek position {offset}")
        self._position = offset
        return offset

    def readinto(self, buffer) -> int:
        done = read_at(self.fileno(), [buffer], self._position)
        self._position += done
        return done

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all to the end when negative) in one ``pread``.

        ``RawIOBase.read`` would read into a bytearray and copy it: a second copy of every
        compressed page tifffile reads.
        """
        if not hasattr(os, "pread"):  # (Windows: through readinto)
            return super().read(size)
        if size is None or size < 0:
            size = max(0, os.fstat(self.fileno()).st_size - self._position)
        data = os.pread(self.fileno(), size, self._position)
        self._position += len(data)
        return data


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
        A plane of up to :data:`RUN_PLANE_BYTES` that starts at most :data:`RUN_GAP_BYTES`
        after the end of the plane this thread read last (a forward pass) is copied from this
        thread's window of the file: the :data:`RUN_BYTES` from the first such plane on, read
        at once. The window serves only this thread's next planes of the pass: they hold the
        file's bytes as they were when the window was read.

        Raises
        ------
        StackReadError
            The file ends before the plane does.
        """
        swap = not dtype.isnative
        out = allocate(shape, dtype.newbyteorder("=") if swap else dtype)
        nbytes = out.nbytes
        if not (nbytes <= RUN_PLANE_BYTES and self._copy_from_run(out, offset, nbytes)):
            if self.read(out, offset) < nbytes:
                raise StackReadError(self.path, "file is shorter than when it was opened "
                                     f"(plane at byte {offset} is truncated)")
        if swap:
            out.byteswap(inplace=True)
        return out

    def _copy_from_run(self, out: np.ndarray, offset: int, nbytes: int) -> bool:
        """Fill ``out`` from this thread's window (read anew for a forward pass) if it can.

        Returns False when the plane is not part of a forward pass, or lies beyond the end of
        the file (the caller reads it, and reports a truncation).
        """
        try:
            run = _THREAD_RUN.run
        except AttributeError:
            run = _THREAD_RUN.run = _RunWindow()
        end = offset + nbytes
        if run.reads is not self or not run.start <= offset <= run.end - nbytes:
            last_end = run.last_end if run.reads is self else -RUN_BYTES
            run.reads, run.start, run.end, run.last_end = self, 0, 0, end
            if not 0 <= offset - last_end <= RUN_GAP_BYTES:
                return False
            if run.window is None:
                run.window = np.empty(RUN_BYTES, np.uint8)
                run.bytes = memoryview(run.window)
            run.start, run.end = offset, offset + self.read(run.window, offset)
            if end > run.end:
                return False
        run.last_end = end
        start = offset - run.start
        memoryview(out).cast("B")[:] = run.bytes[start : start + nbytes]
        return True

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


class _RunWindow:
    """One thread's window of a file for a forward pass over small planes.

    The bytes ``start``..``end`` of the file that ``reads`` reads are in ``window`` (allocated
    at the thread's first pass; ``bytes`` is a memoryview of it); ``last_end`` is where the
    thread's last small plane of that file ended. Reading another file starts afresh.
    """

    __slots__ = ("bytes", "end", "last_end", "reads", "start", "window")

    def __init__(self) -> None:
        self.reads: PlaneReads | None = None
        self.window: np.ndarray | None = None
        self.bytes: memoryview | None = None
        self.start = self.end = 0
        self.last_end = -RUN_BYTES


#: ``.run``: each thread's :class:`_RunWindow`.
_THREAD_RUN = threading.local()
