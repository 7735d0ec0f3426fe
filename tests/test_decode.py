"""Compressed pages: decoded as frames of the first page only when their layout tags prove it."""

from __future__ import annotations

import shutil
import struct
import types

import numpy as np
import pytest
import tifffile

from pims_videoutils import _decode
from pims_videoutils._ifd import page_signature
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


def test_page_signature_tells_layouts_apart(tmp_path):
    paths = {}
    for name, options in {"zlib": {"compression": "zlib"}, "lzw": {"compression": "lzw"},
                          "zlib_big": {"compression": "zlib", "bigtiff": True}}.items():
        paths[name] = tmp_path / f"{name}.tif"
        _stack(paths[name], n=3, **options)
    signatures = {}
    for name, path in paths.items():
        with tifffile.TiffFile(path) as tif:
            read = _reader(path)
            pages = [page_signature(read, tif.byteorder, tif.is_bigtiff, page.offset)
                     for page in tif.pages]
            assert pages[0] == pages[1] == pages[2] and pages[0]
            assert pages[0][259][2] == struct.pack("<H", tif.pages.first.compression)
            signatures[name] = pages[0]
    assert signatures["zlib"] != signatures["lzw"]
    assert signatures["zlib"][259] == signatures["zlib_big"][259]


def test_page_signature_of_a_truncated_or_impossible_ifd_is_none(tmp_path):
    path = tmp_path / "stack.tif"
    _stack(path, n=2, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].offset
    content = path.read_bytes()
    for cut in (offset + 1, offset + 20):
        def read(at, nbytes, cut=cut):
            return content[:cut][at : at + nbytes]
        assert page_signature(read, "<", False, offset) is None

    def no_tags(at, nbytes):
        return b"\0" * nbytes

    assert page_signature(no_tags, "<", False, offset) is None
