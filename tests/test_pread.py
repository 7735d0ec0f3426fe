"""PlaneReads: exact bytes, short reads at the end, and read-ahead only for runs from the disk."""

from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile

from pims_videoutils import StackReadError, _pread
from pims_videoutils._pread import PlaneReads, read_at
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND

PLANE = 1 << 16  # bytes per plane of the simulated file
WINDOW = 8 * PLANE  # the read-ahead window in the simulations


@pytest.fixture
def data_file(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 40 * PLANE + 123, dtype=np.uint8)
    path = tmp_path / "data.bin"
    data.tofile(path)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def test_reads_the_bytes_at_any_offset_and_stops_at_the_end(data_file):
    fd, data = data_file
    reads = PlaneReads(fd, "data.bin")
    for offset in (0, 7, PLANE, 39 * PLANE + 1):
        out = np.empty(PLANE, np.uint8)
        assert reads.read(out, offset) == PLANE
        np.testing.assert_array_equal(out, data[offset : offset + PLANE])
    out = np.empty(PLANE, np.uint8)
    assert reads.read(out, data.size - 100) == 100  # the file ends: fewer bytes, no error
    np.testing.assert_array_equal(out[:100], data[-100:])


@pytest.mark.parametrize("has_preadv", [True, False])
def test_read_at_fills_the_buffers_one_after_another(data_file, monkeypatch, has_preadv):
    """One read scatters into a head and a plane (the folder reader's read), also without
    preadv (Windows); at the end of the file the buffers get what there is, in order."""
    fd, data = data_file
    if not has_preadv:
        monkeypatch.setattr(_pread, "_PREADV", None)
    head, plane = bytearray(7), np.empty((3, 5), np.uint16)
    assert read_at(fd, [head, plane], 100) == 37
    assert bytes(head) == data[100:107].tobytes()
    np.testing.assert_array_equal(plane.view(np.uint8).ravel(), data[107:137])
    assert read_at(fd, [head, plane], data.size - 10) == 10
    assert bytes(head) == data[-10:-3].tobytes()
    np.testing.assert_array_equal(plane.view(np.uint8).ravel()[:3], data[-3:])


class FakeDisk:
    """Stands in for the page cache: ``cached`` offsets are served by RWF_NOWAIT reads."""

    def __init__(self, monkeypatch, nowait_error=None):
        self.cached: set[int] = set()
        self.advice: list[tuple[int, int]] = []
        self.nowait_error = nowait_error
        real_preadv = os.preadv

        def preadv(fd, buffers, offset, flags=0):
            if flags:
                if self.nowait_error is not None:
                    raise OSError(self.nowait_error, os.strerror(self.nowait_error))
                if offset not in self.cached:
                    raise BlockingIOError(errno.EAGAIN, "would block")
            return real_preadv(fd, buffers, offset)

        def posix_fadvise(fd, offset, length, advice):
            assert advice == os.POSIX_FADV_WILLNEED
            self.advice.append((offset, length))

        monkeypatch.setattr(_pread, "_PREADV", preadv)
        monkeypatch.setattr(_pread.os, "posix_fadvise", posix_fadvise)
        monkeypatch.setattr(_pread, "_NOWAIT", 1)
        monkeypatch.setattr(_pread, "READ_AHEAD_BYTES", WINDOW)
        monkeypatch.setattr(_pread, "_WILLNEED", os.POSIX_FADV_WILLNEED)


@pytest.mark.skipif(not hasattr(os, "POSIX_FADV_WILLNEED"), reason="no posix_fadvise")
def test_forward_run_from_the_disk_is_read_ahead_once_per_half_window(data_file, monkeypatch):
    fd, data = data_file
    disk = FakeDisk(monkeypatch)
    reads = PlaneReads(fd, "data.bin")
    out = np.empty(PLANE, np.uint8)
    for k in range(3):
        assert reads.read(out, k * PLANE) == PLANE
        np.testing.assert_array_equal(out, data[k * PLANE : (k + 1) * PLANE])
    # plane 0: the first disk read (could be a random access); plane 1 follows it: advise
    # the window after plane 1; plane 2 is well inside the advised window: no new advice
    assert disk.advice == [(2 * PLANE, WINDOW)]
    reads.read(out, 6 * PLANE)  # ends half a window before the advised end: the next window
    assert disk.advice[1] == (2 * PLANE + WINDOW, 5 * PLANE)  # from the advised end on
    disk.cached = {k * PLANE for k in range(7, 15)}  # the advised planes arrived
    for k in range(7, 15):  # reading them keeps the window going: at plane 11, less than
        reads.read(out, k * PLANE)  # half a window is left, so the next part is advised
    assert disk.advice[2:] == [(15 * PLANE, 5 * PLANE)]
    reads.read(out, 15 * PLANE)  # the disk: within the advised window, no new advice
    assert len(disk.advice) == 3
    disk.cached = {k * PLANE for k in range(40)}
    for k in range(12):  # a jump back ends the run: a warm pass from the start is not advised
        reads.read(out, k * PLANE)
    assert len(disk.advice) == 3


@pytest.mark.skipif(not hasattr(os, "POSIX_FADV_WILLNEED"), reason="no posix_fadvise")
def test_cached_and_random_reads_are_never_advised(data_file, monkeypatch):
    fd, data = data_file
    disk = FakeDisk(monkeypatch)
    disk.cached = {k * PLANE for k in range(40)}
    reads = PlaneReads(fd, "data.bin")
    out = np.empty(PLANE, np.uint8)
    for k in range(40):  # a warm pass
        reads.read(out, k * PLANE)
    disk.cached = set()
    for k in (30, 5, 20, 2, 39, 0, 10):  # cold, but jumping backwards or beyond the window
        reads.read(out, k * PLANE)
        np.testing.assert_array_equal(out, data[k * PLANE : (k + 1) * PLANE])
    assert disk.advice == []


@pytest.mark.skipif(not hasattr(os, "POSIX_FADV_WILLNEED"), reason="no posix_fadvise")
def test_announced_reads_are_advised_exactly_and_read_ahead_in_runs(data_file, monkeypatch):
    """tifffile's reads of compressed pages: each is advised as it is (the kernel would read
    2-4x more after the IFD reads before it); a forward run also gets the window after it."""
    fd, _ = data_file
    disk = FakeDisk(monkeypatch)
    reads = PlaneReads(fd, "data.bin")
    reads.will_read(30 * PLANE, 1000)  # the first read: exactly its bytes
    assert disk.advice == [(30 * PLANE, 1000)]
    reads.will_read(30 * PLANE + 1100, 1000)  # following it: also the window after
    assert disk.advice[1:] == [(30 * PLANE + 1100, 1000), (30 * PLANE + 2100, WINDOW)]
    reads.will_read(30 * PLANE + 2200, 1000)  # well inside the window: only its bytes
    reads.will_read(2 * PLANE, 1000)  # a jump back: only its bytes, the run ends
    reads.will_read(5 * PLANE, 0)  # an empty page: nothing
    assert disk.advice[3:] == [(30 * PLANE + 2200, 1000), (2 * PLANE, 1000)]
    reads.will_read(2 * PLANE + 1000, 1000)  # a new run
    assert disk.advice[5:] == [(2 * PLANE + 1000, 1000), (2 * PLANE + 2000, WINDOW)]


def test_decoder_announces_each_pages_data_range(tmp_path, monkeypatch):
    """The range announced for a compressed page is where tifffile says its strips lie; pages
    with little data (here the last, 8 rows) are left to the kernel."""
    data = np.random.default_rng(3).integers(0, 65535, (4, 264, 256), dtype=np.uint16)
    data[3, 8:] = 0  # compresses to almost nothing
    path = tmp_path / "deflate.tif"
    tifffile.imwrite(path, data, compression="zlib", rowsperstrip=64, photometric="minisblack")
    announced = []
    monkeypatch.setattr(PlaneReads, "will_read",
                        lambda self, offset, nbytes: announced.append((offset, nbytes)))
    with TiffStackND(path) as reader:
        assert reader.storage == "decoded"
        for k in (2, 0, 3, 1):
            np.testing.assert_array_equal(reader[k], data[k])
    with tifffile.TiffFile(path) as tif:
        assert sum(tif.pages[3].databytecounts) < 1 << 16
        expected = []
        for k in (2, 0, 1):
            page = tif.pages[k]
            assert len(page.dataoffsets) == 5  # several strips, one range
            start = min(page.dataoffsets)
            end = max(o + n for o, n in zip(page.dataoffsets, page.databytecounts,
                                            strict=True))
            expected.append((start, end - start))
    assert announced == expected


@pytest.mark.parametrize("error", [errno.EOPNOTSUPP, errno.EINVAL])
def test_a_file_system_without_nowait_reads_plainly(data_file, monkeypatch, error):
    fd, data = data_file
    disk = FakeDisk(monkeypatch, nowait_error=error)
    reads = PlaneReads(fd, "data.bin")
    out = np.empty(PLANE, np.uint8)
    for k in range(3):
        assert reads.read(out, k * PLANE) == PLANE
        np.testing.assert_array_equal(out, data[k * PLANE : (k + 1) * PLANE])
    assert disk.advice == []


def test_other_read_errors_are_not_swallowed(data_file, monkeypatch):
    fd, _ = data_file
    FakeDisk(monkeypatch, nowait_error=errno.EIO)
    with pytest.raises(OSError) as info:
        PlaneReads(fd, "data.bin").read(np.empty(PLANE, np.uint8), 0)
    assert info.value.errno == errno.EIO


def test_reader_planes_from_a_cold_file_equal_tifffile(tmp_path):
    """A full pass right after dropping the file from the page cache (where the OS allows)."""
    data = np.random.default_rng(1).integers(0, 4096, (60, 256, 256), dtype=np.uint16)
    path = tmp_path / "cold.tif"
    tifffile.imwrite(path, data)
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    with TiffStackND(path) as reader:
        for k in range(len(reader)):
            np.testing.assert_array_equal(reader[k], data[k])


def test_without_preadv_reads_seek_and_read_under_a_lock(data_file, monkeypatch):
    """Windows has no os.preadv: the same bytes, also from many threads on one descriptor."""
    fd, data = data_file
    monkeypatch.setattr(_pread, "_PREADV", None)
    reads = PlaneReads(fd, "data.bin")
    out = np.empty(PLANE, np.uint8)
    assert reads.read(out, data.size - 10) == 10
    np.testing.assert_array_equal(out[:10], data[-10:])

    def read(k):
        plane = np.empty(PLANE // 2, np.uint16)
        assert reads.read(plane, k * 1000) == PLANE
        return plane

    with ThreadPoolExecutor(8) as pool:
        planes = list(pool.map(read, range(400)))
    for k, plane in enumerate(planes):
        np.testing.assert_array_equal(plane.view(np.uint8), data[k * 1000 : k * 1000 + PLANE])


def test_readers_without_preadv_equal_tifffile(tmp_path, monkeypatch):
    monkeypatch.setattr(_pread, "_PREADV", None)
    data = np.random.default_rng(2).integers(0, 4096, (6, 32, 48), dtype=np.uint16)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, data)
    folder = tmp_path / "folder"
    folder.mkdir()
    for k, plane in enumerate(data):
        tifffile.imwrite(folder / f"img_{k:03d}.tif", plane)
    with TiffStackND(stack) as reader, TiffSequenceND(folder) as sequence:
        assert reader.storage == "mapped" and sequence._template is not None  # the read paths
        for k in range(len(data)):
            np.testing.assert_array_equal(reader[k], tifffile.imread(stack, key=k))
            expected = tifffile.imread(folder / f"img_{k:03d}.tif")
            np.testing.assert_array_equal(sequence[k], expected)


# --- forward passes over small planes: one read per window of the file --------------------


def _count_preadv(monkeypatch) -> list[tuple[int, int]]:
    """Record (offset, bytes asked) of every preadv from now on."""
    calls = []
    real_preadv = _pread._PREADV

    def preadv(fd, buffers, offset, *flags):
        calls.append((offset, sum(memoryview(b).nbytes for b in buffers)))
        return real_preadv(fd, buffers, offset, *flags)

    monkeypatch.setattr(_pread, "_PREADV", preadv)
    return calls


def _small_planes(tmp_path, dtype="<u2", pages=400):
    """Interleaved small pages (IFD, data, IFD, data...), as a camera or tifffile page by
    page writes them, and tifffile's own decoding of them."""
    data = np.random.default_rng(3).integers(0, 60000, (pages, 20, 24)).astype(dtype)
    path = tmp_path / "small.tif"
    with tifffile.TiffWriter(path, byteorder=dtype[0]) as tif:
        for plane in data:
            tif.write(plane, contiguous=False, metadata=None)
    return path, tifffile.imread(path)


@pytest.mark.skipif(_pread._PREADV is None, reason="no os.preadv")
@pytest.mark.parametrize("dtype", ["<u2", ">f4"])
def test_forward_pass_over_small_planes_reads_a_window_at_a_time(tmp_path, monkeypatch, dtype):
    path, expected = _small_planes(tmp_path, dtype)
    with TiffStackND(path) as reader:
        plane_bytes = expected[0].nbytes
        offsets = reader._layout.plane_offsets
        assert plane_bytes <= _pread.RUN_PLANE_BYTES and (np.diff(offsets) > plane_bytes).all()
        calls = _count_preadv(monkeypatch)
        frames = [reader[k] for k in range(len(reader))]
    for k, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, expected[k])
        assert frame.dtype.isnative and frame.flags.writeable and frame.flags.owndata
    span = offsets[-1] + plane_bytes - offsets[1]
    assert len(calls) <= 1 + -(-span // _pread.RUN_BYTES) + 1  # plane 0, then the windows
    assert len(calls) < len(frames) / 10
    frames[1][:] = 0  # planes are copies: changing one changes no other
    np.testing.assert_array_equal(frames[2], expected[2])


@pytest.mark.skipif(_pread._PREADV is None, reason="no os.preadv")
def test_random_reads_and_large_planes_are_read_one_call_each(tmp_path, monkeypatch):
    path, expected = _small_planes(tmp_path)
    order = [*range(399, 0, -3), 0, 100, 200, 300]  # backwards, or jumps forwards of > 16 KiB
    with TiffStackND(path) as reader:
        calls = _count_preadv(monkeypatch)
        for k in order:
            np.testing.assert_array_equal(reader[k], expected[k])
        assert [offset for offset, _ in calls] == [reader._layout.plane_offsets[k] for k in order]
    big = np.arange(8 * 96 * 96, dtype=np.uint16).reshape(8, 96, 96)  # 18 KB planes
    tifffile.imwrite(tmp_path / "big.tif", big)
    with TiffStackND(tmp_path / "big.tif") as reader:
        calls.clear()
        for k in range(len(big)):
            np.testing.assert_array_equal(reader[k], big[k])
        assert [nbytes for _, nbytes in calls] == [big[0].nbytes] * len(big)


@pytest.mark.skipif(_pread._PREADV is None, reason="no os.preadv")
def test_threads_each_read_their_own_forward_pass(tmp_path):
    """Eight threads each walk their own range forwards, interleaved: each gets its planes."""
    path, expected = _small_planes(tmp_path, pages=800)

    def walk(start):
        return [(k, reader[k]) for k in range(start, start + 100)]

    with TiffStackND(path) as reader, ThreadPoolExecutor(8) as pool:
        for walked in pool.map(walk, range(0, 800, 100)):
            for k, frame in walked:
                np.testing.assert_array_equal(frame, expected[k])


def test_a_pass_over_a_file_truncated_after_open_fails_where_the_planes_end(tmp_path):
    path, expected = _small_planes(tmp_path)
    with TiffStackND(path) as reader:
        offsets = reader._layout.plane_offsets
        cut = int(offsets[300]) + 10  # within plane 300
        os.truncate(path, cut)
        for k in range(300):
            np.testing.assert_array_equal(reader[k], expected[k])
        with pytest.raises(StackReadError, match="truncated"):
            reader[300]


def test_one_window_per_thread_whatever_the_number_of_files(tmp_path):
    """Forward passes that alternate between files get their own planes, and the memory the
    windows keep does not grow with the number of files open (a dataset of many files)."""
    import tracemalloc

    path, expected = _small_planes(tmp_path)
    readers = [TiffStackND(path) for _ in range(20)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in range(50):  # reader 0 plane 0, reader 1 plane 0, ..., reader 0 plane 1...
            for reader in readers:
                np.testing.assert_array_equal(reader[k], expected[k])
        for reader in readers:  # a forward pass over each, one after another
            for k in range(50, 100):
                np.testing.assert_array_equal(reader[k], expected[k])
        kept = tracemalloc.get_traced_memory()[0] - before
        assert kept < 2 * _pread.RUN_BYTES
    finally:
        tracemalloc.stop()
        for reader in readers:
            reader.close()
