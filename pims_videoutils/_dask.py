"""Every plane of a reader as one lazy dask array (``PlanesND.to_dask``)."""

from __future__ import annotations

import math
import pickle
import sys
import threading
import uuid
import weakref
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import ReaderClosedError, StackReadError
from ._fork import renew_locks_after_fork

if TYPE_CHECKING:
    import dask.array

    from ._planes import PlanesND

__all__ = ["planes_to_dask"]

#: Bytes per chunk that ``to_dask()`` aims at by default: dask's own cost per chunk stays
#: small against reading it (benchmarks/bench_dask.py), and one plane of it computes in
#: milliseconds.
AUTO_CHUNK_BYTES = 8 << 20
#: Readers re-opened in this (worker) process, by the reader they stand for; the oldest is
#: dropped, and closed once no task holds it (see :func:`_let_go`).
_REOPENED: dict[tuple[str, bytes], PlanesND] = {}
_MAX_REOPENED = 16
#: How many GraphReaders of this process hold each re-opened reader (by its id).
_HOLDERS: dict[int, int] = {}
#: Guards _REOPENED and _HOLDERS (re-entrant: a holder's finaliser may run during any
#: allocation, also in a thread that holds it).
_REOPENED_LOCK = threading.RLock()
#: A name for each reader of this process that a graph holds: what workers cache by.
_GRAPH_KEYS: weakref.WeakKeyDictionary[PlanesND, str] = weakref.WeakKeyDictionary()


def _renew_locks_after_fork() -> None:
    """In a forked child: a new :data:`_REOPENED_LOCK` (see ``_fork``)."""
    global _REOPENED_LOCK
    _REOPENED_LOCK = threading.RLock()


renew_locks_after_fork(sys.modules[__name__])


def planes_to_dask(reader: PlanesND, chunks: Mapping[str, int] | None = None) -> dask.array.Array:
    """See :meth:`PlanesND.to_dask`."""
    try:
        import dask.array as da
        from dask.base import tokenize
    except ImportError as exc:
        raise ImportError("to_dask needs dask: pip install 'pims-videoutils[dask]'") from exc
    if chunks is not None and not isinstance(chunks, Mapping):
        raise TypeError(f"chunks must be a mapping of axis to planes per chunk, such as "
                        f"{{'z': -1}}, not {type(chunks).__name__}")
    sizes = dict(reader.sizes)
    outer_axes = [axis for axis in sizes if axis not in reader.plane_axes]
    unknown = set(chunks or {}) - set(outer_axes)
    if unknown:
        raise ValueError(f"chunks: {sorted(unknown)} are not axes outside the planes "
                         f"({''.join(outer_axes) or 'none'}); a chunk holds whole planes")
    dtype = reader.pixel_type
    plane_shape = [sizes[axis] for axis in reader.plane_axes]
    if chunks is None:
        chunks = _auto_chunks(outer_axes, sizes, math.prod(plane_shape) * dtype.itemsize)
    outer_chunks = tuple(_axis_chunks(axis, sizes[axis], chunks.get(axis, 1))
                         for axis in outer_axes)
    plane_chunks = tuple((size,) for size in plane_shape)
    all_chunks = outer_chunks + plane_chunks
    graph_reader = GraphReader(reader)
    # The name names the blocks: arrays of one file with other chunks must not share it, nor
    # arrays of two readers of one path (the file may have been replaced in between).
    token = tokenize(graph_reader.key, all_chunks, dtype.str)
    return da.map_blocks(
        _read_block,
        dtype=dtype,
        chunks=all_chunks,
        meta=np.empty((0,) * len(sizes), dtype),
        name=f"{type(reader).__name__.lower()}-{token}",
        reader=graph_reader,
        outer_axes=outer_axes,
    )


def _auto_chunks(outer_axes: list[str], sizes: dict[str, int],
                 plane_nbytes: int) -> dict[str, int]:
    """Planes per chunk along each axis for chunks of up to :data:`AUTO_CHUNK_BYTES`.

    Whole innermost axes first (``c``, then ``z``... of ``tzcyx``), then part of the next one:
    chunks of contiguous planes, one plane each where a plane is that big already.
    """
    budget = max(1, AUTO_CHUNK_BYTES // plane_nbytes)  # planes per chunk
    chunks = {}
    for axis in reversed(outer_axes):
        chunks[axis] = min(budget, sizes[axis])
        budget = max(1, budget // sizes[axis])
    return chunks


def _axis_chunks(axis: str, size: int, chunk: Any) -> tuple[int, ...]:
    """Chunk sizes along one axis of ``size`` for a requested ``chunk`` (-1: the whole axis)."""
    if chunk == -1:
        return (size,)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunks[{axis!r}] must be a positive integer or -1, not {chunk!r}")
    chunk = int(chunk)
    return (chunk,) * (size // chunk) + ((size % chunk,) if size % chunk else ())


class GraphReader:
    """The reader in a dask graph.

    In this process it is the reader itself. Pickled to a worker process (each task is), it
    is the one reader that worker re-opened for it, not a reader re-opened per task, checked
    to still have the axes and pixel type the array was built with. Workers that outlive a
    computation (a reused pool, dask.distributed) keep that reader for this one only: a
    reader opened here after the file was replaced gets the new file there too. They keep
    the last 16 such readers, and close one they drop when no task holds it any more.
    """

    def __init__(self, reader: PlanesND) -> None:
        self.reader = reader
        self.layout = (tuple(reader.sizes.items()), reader.pixel_type.str, _label(reader))
        self.key = _GRAPH_KEYS.setdefault(reader, uuid.uuid4().hex)
        self._pickled_reader: bytes | None = None

    def __reduce__(self):
        if self.reader.closed:  # as a read in this process would
            raise ReaderClosedError(f"{self.reader!r}: computed after close()")
        if self._pickled_reader is None:
            # once for all tasks, compressed: a list of 1000 files pickles to ~50 KB (a task
            # reads planes by their coordinates, whatever the axis settings pickled with it)
            self._pickled_reader = zlib.compress(pickle.dumps(self.reader), 1)
        return (_reopened, (self._pickled_reader, self.layout, self.key))


def _label(reader: PlanesND) -> str:
    """Name the reader's file, or its sequence's files, as error messages do."""
    path = getattr(reader, "path", None)
    if path is not None:
        return path
    from .sequence import _source_label

    return _source_label(reader._source)


def _reopened(pickled_reader: bytes, layout: tuple[tuple, str, str], key: str) -> GraphReader:
    """Unpickle a :class:`GraphReader`: the reader this process already re-opened, or a new one.

    ``pickled_reader`` is the reader, pickled and compressed; it is part of the cache key:
    the reader pickled with other axis settings (for another graph) is another reader.

    Raises
    ------
    StackReadError
        The file now has other axes, sizes or pixel type than when the array was built.
    """
    key = (key, pickled_reader)
    with _REOPENED_LOCK:
        reader = _REOPENED.get(key)
    if reader is None:
        # (outside the lock: a dataset may take long to open)
        opened = pickle.loads(zlib.decompress(pickled_reader))
        with _REOPENED_LOCK:
            reader = _REOPENED.setdefault(key, opened)
            if len(_REOPENED) > _MAX_REOPENED:
                _close_unless_held(_REOPENED.pop(next(iter(_REOPENED))))
        if reader is not opened:  # another thread re-opened it meanwhile
            opened.close()
    with _REOPENED_LOCK:
        _HOLDERS[id(reader)] = _HOLDERS.get(id(reader), 0) + 1
    graph_reader = GraphReader(reader)
    weakref.finalize(graph_reader, _let_go, reader)
    sizes, dtype, label = layout
    now = (tuple(reader.sizes.items()), reader.pixel_type.str)
    if now != (sizes, dtype):  # axes compared in order
        raise StackReadError(label, f"changed since the dask array was built: sizes "
                                    f"{dict(now[0])}, dtype {now[1]} "
                                    f"(were {dict(sizes)}, {dtype})")
    return graph_reader


def _let_go(reader: PlanesND) -> None:
    """Count off a GraphReader of ``reader`` that is gone.

    The last one of a reader dropped from the cache closes it.
    """
    with _REOPENED_LOCK:
        _HOLDERS[id(reader)] -= 1
        if not _HOLDERS[id(reader)]:
            del _HOLDERS[id(reader)]
            if not any(cached is reader for cached in _REOPENED.values()):
                reader.close()


def _close_unless_held(reader: PlanesND) -> None:
    """Close a reader dropped from the cache, unless a task holds it (its last one will)."""
    if not _HOLDERS.get(id(reader)):
        reader.close()


def _read_block(reader: GraphReader, outer_axes: list[str], block_info: dict) -> np.ndarray:
    """Read the planes of one chunk (the reader is thread-safe).

    A chunk of one plane is the plane as read. Planes of a chunk of several are read straight
    into it where the reader numbers its planes (``PlanesND._read_plane`` with the chunk's
    slice as the array to fill), else through ``get_plane`` and copied in.
    """
    planes = reader.reader  # map_blocks passes its keyword as ``reader``
    location = block_info[None]["array-location"]
    shape = tuple(stop - start for start, stop in location)
    outer_shape = shape[: len(outer_axes)]
    starts = [start for start, _ in location[: len(outer_axes)]]
    if math.prod(outer_shape) == 1:
        coords = dict(zip(outer_axes, starts, strict=True))
        return np.asarray(planes.get_plane(**coords)).reshape(shape)
    block = np.empty(shape, planes.pixel_type)
    strides = planes._plane_numbering()
    for index in np.ndindex(*outer_shape):
        out = block[index]
        coords = [start + i for start, i in zip(starts, index, strict=True)]
        if strides is None:
            out[...] = planes.get_plane(**dict(zip(outer_axes, coords, strict=True)))
            continue
        number = sum(c * strides[axis] for axis, c in zip(outer_axes, coords, strict=True))
        plane = planes._read_plane(number, lambda *_, out=out: out)
        if not np.may_share_memory(plane, out):  # decoded, filled or zero-copy planes
            out[...] = plane
    return block
