"""Layout discovery alone: axis names, the IFD walker against tifffile's own page list."""

from __future__ import annotations

import mmap
import struct

import numpy as np
import pytest
import tifffile

from pims_videoutils import StackReadError, _ifd
from pims_videoutils._ifd import walk
from pims_videoutils._layout import DECODED, MAPPED, discover, pims_axes


@pytest.mark.parametrize(
    ("codes", "names"),
    [("TZCYX", "tzcyx"), ("QYX", "tyx"), ("IYX", "tyx"), ("TQYX", "tqyx"), ("QQYX", "tqyx"),
     ("RYXS", "pyxs"), ("TCRYX", "tcpyx"), ("AYX", "ayx"), ("EYX", "eyx"),
     ("CCYX", "acyx"), ("TZTYX", "aztyx"), ("YXYX", "abyx"), ("SYXS", "cyxs"),
     ("STYX", "ctyx"), ("TSYX", "tcyx"), ("SCYX", "acyx"), ("SYX", "cyx")],
)
def test_pims_axes(codes, names):
    assert pims_axes(codes) == names


def _walk(path):
    with tifffile.TiffFile(path) as tif, open(path, "rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        page0 = tif.pages.first
        result = walk(buf, tif.byteorder, tif.is_bigtiff, page0.offset, page0)
        truth = [(p.offset, p.dataoffsets[0]) for p in tif.pages]
    return result, truth


def _write_pages(path, shapes, dtype="u2", **kwargs):
    with tifffile.TiffWriter(path, bigtiff=kwargs.pop("bigtiff", False),
                             byteorder=kwargs.pop("byteorder", None)) as tif:
        for k, shape in enumerate(shapes):
            tif.write(np.full(shape, k, dtype), contiguous=False, metadata=None, **kwargs)


@pytest.mark.parametrize("bigtiff", [False, True], ids=["classic", "bigtiff"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("rowsperstrip", [None, 3])
def test_walker_matches_tifffile(tmp_path, bigtiff, byteorder, rowsperstrip):
    path = tmp_path / "w.tif"
    _write_pages(path, [(20, 24)] * 40, bigtiff=bigtiff, byteorder=byteorder,
                 rowsperstrip=rowsperstrip)
    result, truth = _walk(path)
    assert result.ifd_offsets.tolist() == [t[0] for t in truth]
    assert result.data_offsets.tolist() == [t[1] for t in truth]


class _AdviceLog:
    """Stands for a mapping: records the advice it is given."""

    def __init__(self):
        self.advice = []

    def madvise(self, option, start, length):
        self.advice.append((option, start, length))


@pytest.mark.parametrize("cached", [False, True])
def test_cold_chunk_advises_every_ifd_page(monkeypatch, cached):
    monkeypatch.setattr(_ifd, "_cached", lambda buf, page: cached)
    page = mmap.PAGESIZE
    log = _AdviceLog()
    _ifd._will_need(log, np.array([100, 20 * page + 5, 41 * page - 50]), 200)
    expected = [(mmap.MADV_WILLNEED, 0, page), (mmap.MADV_WILLNEED, 20 * page, page),
                (mmap.MADV_WILLNEED, 40 * page, 2 * page)]  # the last IFD spans two pages
    assert log.advice == ([] if cached else expected)


def test_ifd_pages_close_together_are_advised_as_one_range(monkeypatch):
    """IFDs between small planes: one advice for the run of pages, not one per IFD."""
    monkeypatch.setattr(_ifd, "_cached", lambda buf, page: False)
    page = mmap.PAGESIZE
    far = (4 + _ifd.ADVICE_GAP // page + 2) * page  # more than ADVICE_GAP after page 4
    log = _AdviceLog()
    _ifd._will_need(log, np.array([100, 2 * page + 5, 4 * page, far]), 200)
    assert log.advice == [(mmap.MADV_WILLNEED, 0, 5 * page), (mmap.MADV_WILLNEED, far, page)]


def test_page_cache_query_sees_a_page_just_read(tmp_path):
    path = tmp_path / "read.bin"
    path.write_bytes(b"x" * 3 * mmap.PAGESIZE)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        assert f.read() and _ifd._cached(buf, 1) is True


def test_walker_resumes_after_a_broken_progression(tmp_path):
    """Pages with an extra tag in the middle: several runs, still exactly tifffile's pages."""
    path = tmp_path / "runs.tif"
    with tifffile.TiffWriter(path) as tif:
        for k in range(30):
            tif.write(np.full((8, 9), k, "u1"), contiguous=False, metadata=None,
                      description="x" * (k % 7) if k % 5 == 0 else None)
    result, truth = _walk(path)
    assert result.ifd_offsets.tolist() == [t[0] for t in truth]
    assert result.data_offsets.tolist() == [t[1] for t in truth]


def test_walker_refuses_pages_of_another_shape(tmp_path):
    path = tmp_path / "mixed.tif"
    _write_pages(path, [(20, 24)] * 5 + [(20, 25)] + [(20, 24)] * 5)
    result, _ = _walk(path)
    assert result is None  # not proven: tifffile's path


def test_walker_proves_pages_whose_short_values_differ_in_unused_bytes(tmp_path):
    """A value shorter than its entry's value field leaves bytes no reader looks at: pages
    that differ there only (a writer that does not zero them) still share one layout."""
    path = tmp_path / "padding.tif"
    _write_pages(path, [(20, 24)] * 6)
    with tifffile.TiffFile(path) as tif:
        bits = tif.pages[3].tags["BitsPerSample"]  # SHORT, count 1: 2 of its 4 value bytes
        assert bits.dtype == 3 and bits.count == 1
        unused = bits.offset + 8 + 2  # entry: code, type, count (8 bytes), then the value
    with open(path, "r+b") as f:
        f.seek(unused)
        f.write(b"\xab\xcd")
    result, truth = _walk(path)
    assert result.ifd_offsets.tolist() == [t[0] for t in truth]
    assert result.data_offsets.tolist() == [t[1] for t in truth]
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[3].bitspersample == 16  # (the bytes changed are indeed unused)


def test_walker_refuses_pages_whose_layout_value_differs(tmp_path):
    path = tmp_path / "bits.tif"
    _write_pages(path, [(20, 24)] * 6)
    with tifffile.TiffFile(path) as tif:
        value = tif.pages[4].tags["SamplesPerPixel"].valueoffset
    with open(path, "r+b") as f:
        f.seek(value)
        f.write(np.uint16(2).tobytes())
    result, _ = _walk(path)
    assert result is None


def test_walker_leaves_compressed_pages_to_the_decoder(tmp_path):
    path = tmp_path / "zip.tif"
    _write_pages(path, [(20, 24)] * 6, compression="zlib")
    result, truth = _walk(path)
    assert result.ifd_offsets.tolist() == [t[0] for t in truth]
    assert result.data_offsets is None


def _discover(path, series=0):
    with tifffile.TiffFile(path) as tif:
        return discover(tif, str(path), series)


def test_discover_imagej_is_arithmetic(tmp_path):
    path = tmp_path / "ij.tif"
    data = np.zeros((3, 4, 2, 10, 12), "u2")
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    layout = _discover(path)
    with tifffile.TiffFile(path) as tif:
        offsets = [p.dataoffsets[0] for p in tif.pages]
    assert layout.axes == "tzc" and layout.shape == (3, 4, 2)
    assert layout.storage == MAPPED
    assert layout.plane_offsets.tolist() == offsets


def test_discover_truncated_imagej(tmp_path):
    path = tmp_path / "ijt.tif"
    tifffile.imwrite(path, np.zeros((6, 10, 12), "u2"), imagej=True, truncate=True)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1  # one IFD for six planes
    layout = _discover(path)
    assert layout.nplanes == 6
    assert np.diff(layout.plane_offsets).tolist() == [240] * 5


def test_discover_decoded_storage(tmp_path):
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, np.zeros((5, 10, 12), "u2"), compression="lzw")
    layout = _discover(path)
    assert layout.storage == DECODED
    with tifffile.TiffFile(path) as tif:
        assert layout.ifd_offsets.tolist() == [p.offset for p in tif.pages]


def test_discover_missing_series(tmp_path):
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, np.zeros((5, 10, 12), "u2"))
    with pytest.raises(StackReadError, match="series 1 does not exist"):
        _discover(path, 1)


def _ifds_first_tiff(path, data):
    """A classic TIFF with every IFD packed after the header and all pixel data after them."""
    n, height, width = data.shape
    ifd_size = 2 + 9 * 12 + 4
    data_start = 8 + n * ifd_size
    out = bytearray(b"II*\x00" + (8).to_bytes(4, "little"))
    for k in range(n):
        entries = [(256, 3, width), (257, 3, height), (258, 3, 16), (259, 3, 1), (262, 3, 1),
                   (273, 4, data_start + k * data[0].nbytes), (277, 3, 1), (278, 3, height),
                   (279, 4, data[0].nbytes)]
        out += len(entries).to_bytes(2, "little")
        for code, typ, value in entries:
            out += struct.pack("<HHI", code, typ, 1)
            out += struct.pack("<HH" if typ == 3 else "<I", *((value, 0) if typ == 3 else
                                                               (value,)))
        nxt = 8 + (k + 1) * ifd_size if k < n - 1 else 0
        out += nxt.to_bytes(4, "little")
    out += data.astype("<u2").tobytes()
    path.write_bytes(bytes(out))


def test_walker_on_ifds_packed_before_the_data(tmp_path):
    path = tmp_path / "packed.tif"
    data = np.arange(300 * 6 * 5, dtype="u2").reshape(300, 6, 5)
    _ifds_first_tiff(path, data)
    result, truth = _walk(path)
    assert result.ifd_offsets.tolist() == [t[0] for t in truth]
    assert result.data_offsets.tolist() == [t[1] for t in truth]
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), data)  # the hand-made file is valid
    layout = _discover(path)
    assert layout.kind == "uniform" and layout.storage == MAPPED
    assert layout.plane_offsets.tolist() == [t[1] for t in truth]
