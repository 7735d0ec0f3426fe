"""Compressed pages: decoded as frames of the first page only when their layout tags prove it."""

from __future__ import annotations

import shutil
import struct
import types

import numpy as np
import pytest
import tifffile

from pims_videoutils import StackReadError, _decode
from pims_videoutils._ifd import page_tags
from pims_videoutils.readers import TiffStackND


@pytest.fixture
def parsed(monkeypatch):
    """Count how pages are parsed in _decode: in full (TiffPage) or as frames (TiffFrame)."""
    counts = {"page": 0, "frame": 0}

    def page(*args, **kwargs):
        counts["page"] += 1
        return tifffile.TiffPage(*args, **kwargs)

    def frame(*args, **kwargs):
        counts["frame"] += 1
        return tifffile.TiffFrame(*args, **kwargs)

    proxy = types.SimpleNamespace(TiffPage=page, TiffFrame=frame)
    monkeypatch.setattr(_decode, "tifffile", proxy)
    return counts


def _stack(path, n=5, **kwargs):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 4096, (n, 48, 40), dtype=np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack", **kwargs)
    return data


def _reader(path):
    """``read(offset, nbytes)`` of the file's bytes."""
    content = path.read_bytes()

    def read(offset, nbytes):
        return content[offset : offset + nbytes]

    return read


@pytest.mark.parametrize("options", [
    {"compression": "zlib"},
    {"compression": "zlib", "predictor": True},
    {"compression": "lzw", "rowsperstrip": 8},
    {"compression": "zlib", "tile": (16, 16)},
    {"compression": "packbits", "bigtiff": True},
])
def test_pages_of_one_layout_are_frames_of_the_first(tmp_path, parsed, options):
    path = tmp_path / "stack.tif"
    data = _stack(path, **options)
    with TiffStackND(path) as reader:
        assert reader.storage == "decoded"
        for k in (0, 3, 1, 4, 2, 3):
            np.testing.assert_array_equal(reader[k], data[k])
    assert parsed == {"page": 1, "frame": 5}  # only the first page read parsed in full


def test_a_page_whose_layout_differs_is_decoded_by_its_own_tags(tmp_path, parsed):
    """Page 2's predictor is changed in the file: tifffile's own parse of that page (not page
    0's properties, which a TiffFrame would use) decides how it decodes."""
    path = tmp_path / "stack.tif"
    _stack(path, compression="zlib", predictor=True)
    patched = tmp_path / "patched.tif"
    shutil.copy(path, patched)
    with tifffile.TiffFile(patched) as tif:
        tag = tif.pages[2].tags[317]
        assert tag.value == 2 and tag.count == 1
        position = tag.offset + 8  # the value field of the 12-byte entry
    with open(patched, "r+b") as f:
        f.seek(position)
        f.write(struct.pack("<H", 1))  # no predictor
    with tifffile.TiffFile(patched) as tif:
        expected = [tif.pages[k].asarray() for k in range(5)]  # each page parsed in full
        as_page_0 = tifffile.TiffFrame(tif, 2, offset=tif.pages[2].offset,
                                       keyframe=tif.pages.first).asarray()
    assert not np.array_equal(expected[2], as_page_0)  # the test can tell the two apart
    with TiffStackND(patched) as reader:
        for k in range(5):
            np.testing.assert_array_equal(reader[k], expected[k])
    assert parsed["page"] == 2  # page 0, then page 2 in full


def test_a_page_with_fewer_strips_than_its_layout_is_parsed_in_full(tmp_path, parsed):
    """Page 2's strip tags are cut from 6 values to 5 in the file: its layout tags still equal
    page 0's, but it is no frame of page 0; parsed in full, it lacks a strip its size needs
    (tifffile would fill its rows with zeros): a read error, the other pages read as usual."""
    path = tmp_path / "stack.tif"
    _stack(path, compression="zlib", rowsperstrip=8, metadata=None)
    with tifffile.TiffFile(path) as tif:
        positions = [tif.pages[2].tags[code].offset + 4 for code in (273, 279)]  # counts
        assert [tif.pages[2].tags[code].count for code in (273, 279)] == [6, 6]
    with open(path, "r+b") as f:
        for position in positions:
            f.seek(position)
            f.write(struct.pack("<I", 5))
    with tifffile.TiffFile(path) as tif:
        expected = [tif.pages[k].asarray() for k in range(5)]
    with TiffStackND(path) as reader:
        for k in (0, 1, 3, 4):
            np.testing.assert_array_equal(reader[k], expected[k])
        with pytest.raises(StackReadError, match=r"page 2 .* 5 strips or tiles.* needs 6"):
            reader[2]
    assert parsed["page"] == 2  # page 0, then page 2 in full


@pytest.mark.parametrize("longer", [324, 325], ids=["offsets", "bytecounts"])
def test_a_page_whose_tile_offsets_and_byte_counts_differ_in_number(tmp_path, longer):
    """Page 2's TileOffsets (or TileByteCounts) say 10 values, the other tag 9 (as its size
    needs; tifffile keeps both as they are): reading it failed with "zip() argument 2 is
    longer than argument 1", which says nothing of the file."""
    path = tmp_path / "stack.tif"
    _stack(path, compression="zlib", tile=(16, 16), metadata=None)
    with tifffile.TiffFile(path) as tif:
        position = tif.pages[2].tags[longer].offset + 4  # its count
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(struct.pack("<I", 10))
    with tifffile.TiffFile(path) as tif:
        counts = [len(tif.pages[2].dataoffsets), len(tif.pages[2].databytecounts)]
        assert sorted(counts) == [9, 10]
        expected = [tif.pages[k].asarray() for k in (0, 1, 3, 4)]
    with TiffStackND(path) as reader:
        for k, plane in zip((0, 1, 3, 4), expected, strict=True):
            np.testing.assert_array_equal(reader[k], plane)
        with pytest.raises(StackReadError, match=rf"page 2 .*{counts[0]} strip or tile "
                           rf"offsets but {counts[1]} byte counts"):
            reader[2]


def test_page_tags_tell_layouts_apart(tmp_path):
    paths = {}
    for name, options in {"zlib": {"compression": "zlib"}, "lzw": {"compression": "lzw"},
                          "zlib_big": {"compression": "zlib", "bigtiff": True}}.items():
        paths[name] = tmp_path / f"{name}.tif"
        _stack(paths[name], n=3, **options)
    signatures = {}
    for name, path in paths.items():
        with tifffile.TiffFile(path) as tif:
            read = _reader(path)
            pages = [page_tags(read, tif.byteorder, tif.is_bigtiff, page.offset).signature
                     for page in tif.pages]
            assert pages[0] == pages[1] == pages[2] and pages[0]
            assert pages[0][259][2] == struct.pack("<H", tif.pages.first.compression)
            signatures[name] = pages[0]
    assert signatures["zlib"] != signatures["lzw"]
    assert signatures["zlib"][259] == signatures["zlib_big"][259]


def test_pages_with_other_jpeg_tables_have_other_signatures(tmp_path):
    """tifffile decodes a frame with its key page's JPEG tables: they are part of the layout."""
    path = tmp_path / "tables.tif"
    data = np.zeros((3, 16, 16), np.uint8)
    with tifffile.TiffWriter(path) as tif:
        for k, table in enumerate((b"table one", b"table one", b"table two")):
            tif.write(data[k], compression="zlib", photometric="minisblack",
                      extratags=[(347, 7, len(table), table, False)])
    read = _reader(path)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[2].jpegtables == b"table two"
        signatures = [page_tags(read, "<", False, page.offset).signature for page in tif.pages]
    assert signatures[0] == signatures[1] != signatures[2]


@pytest.mark.parametrize("options", [
    {"compression": "zlib", "rowsperstrip": 8},
    {"compression": "zlib", "rowsperstrip": 48},
    {"compression": "zlib", "tile": (16, 16)},
    {"compression": "lzw", "bigtiff": True, "rowsperstrip": 5},
    {"compression": "zlib", "byteorder": ">"},
])
def test_page_tags_give_where_each_pages_data_lie(tmp_path, options):
    """The segments read from each IFD equal tifffile's own parse of the page."""
    path = tmp_path / "stack.tif"
    _stack(path, n=3, **options)
    read = _reader(path)
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            tags = page_tags(read, tif.byteorder, tif.is_bigtiff, page.offset)
            assert tags.dataoffsets == tuple(page.dataoffsets)
            assert tags.databytecounts == tuple(page.databytecounts)


def test_page_tags_of_pages_with_more_strips_than_layout_values(tmp_path, parsed):
    """4100 strips per page (more than a layout tag may hold): still read, still frames."""
    path = tmp_path / "strips.tif"
    data = np.random.default_rng(5).integers(0, 255, (3, 4100, 3), dtype=np.uint8)
    tifffile.imwrite(path, data, photometric="minisblack", compression="zlib",
                     rowsperstrip=1, metadata=None)
    read = _reader(path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        tags = page_tags(read, tif.byteorder, tif.is_bigtiff, page.offset)
        assert len(tags.dataoffsets) == 4100
        assert tags.dataoffsets == tuple(page.dataoffsets)
        assert tags.databytecounts == tuple(page.databytecounts)
    with TiffStackND(path) as reader:
        for k in (2, 0, 1):
            np.testing.assert_array_equal(reader[k], data[k])
    assert parsed == {"page": 1, "frame": 2}


def test_page_tags_of_a_truncated_or_impossible_ifd_is_none(tmp_path):
    path = tmp_path / "stack.tif"
    _stack(path, n=2, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].offset
    content = path.read_bytes()
    for cut in (offset + 1, offset + 20):
        def read(at, nbytes, cut=cut):
            return content[:cut][at : at + nbytes]
        assert page_tags(read, "<", False, offset) is None

    def no_tags(at, nbytes):
        return b"\0" * nbytes

    assert page_tags(no_tags, "<", False, offset) is None
