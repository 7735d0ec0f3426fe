"""Fast, vectorised walk of a TIFF IFD chain that proves a multi-page file is uniform.

Building tifffile's series of a plain 100,000-page file reads every IFD into a Python object
(about 2 s). This walker reads only what it must, straight from a read-only mapping:

1. The chain. From an IFD at ``o`` whose successor is at ``o + d``, it *guesses* that IFDs
   continue at ``o + k*d`` and checks, with strided numpy views (in chunks growing 4x), that
   each guessed IFD has the same tag count and a next pointer equal to the following guess.
   The checked prefix is proven by induction (each link is read from the file, none assumed);
   the walk resumes one IFD at a time where the guess breaks. Pointers outside the file and
   loops are errors, not hangs.
2. The pages. The tag entries of each run of IFDs with a constant spacing are copied in one
   strided pass into a ``(pages, tags)`` structured array; every layout-defining tag (subfile
   type, size, samples, bits, sample format, compression, photometric, planar configuration,
   predictor, fill order, rows per strip, depth; tiled pages are refused) must have the same
   type, count and value bytes as page 0, and strip offsets/byte counts must make one contiguous
   block of the expected size per page.

Anything that cannot be proven this way returns None, and the caller takes tifffile's safe path.
:func:`data_offsets` makes the same checks for the IFDs of the pages of a tifffile series.
"""

from __future__ import annotations

import ctypes
import math
import mmap
import struct
from dataclasses import dataclass

import numpy as np

# TIFF tag codes whose values define what a page is and how its bytes become pixels
_LAYOUT_TAGS = (254, 256, 257, 258, 259, 262, 266, 277, 278, 284, 317, 322, 323, 339, 32997)
_STRIP_OFFSETS, _STRIP_BYTECOUNTS = 273, 279
_REFUSED_TAGS = (322, 323, 330)  # tiles, SubIFDs: left to tifffile by the walker
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}
_INT_TYPE = {3: "u2", 4: "u4", 16: "u8", 13: "u4", 18: "u8"}
_MAX_TAGS = 4096
# how a page's bytes become pixels: the layout tags, tile size, extra samples, JPEG tables,
# YCbCr subsampling; pages that agree on all of them may be decoded with each other's properties
_SIGNATURE_TAGS = frozenset((*_LAYOUT_TAGS, 322, 323, 338, 347, 530))
# where a page's strips (or tiles) lie and how long they are
_SEGMENT_TAGS = {_STRIP_OFFSETS: "offsets", _STRIP_BYTECOUNTS: "counts", 324: "offsets",
                 325: "counts"}
_MAX_SEGMENTS = 1 << 20  # strips or tiles of a page read by page_tags (else tifffile parses it)
_MAX_RUNS = 256  # more irregular runs than this (compressed pages): tifffile builds the series
#: IFD pages less than this apart are advised to the kernel as one range (see _will_need)
ADVICE_GAP = 1 << 16


def _libc_mincore():
    """``mincore(addr, length, vec)`` of the C library, or None (not on Windows)."""
    try:
        function = ctypes.CDLL(None).mincore
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


_MINCORE = _libc_mincore()


@dataclass(frozen=True)
class Pages:
    """The proven pages of a uniform file.

    Attributes
    ----------
    ifd_offsets : numpy.ndarray
        int64 offset of every IFD, in chain order.
    data_offsets : numpy.ndarray or None
        int64 offset of every page's single contiguous data block, when page 0 is uncompressed
        and every page's strips are contiguous with the expected size; else None.
    """

    ifd_offsets: np.ndarray
    data_offsets: np.ndarray | None


def duplicated_layout_tag(codes) -> int | None:
    """Return a layout-defining or strip/tile tag code that ``codes`` (an IFD's) hold twice.

    TIFF readers differ on such a page (tifffile takes the first value, others the last):
    its pixels are not defined, and the readers refuse it.
    """
    seen = set()
    for code in codes:
        code = int(code)
        if code in _SIGNATURE_TAGS or code in _SEGMENT_TAGS:
            if code in seen:
                return code
            seen.add(code)
    return None


class _Corrupt(Exception):
    """The chain is broken: a pointer outside the file, a loop, an impossible IFD."""


class _Unproven(Exception):
    """The pages could not be proven uniform: take tifffile's path."""


@dataclass(frozen=True)
class _Format:
    byteorder: str
    count_fmt: str
    count_size: int
    entry_size: int
    pointer_fmt: str
    pointer_size: int

    @classmethod
    def of(cls, byteorder: str, bigtiff: bool) -> _Format:
        if bigtiff:
            return cls(byteorder, "Q", 8, 20, "Q", 8)
        return cls(byteorder, "H", 2, 12, "I", 4)

    def entry_dtype(self) -> np.dtype:
        bo, ptr = self.byteorder, self.pointer_size
        return np.dtype([("code", bo + "u2"), ("type", bo + "u2"), ("count", f"{bo}u{ptr}"),
                         ("value", f"V{ptr}")])


def walk(buf, byteorder: str, bigtiff: bool, first: int, page0) -> Pages | str | None:
    """Walk and verify the IFD chain of a file.

    Parameters
    ----------
    buf : buffer
        The whole file (a read-only ``mmap``); no view of it outlives this call.
    byteorder : str
        ``'<'`` or ``'>'``.
    bigtiff : bool
        BigTIFF offsets and counts.
    first : int
        Offset of IFD 0.
    page0 : tifffile.TiffPage
        Page 0 as parsed by tifffile (for the plane size and compression).

    Returns
    -------
    Pages or str or None
        The proven pages; a reason string when the chain is corrupt; None when uniformity cannot
        be proven (use tifffile).
    """
    try:
        return _walk(buf, _Format.of(byteorder, bigtiff), first, page0)
    except _Corrupt as exc:
        return str(exc)
    except (_Unproven, ValueError, TypeError, IndexError):
        # ValueError & co: numpy refused a view the bounds checks should have excluded; the
        # layout is then not proven, and tifffile's own parser takes over.
        return None


def _walk(buf, fmt: _Format, first: int, page0) -> Pages:
    size = len(buf)
    runs = _chain(buf, fmt, first, size)
    entries = [_entries(buf, fmt, run) for run in runs]
    reference = _layout_values(buf, fmt, entries[0], size)
    for run_entries in entries[1:]:
        if not _equal_values(_layout_values(buf, fmt, run_entries, size), reference):
            raise _Unproven
    ifd_offsets = np.concatenate(
        [start + step * np.arange(count, dtype=np.int64) for start, step, count, _ in runs])
    data_offsets = None
    if page0.compression == 1 and not page0.is_tiled:
        plane_nbytes = math.prod(page0.shape) * page0.dtype.itemsize
        parts = [_data_offsets(buf, fmt, e, plane_nbytes, size) for e in entries]
        if all(p is not None for p in parts):
            data_offsets = np.concatenate(parts)
    return Pages(ifd_offsets, data_offsets)


def _head(buf, fmt: _Format, offset: int, size: int) -> tuple[int, int]:
    """Return (number of tags, next IFD offset) of the IFD at ``offset``."""
    if offset < 8 or offset + fmt.count_size > size:
        raise _Corrupt(f"IFD pointer {offset} lies outside the file ({size} bytes)")
    (ntags,) = struct.unpack_from(fmt.byteorder + fmt.count_fmt, buf, offset)
    if not 0 < ntags <= _MAX_TAGS:
        raise _Corrupt(f"corrupt IFD at byte {offset} ({ntags} tags)")
    end = offset + fmt.count_size + ntags * fmt.entry_size
    if end + fmt.pointer_size > size:
        raise _Corrupt(f"IFD at byte {offset} runs past the end of the file (truncated)")
    (nxt,) = struct.unpack_from(fmt.byteorder + fmt.pointer_fmt, buf, end)
    return ntags, nxt


def _chain(buf, fmt: _Format, first: int, size: int) -> list[tuple[int, int, int, int]]:
    """Return runs (start, step, count, ntags) of IFDs covering the whole chain, in order."""
    runs: list[tuple[int, int, int, int]] = []
    progressions: list[tuple[int, int, int, int]] = []  # the runs of several IFDs
    singles: set[int] = set()
    offset = first
    while offset:
        if offset in singles or any(
            start <= offset <= start + step * (count - 1) and (offset - start) % step == 0
            for start, step, count, _ in progressions
        ):
            raise _Corrupt(f"IFD chain loops back to byte {offset}")
        ntags, nxt = _head(buf, fmt, offset, size)
        count, step = 1, 0
        if nxt > offset:
            step = nxt - offset
            count = _progression(buf, fmt, offset, step, ntags, size)
        if count > 1:
            nxt = offset + step * count
        else:
            singles.add(offset)
        runs.append((offset, step if count > 1 else 0, count, ntags))
        if count > 1:
            progressions.append(runs[-1])
        if len(runs) > _MAX_RUNS:
            raise _Unproven
        offset = nxt
    return runs


def _progression(buf, fmt: _Format, start: int, step: int, ntags: int, size: int) -> int:
    """Count the IFDs from ``start`` that provably follow each other at ``step`` bytes (>= 1).

    Guesses are checked in chunks growing 4x, so a guess that breaks early (IFDs packed before
    the data, then pixels) costs little and does not touch the rest of the file. The pages of
    a chunk's IFDs are all asked for before any is read (:func:`_will_need`).
    """
    head_len = fmt.count_size + ntags * fmt.entry_size + fmt.pointer_size
    guesses = (size - start - head_len) // step + 1
    if guesses < 2:
        return 1
    bo = fmt.byteorder
    counts = np.ndarray((guesses,), f"{bo}u{fmt.count_size}", buf, start, (step,))
    nexts = np.ndarray((guesses,), f"{bo}u{fmt.pointer_size}", buf,
                       start + head_len - fmt.pointer_size, (step,))
    done, chunk = 0, 64
    while done < guesses:
        end = min(guesses, done + chunk)
        guessed = start + step * np.arange(done, end + 1, dtype=np.int64)  # IFDs done..end
        _will_need(buf, guessed[:-1], head_len)
        expected = guessed[1:]  # each guessed IFD's successor
        linked = (counts[done:end] == ntags) & (nexts[done:end].astype(np.int64) == expected)
        if not linked.all():
            return max(1, done + int(np.argmin(linked)))
        done, chunk = end, chunk * 4
    return guesses


def _will_need(buf, offsets: np.ndarray, length: int) -> None:
    """Ask the kernel to read the ``length`` bytes at each (ascending) offset, all at once.

    Their reads are queued together (``MADV_WILLNEED``) instead of each page fault waiting
    for its own read (IFDs far apart, in a mapping advised ``MADV_RANDOM``) or for the
    kernel's read-ahead (IFDs close together: the disk then works at a fraction of its
    speed). Pages less than :data:`ADVICE_GAP` bytes apart are advised as one range, the pages
    between included (a page fault there would read them anyway): one advice for a chunk of
    IFDs that lie between small planes, not one per IFD. When the first and last of these
    pages are already cached (``mincore``), the file is taken as warm and nothing is advised
    (an advice costs about 1.5 us).
    """
    size = mmap.PAGESIZE
    firsts = offsets // size
    lasts = (offsets + length - 1) // size
    if _cached(buf, int(firsts[0])) and _cached(buf, int(lasts[-1])):
        return
    breaks = np.flatnonzero(firsts[1:] - lasts[:-1] > ADVICE_GAP // size) + 1
    starts = firsts[np.concatenate(([0], breaks))].tolist()
    ends = lasts[np.concatenate((breaks - 1, [len(lasts) - 1]))].tolist()
    for first, last in zip(starts, ends, strict=True):
        buf.madvise(mmap.MADV_WILLNEED, first * size, (last - first + 1) * size)


def _cached(buf, page: int) -> bool:
    """Tell whether page ``page`` of the mapping ``buf`` is in the page cache (False: unknown)."""
    if _MINCORE is None:
        return False
    flag = ctypes.c_ubyte(0)
    mapping = np.frombuffer(buf, np.uint8)  # for its address; gone when this returns
    if _MINCORE(mapping.ctypes.data + page * mmap.PAGESIZE, mmap.PAGESIZE, ctypes.byref(flag)):
        return False
    return bool(flag.value & 1)


def _entries(buf, fmt: _Format, run: tuple[int, int, int, int]) -> np.ndarray:
    """Copy the tag entries of a run of IFDs into one ``(pages, tags)`` structured array.

    One strided pass over the file: the IFDs of large pages lie far apart, and reading every
    field separately from the mapping would cost a cache and TLB miss per page and field.
    """
    start, step, count, ntags = run
    block = np.ndarray((count,), f"V{ntags * fmt.entry_size}", buf, start + fmt.count_size,
                       (step,))
    entries = np.ascontiguousarray(block).view(fmt.entry_dtype()).reshape(count, ntags)
    if not (entries["code"] == entries["code"][:1]).all():
        raise _Unproven
    return entries


def _tag_bytes(buf, fmt: _Format, entries: np.ndarray, j: int, size: int):
    """(type, count, (pages, nbytes) uint8 value bytes) of tag column ``j``; inline or not."""
    column = entries[:, j]
    types, counts = column["type"], column["count"]
    typ, cnt = int(types[0]), int(counts[0])
    if typ not in _TYPE_SIZE or not ((types == typ).all() and (counts == cnt).all()):
        raise _Unproven
    nbytes = cnt * _TYPE_SIZE[typ]
    raw = np.ascontiguousarray(column["value"]).view(np.uint8).reshape(len(column), -1)
    if nbytes <= fmt.pointer_size:
        return typ, cnt, raw[:, :nbytes]
    pointers = raw.view(f"{fmt.byteorder}u{fmt.pointer_size}")[:, 0].astype(np.int64)
    if pointers.min() < 0 or pointers.max() + nbytes > size:
        raise _Corrupt("a tag value lies outside the file")
    data = np.frombuffer(buf, np.uint8)
    return typ, cnt, data[pointers[:, None] + np.arange(nbytes)]


def _layout_values(buf, fmt: _Format, entries: np.ndarray, size: int,
                   refused: tuple[int, ...] = _REFUSED_TAGS) -> dict:
    """``{code: ((type, count), value bytes)}`` of the layout tags, the same in every page.

    ``entries``: ``(pages, tags)``, the same tag codes in every page. Raises _Unproven when
    the pages differ, or hold a tag of ``refused``; _Corrupt when they hold a layout tag twice.
    """
    codes = [int(c) for c in entries["code"][0]]
    duplicated = duplicated_layout_tag(codes)
    if duplicated is not None:
        raise _Corrupt(f"an IFD holds tag {duplicated} twice (a corrupt page)")
    if any(code in codes for code in refused):
        raise _Unproven
    if len(entries) > 1 and _same_entries_in_every_page(
            entries, [codes.index(code) for code in _LAYOUT_TAGS if code in codes]):
        entries = entries[:1]  # page 0's entries, and the bytes they point to, are every page's
    values = {}
    for code in _LAYOUT_TAGS:
        if code in codes:
            typ, cnt, data = _tag_bytes(buf, fmt, entries, codes.index(code), size)
            if not (data == data[:1]).all():
                raise _Unproven
            values[code] = ((typ, cnt), data[0].copy())
    return values


def _same_entries_in_every_page(entries: np.ndarray, columns: list[int]) -> bool:
    """Tell whether the tag entries of ``columns`` hold the same bytes in every page.

    One comparison of the whole entries (a few ms for 100,000 pages), where checking each
    tag's type, count and value apart costs about five times more. Entries that differ only
    where no value is (the unused bytes of a short value) are not the same here: the caller
    then compares the values tag by tag.
    """
    rows = entries.view(np.uint8).reshape(len(entries), -1)
    same_bytes = (rows == rows[0]).all(axis=0).reshape(entries.shape[1], -1)
    return bool(same_bytes[columns].all())


def _equal_values(values: dict, reference: dict) -> bool:
    """Tell whether two results of :func:`_layout_values` are the same layout."""
    return values.keys() == reference.keys() and all(
        values[k][0] == reference[k][0] and np.array_equal(values[k][1], reference[k][1])
        for k in values)


def _data_offsets(buf, fmt: _Format, entries: np.ndarray, plane_nbytes: int,
                  size: int) -> np.ndarray | None:
    """Offset of each page's data when its strips form one block of ``plane_nbytes``.

    Raises _Corrupt for an offset or byte count beyond any file (2**63 or more).
    """
    codes = [int(c) for c in entries["code"][0]]
    if _STRIP_OFFSETS not in codes or _STRIP_BYTECOUNTS not in codes:
        return None
    columns = []
    for code in (_STRIP_OFFSETS, _STRIP_BYTECOUNTS):
        typ, _, data = _tag_bytes(buf, fmt, entries, codes.index(code), size)
        if typ not in _INT_TYPE:
            return None
        columns.append(np.ascontiguousarray(data).view(fmt.byteorder + _INT_TYPE[typ])
                       .astype(np.int64))
    offsets, counts = columns
    if offsets.shape != counts.shape:
        return None
    if offsets.min() < 0 or counts.min() < 0:  # BigTIFF values of 2**63 or more
        raise _Corrupt("a strip offset or byte count lies outside the file")
    if not (counts.sum(axis=1) == plane_nbytes).all():
        return None
    if not (offsets[:, 1:] == offsets[:, :-1] + counts[:, :-1]).all():
        return None
    return offsets[:, 0].copy()


def data_offsets(buf, byteorder: str, bigtiff: bool, ifd_offsets: np.ndarray,
                 plane_nbytes: int) -> np.ndarray | None:
    """Return where the data of each IFD's page lie, if the IFDs provably define one layout.

    Their layout-defining tags (size, samples, bits, sample format, compression, strips or
    tiles...; see the module docstring) must have the same type, count and value bytes in every
    IFD, and each page's strips must form one block of ``plane_nbytes``. Vectorised: the
    entries of IFDs with one tag list are copied at once.

    Parameters
    ----------
    buf : buffer
        The whole file (a read-only ``mmap``); no view of it outlives this call.
    byteorder, bigtiff
        The file's format.
    ifd_offsets : numpy.ndarray
        int64 offsets of the IFDs.
    plane_nbytes : int
        Bytes of a page's data.

    Returns
    -------
    numpy.ndarray or None
        int64 offset of each page's data, in the order of ``ifd_offsets``; None when not
        proven (also when an IFD or a value lies outside the file).
    """
    fmt = _Format.of(byteorder, bigtiff)
    offsets = np.asarray(ifd_offsets, np.int64)
    result = np.empty(len(offsets), np.int64)
    reference = None
    try:
        for positions, entries in _entries_by_tag_list(buf, fmt, offsets):
            values = _layout_values(buf, fmt, entries, len(buf), refused=())
            if reference is None:
                reference = values
            elif not _equal_values(values, reference):
                return None
            starts = _data_offsets(buf, fmt, entries, plane_nbytes, len(buf))
            if starts is None:
                return None
            result[positions] = starts
    except (_Corrupt, _Unproven, ValueError, TypeError, IndexError):  # (as in walk)
        return None
    return result


def _entries_by_tag_list(buf, fmt: _Format, offsets: np.ndarray):
    """Yield ``(positions, entries)``: the IFDs at ``offsets[positions]`` have one tag list.

    ``entries`` is their ``(IFDs, tags)`` structured array, copied from the file. Raises
    _Corrupt for an IFD outside the file or with an impossible tag count.
    """
    size = len(buf)
    if not len(offsets):
        return
    if offsets.min() < 8 or offsets.max() + fmt.count_size > size:
        raise _Corrupt("an IFD lies outside the file")
    data = np.frombuffer(buf, np.uint8)

    def rows(starts: np.ndarray, nbytes: int) -> np.ndarray:
        """Copy the ``nbytes`` bytes from each of ``starts`` (in the file): one row each."""
        return np.lib.stride_tricks.sliding_window_view(data, nbytes)[starts]

    counts = (rows(offsets, fmt.count_size).view(f"{fmt.byteorder}u{fmt.count_size}")[:, 0]
              .astype(np.int64))
    for ntags in np.unique(counts).tolist():
        positions = np.flatnonzero(counts == ntags)
        nbytes = ntags * fmt.entry_size
        if not 0 < ntags <= _MAX_TAGS or offsets[positions].max() + fmt.count_size + nbytes > size:
            raise _Corrupt(f"an IFD with {ntags} tags does not fit the file")
        entries = rows(offsets[positions] + fmt.count_size, nbytes).view(fmt.entry_dtype())
        while len(positions):  # the IFDs with the tag codes of the first left, then the rest
            same_codes = (entries["code"] == entries["code"][0]).all(axis=1)
            yield positions[same_codes], entries[same_codes]
            positions, entries = positions[~same_codes], entries[~same_codes]


def _read_tag_count(read, fmt: _Format, offset: int) -> int | None:
    """Read the tag count of the IFD at ``offset`` with ``read`` (None: the file ends first)."""
    head = read(offset, fmt.count_size)
    if len(head) < fmt.count_size:
        return None
    return struct.unpack(fmt.byteorder + fmt.count_fmt, head)[0]


def next_ifd(read, byteorder: str, bigtiff: bool, offset: int) -> int | None:
    """Return the next-IFD pointer of the IFD at ``offset`` (None: the IFD cannot be read).

    ``read(offset, nbytes) -> bytes`` reads the file (fewer bytes at its end).
    """
    fmt = _Format.of(byteorder, bigtiff)
    ntags = _read_tag_count(read, fmt, offset)
    if ntags is None:
        return None
    pointer = read(offset + fmt.count_size + ntags * fmt.entry_size, fmt.pointer_size)
    if len(pointer) < fmt.pointer_size:
        return None
    return struct.unpack(byteorder + fmt.pointer_fmt, pointer)[0]


@dataclass(frozen=True)
class PageTags:
    """What :func:`page_tags` reads of one IFD.

    ``signature``: the layout-defining tags, ``{code: (type, count, value bytes)}``. Two pages
    with equal signatures have the same size, samples, sample type, compression, predictor,
    JPEG tables, strip or tile layout... everything but where their data lie: one can be
    decoded as a lightweight ``tifffile.TiffFrame`` of the other. ``dataoffsets``,
    ``databytecounts``: where this page's strips or tiles lie.
    """

    signature: dict
    dataoffsets: tuple[int, ...]
    databytecounts: tuple[int, ...]


def page_tags(read, byteorder: str, bigtiff: bool, offset: int) -> PageTags | None:
    """Read the layout-defining tags and the data segments of the IFD at ``offset``.

    Parameters
    ----------
    read : callable
        ``read(offset, nbytes) -> bytes`` of the file (fewer bytes at its end).
    byteorder, bigtiff
        The file's format.
    offset : int
        The IFD.

    Returns
    -------
    PageTags or None
        None when the IFD cannot be read this way (truncated, an unknown tag type, more than
        4096 values in a layout tag or 2**20 strips or tiles, no or unequal strip offsets and
        byte counts): the caller lets tifffile parse it, and report what is wrong.

    Raises
    ------
    ValueError
        The IFD holds a layout-defining or strip/tile tag twice (see
        :func:`duplicated_layout_tag`).
    """
    fmt = _Format.of(byteorder, bigtiff)
    ntags = _read_tag_count(read, fmt, offset)
    if ntags is None or not 0 < ntags <= _MAX_TAGS:
        return None
    table = read(offset + fmt.count_size, ntags * fmt.entry_size)
    if len(table) < ntags * fmt.entry_size:
        return None
    entry = struct.Struct(f"{byteorder}HH{fmt.pointer_fmt}{fmt.pointer_size}s")
    entries = list(entry.iter_unpack(table))
    duplicated = duplicated_layout_tag(code for code, *_ in entries)
    if duplicated is not None:
        raise ValueError(f"its IFD holds tag {duplicated} twice (a corrupt page)")
    signature, segments = {}, {}
    for code, typ, count, value in entries:
        if code not in _SIGNATURE_TAGS and code not in _SEGMENT_TAGS:
            continue
        if typ not in _TYPE_SIZE or count > (_MAX_SEGMENTS if code in _SEGMENT_TAGS
                                             else _MAX_TAGS):
            return None
        nbytes = count * _TYPE_SIZE[typ]
        if nbytes > fmt.pointer_size:  # stored elsewhere
            value = read(struct.unpack(byteorder + fmt.pointer_fmt, value)[0], nbytes)
            if len(value) < nbytes:
                return None
        value = value[:nbytes]
        if code in _SIGNATURE_TAGS:
            signature[code] = (typ, count, value)
        elif typ in _INT_TYPE:
            segments[_SEGMENT_TAGS[code]] = tuple(
                np.frombuffer(value, byteorder + _INT_TYPE[typ]).tolist())
    offsets, counts = segments.get("offsets"), segments.get("counts")
    if not offsets or counts is None or len(offsets) != len(counts):
        return None
    return PageTags(signature, offsets, counts)
