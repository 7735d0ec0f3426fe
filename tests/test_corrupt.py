"""Bad input: one documented error (StackReadError with the path), no hang, no write."""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
import tifffile

from pims_videoutils import StackNotFoundError, StackReadError
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND


def _interleaved(path, n=6, bigtiff=False):
    data = np.arange(n * 20 * 24, dtype="u2").reshape(n, 20, 24)
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        for page in data:
            tif.write(page, contiguous=False, metadata=None)
    with tifffile.TiffFile(path) as tif:
        return [(p.offset, len(p.tags)) for p in tif.pages]


def _next_pointer_at(offset, ntags, bigtiff=False):
    return offset + (8 + ntags * 20 if bigtiff else 2 + ntags * 12)


def _patch(path, position, value, fmt="<I"):
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(struct.pack(fmt, value))


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_read_error(path, match):
    before = _digest(path)
    with pytest.raises(StackReadError, match=match) as info:
        TiffStackND(path)
    assert info.value.path == os.fspath(path)
    assert _digest(path) == before


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tif"
    with pytest.raises(StackNotFoundError) as info:
        TiffStackND(path)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == os.fspath(path)


def test_directory(tmp_path):
    with pytest.raises(StackReadError):
        TiffStackND(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    _assert_read_error(path, "empty")


def test_not_a_tiff(tmp_path):
    path = tmp_path / "text.tif"
    path.write_text("this is not an image\n" * 10)
    _assert_read_error(path, "not a readable TIFF")


def test_truncated_header(tmp_path):
    path = tmp_path / "header.tif"
    _interleaved(path)
    path.write_bytes(path.read_bytes()[:5])
    _assert_read_error(path, "TIFF")


@pytest.mark.parametrize("layout", ["interleaved", "shaped", "imagej", "imagej-truncated", "ome"])
def test_truncated_in_the_data(tmp_path, layout):
    path = tmp_path / f"{layout}.tif"
    data = np.ones((6, 20, 24), "u2")
    if layout == "interleaved":
        _interleaved(path)
        with tifffile.TiffFile(path) as tif:
            cut = tif.pages[-1].dataoffsets[0] + 10
    else:
        kwargs = {"shaped": {}, "imagej": {"imagej": True},
                  "imagej-truncated": {"imagej": True, "truncate": True},
                  "ome": {"ome": True}}[layout]
        tifffile.imwrite(path, data, **kwargs)
        with tifffile.TiffFile(path) as tif:  # cut inside the last plane's data
            last = tif.pages[-1]
            cut = last.dataoffsets[0] + last.databytecounts[0] - 10
            if layout != "ome":  # one block of data
                cut = tif.series[0].dataoffset + data.nbytes - 10
    with open(path, "r+b") as f:
        f.truncate(cut)
    _assert_read_error(path, "truncated|beyond|outside|cannot parse")


@pytest.mark.parametrize("bigtiff", [False, True], ids=["classic", "bigtiff"])
@pytest.mark.parametrize("target", ["itself", "earlier", "first"])
def test_ifd_loop(tmp_path, bigtiff, target):
    path = tmp_path / "loop.tif"
    pages = _interleaved(path, bigtiff=bigtiff)
    offset, ntags = pages[3]
    goto = {"itself": offset, "earlier": pages[1][0], "first": pages[0][0]}[target]
    _patch(path, _next_pointer_at(offset, ntags, bigtiff), goto, "<Q" if bigtiff else "<I")
    _assert_read_error(path, "loops")


def _compressed(path, n=6, **options):
    data = np.arange(n * 20 * 24, dtype="u2").reshape(n, 20, 24)
    tifffile.imwrite(path, data, compression="zlib", **options)
    with tifffile.TiffFile(path) as tif:
        return [(p.offset, len(p.tags)) for p in tif.pages]


@pytest.mark.parametrize("target", ["itself", "earlier", "first"])
@pytest.mark.parametrize("page", [3, 5])
def test_ifd_loop_in_a_compressed_file(tmp_path, target, page):
    """tifffile cuts the chain at a loop with a log message: the reader raises."""
    path = tmp_path / "loop.tif"
    pages = _compressed(path)
    offset, ntags = pages[page]
    goto = {"itself": offset, "earlier": pages[1][0], "first": pages[0][0]}[target]
    _patch(path, _next_pointer_at(offset, ntags), goto)
    _assert_read_error(path, "corrupt IFD chain")


def test_pointer_beyond_end_of_a_compressed_file(tmp_path):
    path = tmp_path / "beyond.tif"
    offset, ntags = _compressed(path)[2]
    _patch(path, _next_pointer_at(offset, ntags), path.stat().st_size + 1000)
    _assert_read_error(path, "IFD chain runs past the end of the file.*truncated file")


def test_ome_file_whose_chain_breaks_before_its_last_plane(tmp_path):
    """OME-XML names 6 planes; tifffile finds 5 and would read the 6th as zeros."""
    path = tmp_path / "cut.ome.tif"
    pages = _compressed(path, ome=True)
    offset, ntags = pages[4]
    _patch(path, _next_pointer_at(offset, ntags), path.stat().st_size + 1000)
    _assert_read_error(path, "IFD chain runs past the end of the file")


def _edit_description(path, replacements):
    """Replace bytes in the first page's description: appended, edited, to the file."""
    raw = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["ImageDescription"]
        entry, start, count = tag.offset, tag.valueoffset, tag.count
    text = raw[start : start + count]
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path.write_bytes(raw + text)
    _patch(path, entry + 4, len(text))
    _patch(path, entry + 8, len(raw))


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("tiffdata", ["beyond", "partial"])
def test_ome_planes_in_no_ifd_of_the_file(tmp_path, compression, tiffdata):
    """OME-XML puts 10 time points in a file of 6 IFDs (its TiffData names IFDs 6..9, which
    the file lacks, or covers only 6 planes). tifffile reads the others as zeros; the reader
    read them as zeros too, silently. TiffSequenceND's fill_missing reads such a file."""
    path = tmp_path / "planes.ome.tif"
    data = np.arange(6 * 20 * 24, dtype="u2").reshape(6, 20, 24)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TYX"}, compression=compression)
    replacements = {b'SizeT="6"': b'SizeT="10"'}
    if tiffdata == "beyond":
        replacements[b'PlaneCount="6"'] = b'PlaneCount="10"'
    _edit_description(path, replacements)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].shape == (10, 20, 24)
    _assert_read_error(path, "4 of the 10 planes .* in no IFD of the file")
    with TiffSequenceND(path, fill_missing=0) as reader:
        np.testing.assert_array_equal(np.stack(list(reader)), np.concatenate(
            [data, np.zeros((4, 20, 24), "u2")]))


def test_ome_tiffdata_with_a_negative_ifd(tmp_path):
    """TiffData IFD="-1": tifffile indexes its page list from the end (plane 0 = the last
    page, then pages 0, 1...): the planes came out rotated, silently."""
    path = tmp_path / "negative.ome.tif"
    data = np.arange(6 * 20 * 24, dtype="u2").reshape(6, 20, 24)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TYX"})
    _edit_description(path, {b'<TiffData IFD="0"': b'<TiffData IFD="-1"'})
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.series[0].asarray()[0], data[5])
    _assert_read_error(path, "TiffData element gives the negative IFD index -1")


def test_pointer_beyond_end_of_file(tmp_path):
    path = tmp_path / "beyond.tif"
    pages = _interleaved(path)
    offset, ntags = pages[2]
    _patch(path, _next_pointer_at(offset, ntags), path.stat().st_size + 1000)
    _assert_read_error(path, "outside the file")


def test_first_ifd_beyond_end_of_file(tmp_path):
    path = tmp_path / "first.tif"
    _interleaved(path)
    _patch(path, 4, path.stat().st_size + 1000)
    _assert_read_error(path, "invalid first IFD")


@pytest.mark.parametrize(("bigtiff", "beyond"), [(False, "end"), (True, "end"), (True, "2**63")],
                         ids=["classic", "bigtiff", "bigtiff-2**63"])
def test_strip_offset_beyond_end_of_file(tmp_path, bigtiff, beyond):
    """Pages that disagree with the file: one page's data pointer beyond the end.

    A BigTIFF offset of 2**63 or more is no negative number (it was read as one, a page
    missing, and the plane came out as zeros).
    """
    path = tmp_path / "strip.tif"
    _interleaved(path, bigtiff=bigtiff)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[4].tags["StripOffsets"]
        position = tag.offset + (12 if bigtiff else 8)  # the inline value of the entry
    offset = path.stat().st_size + 10 if beyond == "end" else 2**64 - 100
    _patch(path, position, offset, "<Q" if bigtiff else "<I")
    _assert_read_error(path, "truncated|beyond|outside")


@pytest.mark.parametrize("truncate", [True, False])
def test_inconsistent_imagej_image_count(tmp_path, truncate):
    """ImageJ header claims more images (and channels) than the file holds."""
    path = tmp_path / "count.tif"
    tifffile.imwrite(path, np.ones((3, 20, 24), "u2"), imagej=True, truncate=truncate)
    raw = path.read_bytes()
    patched = raw.replace(b"images=3\nchannels=3", b"images=9\nchannels=9")
    assert patched != raw
    path.write_bytes(patched)
    _assert_read_error(path, "truncated|pages for")


def test_description_claiming_far_more_planes_than_the_file_holds(tmp_path):
    """A tifffile shape of 10**8 planes in a 7 KB file (tifffile deems it truncated).

    The plane offsets were computed (two arrays of 800 MB) before the file's size was
    compared with them: a corrupt description cost gigabytes and seconds, or the memory.
    """
    path = tmp_path / "claims.tif"
    with tifffile.TiffWriter(path) as tif:
        for k in range(6):
            tif.write(np.full((20, 24), k, "u2"), contiguous=False, metadata=None,
                      description='{"shape": [100000000, 20, 24]}' if k == 0 else None)
    tracemalloc.start()
    try:
        _assert_read_error(path, "truncated")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_imagej_image_count_alone_more_than_the_file_holds(tmp_path):
    """A header with ``images`` and no dimensions: tifffile shows the one plane present."""
    path = tmp_path / "count.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.ones((20, 24), "u2"), description="ImageJ=1.53f\nimages=5\n",
                  metadata=None)
    _assert_read_error(path, r"declares 5 images but the file has a single IFD \(page\), "
                       "and from its image's start room for 1 image .*truncated")


@pytest.mark.parametrize("truncate", [True, False])
def test_imagej_image_count_message_says_what_the_file_lacks(tmp_path, truncate):
    """A file of one IFD (ImageJ's way over 4 GB) holding 3 images: it lacks room for the 9
    declared, not planes in its IFDs (it was said to hold 1 plane); 3 pages: it lacks IFDs."""
    path = tmp_path / "count.tif"
    tifffile.imwrite(path, np.ones((3, 20, 24), "u2"), imagej=True, truncate=truncate)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"images=3\nchannels=3", b"images=9\nchannels=9"))
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == (1 if truncate else 3)
    lacks = (r"a single IFD \(page\), and from its image's start room for 3 images" if truncate
             else r"only 3 IFDs \(pages\)")
    _assert_read_error(path, rf"ImageJ header declares 9 images but the file has {lacks} "
                       r"\(truncated or corrupt file\)")


def test_file_truncated_after_open(tmp_path):
    path = tmp_path / "shrinks.tif"
    _interleaved(path)
    with TiffStackND(path) as reader:
        with open(path, "r+b") as f:
            f.truncate(200)
        with pytest.raises(StackReadError, match="shorter"):
            reader[5]


def test_corrupt_compressed_data_fails_at_read(tmp_path):
    path = tmp_path / "deflate.tif"
    tifffile.imwrite(path, np.arange(5 * 20 * 24, dtype="u2").reshape(5, 20, 24),
                     compression="zlib")
    with tifffile.TiffFile(path) as tif:
        start, count = tif.pages[2].dataoffsets[0], tif.pages[2].databytecounts[0]
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(b"\xff" * count)
    with TiffStackND(path) as reader:
        np.testing.assert_array_equal(reader[1], tifffile.imread(path, key=1))
        with pytest.raises(StackReadError, match="cannot decode page 2"):
            reader[2]


def test_missing_codec_names_imagecodecs(tmp_path, monkeypatch):
    """Without imagecodecs, tifffile cannot decode zstd: the error says what to install."""
    import types

    import tifffile.tifffile as tiffmodule

    path = tmp_path / "zstd.tif"
    tifffile.imwrite(path, np.ones((5, 20, 24), "u2"), compression="zstd")
    monkeypatch.setattr(tiffmodule, "imagecodecs", types.SimpleNamespace())
    monkeypatch.setattr(tifffile.TIFF.DECOMPRESSORS, "_codecs", {})
    with TiffStackND(path) as reader:
        with pytest.raises(StackReadError, match="pip install imagecodecs"):
            reader[0]


@pytest.mark.parametrize("options", [{"compression": "zlib"}, {"compression": "zlib",
                                                                 "tile": (16, 16)},
                                     {"tile": (16, 16)}, {"planarconfig": "separate"}])
@pytest.mark.parametrize("length", [480, 10**7])
def test_size_tag_larger_than_the_strips_or_tiles(tmp_path, options, length):
    """An ImageLength that the strips or tiles do not cover: an error, not zeros (tifffile
    fills the missing segments with zeros, after allocating the declared image)."""
    path = tmp_path / "long.tif"
    shape = (2, 3, 48, 32) if "planarconfig" in options else (2, 48, 32)
    tifffile.imwrite(path, np.ones(shape, "u2"), photometric="rgb" if len(shape) == 4
                     else "minisblack", **options)
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[0].tags["ImageLength"]
        fmt = tif.byteorder + {3: "H", 4: "I"}[entry.dtype]
        covered = math.prod(tif.pages[0].chunked)
    raw = bytearray(path.read_bytes())
    struct.pack_into(tif.byteorder + "H", raw, entry.offset + 2, 4)  # type LONG
    struct.pack_into(fmt.replace("H", "I"), raw, entry.valueoffset, length)
    path.write_bytes(bytes(raw))
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].imagelength == length
        assert math.prod(tif.pages[0].chunked) > covered == len(tif.pages[0].dataoffsets)
    with TiffStackND(path) as reader:
        with pytest.raises(StackReadError, match=r"page 0 .*strips or tiles"):
            reader.get_plane()


def _write_with_duplicated_compression(path, compression, first):
    """Write 3 planes; page 1 holds a second Compression tag (value 1 if the file is
    compressed, else 8), before its own (``first``) or after it. Returns the planes."""
    data = np.arange(3 * 16 * 24, dtype="u2").reshape(3, 16, 24)
    extra_code = 255 if first else 65000  # sorted before or after Compression (259)
    extra_value = 1 if compression else 8
    with tifffile.TiffWriter(path) as tif:
        for i, plane in enumerate(data):
            tif.write(plane, compression=compression, metadata=None, contiguous=False,
                      extratags=[(extra_code, 3, 1, extra_value, True)] if i == 1 else [])
    with tifffile.TiffFile(path) as tif:
        entry = tif.pages[1].tags[extra_code].offset
    _patch(path, entry, 259, "<H")
    with tifffile.TiffFile(path) as tif:
        assert [tag.code for tag in tif.pages[1].tags.values()].count(259) == 2
    return data


@pytest.mark.parametrize("first", [True, False], ids=["added-first", "added-last"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_page_with_a_duplicated_layout_tag_is_refused(tmp_path, compression, first):
    """Two Compression tags in one IFD: tifffile takes the first, the reader's per-page
    decoder took the last (other pixels than tifffile's), and other TIFF readers take either:
    the page's pixels are not defined, so the series holding it is refused, at open or at that
    page (tifffile puts the page in a series of its own where its first value differs)."""
    path = tmp_path / "duplicated.tif"
    _write_with_duplicated_compression(path, compression, first)
    with tifffile.TiffFile(path) as tif:
        series = next(i for i, s in enumerate(tif.series) if tif.pages[1] in s.pages)
    before = _digest(path)
    with pytest.raises(StackReadError, match="tag 259 twice") as info:
        with TiffStackND(path, series=series) as reader:
            for i in range(len(reader)):
                reader.get_frame(i)
    assert info.value.path == os.fspath(path)
    assert _digest(path) == before


@pytest.mark.parametrize("reader_type", [TiffStackND, TiffSequenceND])
def test_ome_xml_claiming_more_planes_than_the_file_can_hold(tmp_path, monkeypatch,
                                                             reader_type):
    """An 8 KB OME file whose XML claims SizeT=10**7: tifffile's series made a list of 10**7
    planes (2 s, 300 MB) before the reader found the planes missing. The claim is refused
    before: no IFD of 18 bytes or more fits 10**7 times in the file."""
    path = tmp_path / "claims.ome.tif"
    tifffile.imwrite(path, np.zeros((6, 20, 24), "u2"), ome=True, metadata={"axes": "TYX"})
    _edit_description(path, {b'SizeT="6"': b'SizeT="10000000"'})
    assert path.stat().st_size < 10_000

    def no_series(self):
        raise AssertionError("tifffile's series were built")

    monkeypatch.setattr(tifffile.TiffFile, "series", property(no_series))
    with pytest.raises(StackReadError, match=r"claim 10000000 planes.*can hold") as info:
        reader_type(path)
    assert info.value.path == os.fspath(path)


# --- an ImageJ file cut in its pixels, read with fill_missing ---------------------------------


def _cut_imagej(path, data, cut_fraction):
    """Write ``data`` (T, C, Y, X) as an ImageJ hyperstack, cut it; return where its pixels
    start and the cut (ImageJ's layout: IFD 0, every image, the other IFDs)."""
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TCYX"})
    with tifffile.TiffFile(path) as tif:
        start = tif.pages.first.dataoffsets[0]
        assert all(page.offset > start + data.nbytes - 1 for page in tif.pages[1:])
    cut = start + int(data.nbytes * cut_fraction)
    os.truncate(path, cut)
    return start, cut


@pytest.mark.parametrize("cut_fraction", [0.5, 0.1, 29 / 30, 1 / 30])
def test_imagej_file_cut_in_its_pixels_reads_with_fill_missing(tmp_path, cut_fraction):
    """A crashed save or an incomplete copy: tifffile (and so pims) read one plane of it;
    we refused it. With fill_missing, every image it holds whole is read, the others filled."""
    data = np.random.default_rng(8).integers(0, 60000, (10, 3, 16, 20), dtype=np.uint16)
    path = tmp_path / "cut.tif"
    start, cut = _cut_imagej(path, data, cut_fraction)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1 and tif.series[0].shape == (16, 20)  # tifffile's reading
    before = _digest(path)
    with pytest.raises(StackReadError, match=r"declares 30 images .*truncated or corrupt "
                       r"file\); TiffStackND\(path, fill_missing=0\) reads the images it holds"):
        TiffStackND(path)
    whole = (cut - start) // data[0, 0].nbytes  # planes held whole
    for copy in (True, False):
        with TiffStackND(path, fill_missing=7, copy=copy) as reader:
            assert reader.sizes == {"t": 10, "c": 3, "y": 16, "x": 20}
            assert reader.metadata["missing_planes"] == 30 - whole
            for k, (t, c) in enumerate(np.ndindex(10, 3)):
                expected = data[t, c] if k < whole else np.full((16, 20), 7, np.uint16)
                np.testing.assert_array_equal(reader.get_plane(t=t, c=c), expected)
            reader.bundle_axes = "cyx"
            clone = pickle.loads(pickle.dumps(reader))
            with clone:
                np.testing.assert_array_equal(clone[9], reader[9])
                assert clone.metadata["missing_planes"] == 30 - whole
    assert _digest(path) == before


def test_real_imagej_stack_cut_in_its_pixels_reads_with_fill_missing(real_data, tmp_path):
    """Bead_Image1_crop.tif (ImageJ 1.53f, 41 z planes), cut as a copy that stopped."""
    source = real_data / "imagej" / "Bead_Image1_crop.tif"
    expected = tifffile.imread(source)
    path = tmp_path / "beads.tif"
    path.write_bytes(source.read_bytes()[: source.stat().st_size * 3 // 5])
    with tifffile.TiffFile(source) as tif:
        start, plane_bytes = tif.pages.first.dataoffsets[0], expected[0].nbytes
    whole = (path.stat().st_size - start) // plane_bytes
    assert 0 < whole < 41
    with pytest.raises(StackReadError, match="fill_missing=0"):
        TiffStackND(path)
    with TiffStackND(path, fill_missing=0) as reader:
        assert reader.sizes == {"z": 41, "y": 150, "x": 150}
        assert reader.metadata["pixel_size_x"] == pytest.approx(0.0224919, rel=1e-5)
        for z in range(41):
            np.testing.assert_array_equal(reader[z], expected[z] if z < whole else 0)


def test_fill_missing_on_a_whole_file_reads_it_as_without(tmp_path):
    path = tmp_path / "whole.tif"
    data = np.arange(4 * 6 * 8, dtype=np.uint8).reshape(4, 6, 8)
    tifffile.imwrite(path, data, imagej=True)
    with TiffStackND(path, fill_missing=0) as reader:
        assert reader.metadata["missing_planes"] == 0
        np.testing.assert_array_equal(np.stack(list(reader)), data)


@pytest.mark.parametrize("value", [300, -1, 0.5, "0", float("nan")])
def test_fill_missing_that_the_pixel_type_cannot_hold(tmp_path, value):
    path = tmp_path / "u8.tif"
    tifffile.imwrite(path, np.zeros((3, 6, 8), np.uint8), imagej=True)
    with pytest.raises(ValueError, match=r"fill_missing=.* does not fit uint8"):
        TiffStackND(path, fill_missing=value)
