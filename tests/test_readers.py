"""TiffStackND on synthetic files written by tifffile: every layout, checked against tifffile."""

from __future__ import annotations

import multiprocessing
import operator
import os
import pickle
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pims
import pytest
import tifffile
from conftest import _open_image_files

from pims_videoutils import (
    ReaderClosedError,
    StackReadError,
    _dask,
    _pread,
    _registration,
    sequence,
)
from pims_videoutils import readers as readers_module
from pims_videoutils._filenames import FileGrid
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND

RNG = np.random.default_rng(7)


def _data(shape, dtype="u2"):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _pages(path, data, **kwargs):
    """One write per page: IFD, data, IFD, data... (the layout tifffile.memmap refuses)."""
    with tifffile.TiffWriter(path, bigtiff=kwargs.pop("bigtiff", False),
                             byteorder=kwargs.pop("byteorder", None)) as tif:
        for page in data:
            tif.write(page, contiguous=False, **kwargs)


def _write(kind, path):
    """Write a file of the given kind; return the expected planes (non-plane axes..., plane)."""
    if kind == "shaped":
        data = _data((6, 20, 24))
        tifffile.imwrite(path, data)
    elif kind == "shaped-bigendian":
        data = _data((6, 20, 24))
        tifffile.imwrite(path, data, byteorder=">")
    elif kind == "shaped-4d":
        data = _data((3, 2, 20, 24))
        tifffile.imwrite(path, data)
    elif kind == "interleaved-plain":
        data = _data((7, 20, 24))
        _pages(path, data, metadata=None)
    elif kind == "interleaved-shaped-pages":
        data = _data((7, 20, 24))
        _pages(path, data)
    elif kind == "interleaved-bigendian":
        data = _data((7, 20, 24))
        _pages(path, data, metadata=None, byteorder=">")
    elif kind == "interleaved-bigtiff":
        data = _data((7, 20, 24))
        _pages(path, data, metadata=None, bigtiff=True)
    elif kind == "bigtiff-shaped":
        data = _data((5, 20, 24))
        tifffile.imwrite(path, data, bigtiff=True)
    elif kind == "multistrip":
        data = _data((5, 20, 24))
        _pages(path, data, metadata=None, rowsperstrip=3)
    elif kind == "imagej-tzcyx":
        data = _data((3, 4, 2, 20, 24))
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    elif kind == "imagej-bigendian":
        data = _data((4, 20, 24))
        tifffile.imwrite(path, data, imagej=True, byteorder=">", metadata={"axes": "ZYX"})
    elif kind == "imagej-truncated":
        data = _data((5, 3, 20, 24))
        tifffile.imwrite(path, data, imagej=True, truncate=True, metadata={"axes": "TCYX"})
    elif kind == "rgb":
        data = _data((4, 20, 24, 3), "u1")
        tifffile.imwrite(path, data, photometric="rgb")
    elif kind == "rgb16-interleaved":
        data = _data((4, 20, 24, 3), "u2")
        _pages(path, data, photometric="rgb", metadata=None)
    elif kind == "rgb-planar":
        data = _data((3, 3, 20, 24), "u1")
        _pages(path, data, photometric="rgb", planarconfig="separate", metadata=None)
        data = np.moveaxis(data, 1, -1)
    elif kind == "palette":
        data = _data((3, 20, 24), "u1")
        cmap = _data((3, 256), "u2")
        tifffile.imwrite(path, data, photometric="palette", colormap=cmap)
    elif kind in ("deflate", "lzw", "packbits"):
        data = _data((5, 20, 24))
        data[:, :10] = 3
        tifffile.imwrite(path, data, compression={"deflate": "zlib"}.get(kind, kind))
    elif kind == "deflate-predictor":
        data = _data((5, 20, 24))
        tifffile.imwrite(path, data, compression="zlib", predictor=True)
    elif kind == "tiled":
        data = _data((4, 32, 48))
        tifffile.imwrite(path, data, tile=(16, 16), photometric="minisblack")
    elif kind == "ome":
        data = _data((2, 3, 20, 24))
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCYX"})
    elif kind == "single-page":
        data = _data((20, 24))
        tifffile.imwrite(path, data, metadata=None)
    else:
        raise AssertionError(kind)
    return data


KINDS = ["shaped", "shaped-bigendian", "shaped-4d", "interleaved-plain",
         "interleaved-shaped-pages", "interleaved-bigendian", "interleaved-bigtiff",
         "bigtiff-shaped", "multistrip", "imagej-tzcyx", "imagej-bigendian", "imagej-truncated",
         "rgb", "rgb16-interleaved", "rgb-planar", "palette", "deflate", "lzw", "packbits",
         "deflate-predictor", "tiled", "ome", "single-page"]
EXPECTED = {  # kind: (sizes, storage, metadata kind)
    "shaped": ({"t": 6}, "mapped", "shaped"),
    "shaped-bigendian": ({"t": 6}, "mapped", "shaped"),
    "shaped-4d": ({"t": 3, "q": 2}, "mapped", "shaped"),  # unknown Q twice: t, then q
    "interleaved-plain": ({"t": 7}, "mapped", "uniform"),
    "interleaved-shaped-pages": ({"t": 7}, "mapped", "uniform"),
    "interleaved-bigendian": ({"t": 7}, "mapped", "uniform"),
    "interleaved-bigtiff": ({"t": 7}, "mapped", "uniform"),
    "bigtiff-shaped": ({"t": 5}, "mapped", "shaped"),
    "multistrip": ({"t": 5}, "mapped", "uniform"),
    "imagej-tzcyx": ({"t": 3, "z": 4, "c": 2}, "mapped", "imagej"),
    "imagej-bigendian": ({"z": 4}, "mapped", "imagej"),
    "imagej-truncated": ({"t": 5, "c": 3}, "mapped", "imagej"),
    "rgb": ({"t": 4, "s": 3}, "mapped", "shaped"),
    "rgb16-interleaved": ({"t": 4, "s": 3}, "mapped", "uniform"),
    "rgb-planar": ({"t": 3, "s": 3}, "decoded", "uniform"),
    "palette": ({"t": 3}, "mapped", "shaped"),
    "deflate": ({"t": 5}, "decoded", "shaped"),
    "lzw": ({"t": 5}, "decoded", "shaped"),
    "packbits": ({"t": 5}, "decoded", "shaped"),
    "deflate-predictor": ({"t": 5}, "decoded", "shaped"),
    "tiled": ({"t": 4}, "decoded", "shaped"),
    "ome": ({"t": 2, "c": 3}, "mapped", "ome"),
    "single-page": ({}, "mapped", "uniform"),
}


def non_plane_axes(reader):
    return [a for a in reader.axes if a not in "yxs"]


def assert_planes_equal(reader, expected):
    """Every plane of the reader equals ``expected[coords]``, native byte order."""
    axes = non_plane_axes(reader)
    assert expected.shape[: len(axes)] == tuple(reader.sizes[a] for a in axes)
    for index in np.ndindex(*expected.shape[: len(axes)]):
        plane = reader.get_plane(**dict(zip(axes, index, strict=True)))
        assert plane.dtype.isnative
        assert plane.dtype == expected.dtype.newbyteorder("=")
        np.testing.assert_array_equal(plane, expected[index])


@pytest.fixture(params=KINDS)
def written(request, tmp_path):
    path = tmp_path / f"{request.param}.tif"
    data = _write(request.param, path)
    return request.param, path, data


def test_layout_reads_like_tifffile(written):
    kind, path, data = written
    sizes, storage, meta_kind = EXPECTED[kind]
    with TiffStackND(path) as reader:
        outer = {k: v for k, v in sizes.items() if k != "s"}
        plane_sizes = {"y": data.shape[len(outer)], "x": data.shape[len(outer) + 1]}
        assert reader.sizes == {**outer, **plane_sizes,
                                **({"s": sizes["s"]} if "s" in sizes else {})}
        assert reader.storage == storage == reader.metadata["storage"]
        assert reader.metadata["kind"] == meta_kind
        assert_planes_equal(reader, data)
        assert reader.bundle_axes == (["y", "x", "s"] if "s" in sizes else ["y", "x"])


def test_reference_is_tifffile_decoding(written):
    """The expected planes above are also what tifffile's own series decoding returns."""
    kind, path, data = written
    with tifffile.TiffFile(path) as tif:
        if kind == "interleaved-shaped-pages":
            ref = np.stack([s.asarray() for s in tif.series])
        else:
            ref = tif.series[0].asarray()
    if kind == "rgb-planar":
        ref = np.moveaxis(ref, 1, -1)
    np.testing.assert_array_equal(ref.reshape(data.shape), data)


@pytest.mark.parametrize("dtype", ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4",
                                   "f8", "c8"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_every_sample_type(tmp_path, dtype, byteorder):
    data = _data((3, 5, 6), "f4").astype(dtype) if dtype[0] == "c" else _data((3, 5, 6), dtype)
    path = tmp_path / "dtype.tif"
    _pages(path, data, metadata=None, byteorder=byteorder)
    with TiffStackND(path) as reader:
        assert reader.storage == "mapped"
        assert reader.pixel_type == np.dtype(dtype)
        assert_planes_equal(reader, data)
        frames = np.stack(list(reader))
        np.testing.assert_array_equal(frames, tifffile.imread(path))


def test_non_uniform_pages_fall_back_to_tifffile_series(tmp_path):
    path = tmp_path / "mixed.tif"
    first, second = _data((3, 20, 24)), _data((2, 10, 12), "u1")
    with tifffile.TiffWriter(path) as tif:
        for page in first:
            tif.write(page, contiguous=False, metadata=None)
        for page in second:
            tif.write(page, contiguous=False, metadata=None)
    with TiffStackND(path) as reader:
        series = reader.metadata["series"]
        assert len(series) == 2
        with tifffile.TiffFile(path) as tif:
            expected = [s.asarray() for s in tif.series]
        assert_planes_equal(reader, expected[0])
    with TiffStackND(path, series=1) as reader:
        assert_planes_equal(reader, expected[1])
    with pytest.raises(StackReadError, match="series 5 does not exist"):
        TiffStackND(path, series=5)


def _patch_tag(path, page, code, value, size=2):
    """Overwrite the inline value (SHORT or LONG) of tag ``code`` of page ``page``."""
    with tifffile.TiffFile(path) as tif:
        position = tif.pages[page].tags[code].offset + 8
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(value.to_bytes(size, "little"))


@pytest.mark.parametrize("case", ["shaped-transposed", "shaped-unsigned", "ome-unsigned",
                                  "ome-unsigned-apart", "uniform-unsigned"])
def test_page_of_another_layout_in_a_series_is_not_read_as_the_first(tmp_path, case):
    """A page in the middle of a tifffile series whose own tags give another shape or sample
    type, with as many bytes (20 x 24 stored as 24 x 20; int16 stored as uint16).

    tifffile's series reads such a page with the first page's layout; mapped planes did too,
    silently. The page must read as tifffile decodes it (pages[i].asarray()), or raise.
    ``apart``: the planes are not one block (pages 1 and 2 swap their data). ``uniform``: a
    plain file, which tifffile deems uniform from its pages 0, 1, 7 and the last.
    """
    path = tmp_path / ("odd.ome.tif" if case.startswith("ome") else "odd.tif")
    data = _data((10, 20, 24), "i2")
    metadata = None if case.startswith("uniform") else {"axes": "TYX"}
    tifffile.imwrite(path, data, ome=case.startswith("ome"), metadata=metadata)
    if case == "shaped-transposed":
        for code, value in ((256, 20), (257, 24), (278, 24)):
            _patch_tag(path, 3, code, value)
    else:
        _patch_tag(path, 3, 339, 1)
    if case.endswith("apart"):
        with tifffile.TiffFile(path) as tif:
            first, second = (tif.pages[k].dataoffsets[0] for k in (1, 2))
        _patch_tag(path, 1, 273, second, 4)
        _patch_tag(path, 2, 273, first, 4)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) == 1 and len(tif.series[0]) == 10
        expected = [page.asarray() for page in tif.pages]
    with TiffStackND(path) as reader:
        assert reader.sizes["t"] == 10
        for i in (0, 1, 2, *range(4, 10)):
            np.testing.assert_array_equal(reader[i], expected[i])
        with pytest.raises(StackReadError, match=r"page 3 decodes to .*inconsistent pages"):
            reader[3]


def test_change_of_tag_count_mid_file_is_still_proven(tmp_path):
    """A page with an extra tag breaks the guessed IFD progression; the walk resumes."""
    path = tmp_path / "extra.tif"
    data = _data((9, 20, 24))
    with tifffile.TiffWriter(path) as tif:
        for k, page in enumerate(data):
            tif.write(page, contiguous=False, metadata=None,
                      description="hello" if k == 4 else None)
    with TiffStackND(path) as reader:
        assert reader.metadata["kind"] == "uniform"
        assert reader.sizes["t"] == 9
        assert_planes_equal(reader, data)


def test_ome_two_series(tmp_path):
    path = tmp_path / "two.ome.tif"
    first, second = _data((3, 20, 24)), _data((2, 4, 10, 12), "u1")
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(first, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                   "PhysicalSizeZ": 2.0})
        tif.write(second, metadata={"axes": "TCYX", "TimeIncrement": 0.25,
                                    "Channel": {"Name": ["a", "b", "c", "d"]}})
    with TiffStackND(path) as reader:
        assert [s["shape"] for s in reader.metadata["series"]] == [(3, 20, 24), (2, 4, 10, 12)]
        assert reader.sizes == {"z": 3, "y": 20, "x": 24}
        assert reader.metadata["pixel_size_x"] == 0.5
        assert reader.metadata["z_step"] == 2.0
        assert_planes_equal(reader, first)
    with TiffStackND(path, series=1) as reader:
        assert reader.sizes == {"t": 2, "c": 4, "y": 10, "x": 12}
        assert reader.metadata["frame_interval"] == 0.25
        assert reader.frame_rate == 4.0
        assert reader.metadata["channel_names"] == ["a", "b", "c", "d"]
        assert_planes_equal(reader, second)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_ome_pyramid_levels(tmp_path, compression):
    path = tmp_path / "pyramid.ome.tif"
    full = _data((3, 40, 48))
    with tifffile.TiffWriter(path, ome=True) as tif:
        options = {"tile": (16, 16), "compression": compression}
        tif.write(full, subifds=2, metadata={"axes": "TYX", "PhysicalSizeX": 0.5,
                                             "PhysicalSizeY": 0.25}, **options)
        tif.write(full[:, ::2, ::2], subfiletype=1, **options)
        tif.write(full[:, ::4, ::4], subfiletype=1, **options)
    with tifffile.TiffFile(path) as tif:  # the reference: tifffile's decoding of each level
        levels = [level.asarray() for level in tif.series[0].levels]
    assert [level.shape for level in levels] == [(3, 40, 48), (3, 20, 24), (3, 10, 12)]
    with TiffStackND(path) as reader:
        assert reader.metadata["series"][0]["levels"] == [(3, 40, 48), (3, 20, 24), (3, 10, 12)]
        assert_planes_equal(reader, levels[0])
    with TiffStackND(path, level=2) as reader:
        assert reader.sizes == {"t": 3, "y": 10, "x": 12}
        assert reader.metadata["level"] == 2
        assert reader.metadata["pixel_size_x"] == pytest.approx(2.0)
        assert reader.metadata["pixel_size_y"] == pytest.approx(1.0)
        assert_planes_equal(reader, levels[2])
        clone = pickle.loads(pickle.dumps(reader))
        with clone:
            np.testing.assert_array_equal(clone[1], levels[2][1])
    with pytest.raises(StackReadError, match=r"level 3 does not exist.*3 pyramid levels"):
        TiffStackND(path, level=3)


@pytest.mark.parametrize("moved", [False, True], ids=["contiguous", "moved"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_shaped_pyramid_levels(tmp_path, compression, moved):
    """Levels of a tifffile (not OME) pyramid in SubIFDs, stripped. tifffile's level series
    holds the first level page alone: it reads the level as one block after that page's data
    (iterating it gives level 0's pages). ``moved``: the SubIFD of page 2 at level 1 points at
    the data of page 0, so the level's planes are not that block. The reference is tifffile's
    own parse of each SubIFD.
    """
    path = tmp_path / "pyramid.tif"
    full = _data((4, 32, 40))
    with tifffile.TiffWriter(path) as tif:
        for step in (1, 2, 4):
            tif.write(full[:, ::step, ::step], photometric="minisblack", compression=compression,
                      **({"subifds": 2} if step == 1 else {"subfiletype": 1}))

    def page_at(tif, offset):
        tif.filehandle.seek(offset)
        return tifffile.TiffPage(tif, 0)

    with tifffile.TiffFile(path) as tif:
        subifds = [page.subifds for page in tif.pages]
        if moved:
            position = page_at(tif, subifds[2][0]).tags["StripOffsets"].offset + 8
            target = page_at(tif, subifds[0][0]).dataoffsets[0]
    if moved:
        with open(path, "r+b") as f:
            f.seek(position)
            f.write(target.to_bytes(4, "little"))
    with tifffile.TiffFile(path) as tif:
        levels = [tif.series[0].asarray()] + [
            np.stack([page_at(tif, offsets[level - 1]).asarray() for offsets in subifds])
            for level in (1, 2)]
    if moved:
        np.testing.assert_array_equal(levels[1][2], full[0, ::2, ::2])
    for level, expected in enumerate(levels):
        with TiffStackND(path, level=level) as reader:
            assert_planes_equal(reader, expected)


def test_level_of_a_file_without_pyramid(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _data((2, 8, 8)))
    with TiffStackND(path) as reader:
        assert reader.metadata["series"][0]["levels"] == [(2, 8, 8)]
    with pytest.raises(StackReadError, match=r"level 1 does not exist.*1 pyramid level:"):
        TiffStackND(path, level=1)


def test_imagej_metadata(tmp_path):
    path = tmp_path / "ij.tif"
    data = _data((3, 2, 20, 24))
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "TZYX", "spacing": 1.5, "unit": "um", "finterval": 0.1})
    with TiffStackND(path) as reader:
        meta = reader.metadata
        assert meta["pixel_size_x"] == pytest.approx(0.25)
        assert meta["z_step"] == 1.5
        assert meta["unit"] == "µm"
        assert meta["frame_interval"] == pytest.approx(0.1)
        assert reader.frame_rate == pytest.approx(10)
        assert meta["imagej_metadata"]["spacing"] == 1.5
        assert meta["software"].startswith("ImageJ") or meta["software"] == "tifffile.py"


def test_metadata_keys_always_present(written):
    _, path, _ = written
    with TiffStackND(path) as reader:
        for key in ("pixel_size_x", "pixel_size_y", "z_step", "unit", "frame_interval",
                    "channel_names", "software", "kind", "storage", "series"):
            assert key in reader.metadata


def test_palette_returns_indices_and_colormap(tmp_path):
    path = tmp_path / "palette.tif"
    data = _write("palette", path)
    with TiffStackND(path) as reader, tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(reader.metadata["colormap"], tif.pages[0].colormap)
        np.testing.assert_array_equal(reader[1], data[1])


# --- pims machinery --------------------------------------------------------------------------


@pytest.fixture
def hyperstack(tmp_path):
    path = tmp_path / "hyper.tif"
    data = _write("imagej-tzcyx", path)  # t=3 z=4 c=2 y=20 x=24
    return path, data


def test_pims_defaults_and_len(hyperstack):
    path, data = hyperstack
    with TiffStackND(path) as reader:
        assert reader.iter_axes == ["t"]
        assert len(reader) == 3
        frame = reader[2]
        assert isinstance(frame, pims.Frame)
        assert frame.frame_no == 2
        assert frame.metadata["coords"] == {"t": 2, "z": 0, "c": 0}
        np.testing.assert_array_equal(frame, data[2, 0, 0])


def test_pims_bundle_iter_default_coords(hyperstack):
    path, data = hyperstack
    with TiffStackND(path) as reader:
        reader.bundle_axes = "xy"
        reader.default_coords["c"] = 1
        np.testing.assert_array_equal(reader[1], data[1, 0, 1].T)
        reader.bundle_axes = "zyx"
        reader.iter_axes = "ct"
        assert len(reader) == 6
        np.testing.assert_array_equal(reader[3], data[0, :, 1])  # c=1, t=0
        reader.bundle_axes = "czyx"
        reader.iter_axes = "t"
        np.testing.assert_array_equal(reader[2], data[2].transpose(1, 0, 2, 3))
        assert reader.frame_shape == (2, 4, 20, 24)
        assert reader[-1].frame_no == 2


@pytest.mark.parametrize("iter_axes", ["t", "z", "c", "tz", "ct", "zct", "czt"])
@pytest.mark.parametrize("bundle", ["yx", "xy"])
def test_every_iteration_reads_the_planes_numpy_indexes(hyperstack, iter_axes, bundle):
    path, data = hyperstack  # t=3 z=4 c=2
    order = "tzc"
    with TiffStackND(path) as reader:
        reader.bundle_axes = bundle
        reader.iter_axes = iter_axes
        reader.default_coords.update(z=2, c=1, t=1)
        sizes = [reader.sizes[a] for a in iter_axes]
        assert len(reader) == int(np.prod(sizes))
        for i in range(len(reader)):
            coords = {"t": 1, "z": 2, "c": 1}
            coords.update(zip(iter_axes, map(int, np.unravel_index(i, sizes)), strict=True))
            plane = data[tuple(coords[a] for a in order)]
            frame = reader[i]
            np.testing.assert_array_equal(frame, plane if bundle == "yx" else plane.T)
            assert frame.metadata["coords"] == coords and frame.metadata["axes"] == list(bundle)
        reader.default_coords["z"] = 3  # a change between reads is honoured
        if "z" not in iter_axes:
            coords = {"t": 1, "z": 3, "c": 1}
            coords.update(zip(iter_axes, map(int, np.unravel_index(0, sizes)), strict=True))
            assert reader[0].metadata["coords"] == coords
            plane = data[tuple(coords[a] for a in order)]
            np.testing.assert_array_equal(reader[0], plane if bundle == "yx" else plane.T)


def test_out_of_range_coordinates(hyperstack):
    path, _ = hyperstack
    with TiffStackND(path) as reader:
        with pytest.raises(IndexError):
            reader.get_plane(t=3)
        with pytest.raises(IndexError):
            reader[3]


def test_indexing_keys_behave_as_in_pims(hyperstack):
    path, data = hyperstack
    with TiffStackND(path) as reader:
        count = len(reader)
        for key in (0, count - 1, -1, -count, np.int64(1), np.int32(-2), True):
            expected = data[int(key) % count, 0, 0]
            frame = reader[key]
            assert isinstance(frame, pims.Frame) and frame.frame_no == int(key) % count
            np.testing.assert_array_equal(frame, expected)
        for key in (count, -count - 1, np.int64(count)):
            with pytest.raises(IndexError):
                reader[key]
        with pytest.raises(IndexError):
            reader.get_frame(-1)
        for key, picks in ((slice(None, None, -1), range(count)[::-1]), ([2, 0], [2, 0]),
                           (np.array([True, False, True]), [0, 2])):
            sub = reader[key]
            assert len(sub) == len(picks)
            for frame, pick in zip(sub, picks, strict=True):
                np.testing.assert_array_equal(frame, data[pick, 0, 0])
                assert frame.frame_no == pick


def test_pims_open_picks_this_reader(hyperstack):
    path, _ = hyperstack
    with pims.open(str(path)) as reader:
        assert isinstance(reader, TiffStackND)


def test_frames_are_writable_copies(hyperstack):
    path, data = hyperstack
    with TiffStackND(path) as reader:
        frame = reader[0]
        frame[:] = 0
        np.testing.assert_array_equal(reader[0], data[0, 0, 0])


def test_frames_behave_as_pims_frames(hyperstack):
    """Frames read straight into a new pims.Frame keep pims's behaviour (slices, pickle)."""
    path, data = hyperstack
    with TiffStackND(path) as reader:
        frame = reader[1]
        assert type(frame) is pims.Frame and frame.flags.writeable and frame.flags.owndata
        part = frame[2:5, 3:]
        assert part.frame_no == 1 and part.metadata == frame.metadata
        np.testing.assert_array_equal(part, data[1, 0, 0, 2:5, 3:])
        copy = pickle.loads(pickle.dumps(frame))
        assert copy.frame_no == 1 and copy.metadata == {"axes": ["y", "x"], "coords": {
            "t": 1, "z": 0, "c": 0}}
        np.testing.assert_array_equal(copy, data[1, 0, 0])
        assert reader[2].metadata is not frame.metadata  # each frame its own metadata


# --- copy=False, close, pickle, threads ----------------------------------------------------


def test_copy_false_gives_read_only_views(tmp_path):
    path = tmp_path / "le.tif"
    data = _write("interleaved-plain", path)
    with TiffStackND(path, copy=False) as reader:
        plane = reader.get_plane(t=3)
        assert not plane.flags.writeable
        np.testing.assert_array_equal(plane, data[3])
        with pytest.raises(ValueError):
            plane[0, 0] = 1
        del plane


def test_copy_false_refuses_foreign_byte_order(tmp_path):
    path = tmp_path / "be.tif"
    _write("interleaved-bigendian", path)
    with pytest.raises(ValueError, match="byte order"):
        TiffStackND(path, copy=False)


def test_close_and_context_manager(hyperstack):
    path, _ = hyperstack
    reader = TiffStackND(path)
    with reader:
        assert not reader.closed
    assert reader.closed
    with pytest.raises(ReaderClosedError):
        reader[0]
    reader.close()  # idempotent


def test_closed_decoded_reader(tmp_path):
    path = tmp_path / "z.tif"
    _write("deflate", path)
    reader = TiffStackND(path)
    reader.close()
    with pytest.raises(ReaderClosedError):
        reader.get_plane(t=0)


@pytest.mark.parametrize("kind", ["imagej-tzcyx", "deflate"])
def test_close_from_another_thread_during_a_read(tmp_path, monkeypatch, kind):
    """close() while a read is inside preadv (or tifffile's decode): the read completes with
    the right plane, the file is released right after it, later reads raise."""
    path = tmp_path / f"{kind}.tif"
    data = _write(kind, path)
    reader = TiffStackND(path)
    closed = threading.Event()

    def close_elsewhere():
        worker = threading.Thread(target=reader.close)
        worker.start()
        worker.join(5)
        closed.set()

    if reader.storage == "mapped":
        preadv = os.preadv

        def read_while_closing(fd, buffers, offset, *flags):
            close_elsewhere()
            return preadv(fd, buffers, offset, *flags)

        monkeypatch.setattr(_pread, "_PREADV", read_while_closing)
    else:
        asarray = tifffile.TiffPage.asarray

        def decode_while_closing(page, *args, **kwargs):
            close_elsewhere()
            return asarray(page, *args, **kwargs)

        monkeypatch.setattr(tifffile.TiffPage, "asarray", decode_while_closing)
    plane = reader.get_plane(t=1)
    assert closed.is_set() and reader.closed
    np.testing.assert_array_equal(plane, data[1].reshape(-1, *plane.shape)[0])  # t=1, z=c=0
    assert reader._file is None  # released when the read ended
    with pytest.raises(ReaderClosedError):
        reader.get_plane(t=0)


def _read_until_closed(reader, planes, seed, started, outcomes):
    """Read random planes until the reader is closed; note how the reading ended."""
    rng = np.random.default_rng(seed)
    started.wait()
    try:
        while True:
            i = int(rng.integers(len(planes)))
            assert np.array_equal(reader[i], planes[i])
    except ReaderClosedError:
        outcomes.append("closed")
    except BaseException as exc:
        outcomes.append(repr(exc))


def test_close_while_many_threads_read(tmp_path):
    """Threads reading while another closes get right planes or ReaderClosedError, nothing
    else (no read on a released descriptor), and the file is released once they stop."""
    path = tmp_path / "stack.tif"
    data = _write("imagej-tzcyx", path)
    planes = data.reshape(-1, *data.shape[-2:])
    for _ in range(5):
        reader = TiffStackND(path)
        reader.iter_axes = "tzc"
        outcomes, started = [], threading.Barrier(5)
        threads = [threading.Thread(target=_read_until_closed,
                                    args=(reader, planes, seed, started, outcomes))
                   for seed in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(0.02)
        reader.close()
        for thread in threads:
            thread.join(10)
        assert outcomes == ["closed"] * 4
        assert reader._file is None


@pytest.mark.parametrize("kind", ["imagej-tzcyx", "deflate"])
def test_pickle_round_trip(tmp_path, kind):
    path = tmp_path / f"{kind}.tif"
    _write(kind, path)
    with TiffStackND(path) as reader:
        reader.bundle_axes = "xy"
        reader.iter_axes = "t"
        reader.default_coords["t"] = 1
        blob = pickle.dumps(reader)
        assert len(blob) < 10_000
        with pickle.loads(blob) as clone:
            assert clone.bundle_axes == ["x", "y"]
            assert clone.sizes == reader.sizes
            assert dict(clone.default_coords) == dict(reader.default_coords)
            for i in range(len(reader)):
                np.testing.assert_array_equal(clone[i], reader[i])


@pytest.mark.parametrize("kind", ["imagej-tzcyx", "deflate"])
def test_closed_reader_does_not_pickle(tmp_path, kind):
    """Unpickling re-opens the file: a closed reader came back open (in another process, say)."""
    path = tmp_path / f"{kind}.tif"
    _write(kind, path)
    reader = TiffStackND(path)
    reader.close()
    with pytest.raises(ReaderClosedError, match="closed reader cannot be pickled") as caught:
        pickle.dumps(reader)
    assert isinstance(caught.value, ValueError)  # like pickling a closed file


def test_unpickled_reader_of_a_file_that_lost_an_axis(tmp_path):
    """A reader re-opened by unpickling restores its axis settings: an axis gone from the file
    since (replaced by a stack without channels) raised pims's "axes ['c'] do not exist"
    naming no file, and left the re-opened file open."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _data((3, 2, 8, 9)), imagej=True, metadata={"axes": "TCYX"})
    with TiffStackND(path) as reader:
        reader.iter_axes = "c"
        blob = pickle.dumps(reader)
    tifffile.imwrite(path, _data((3, 8, 9)), imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(StackReadError, match="changed since the reader was pickled: no axis c"):
        pickle.loads(blob)


def test_unpickled_reader_whose_default_coordinate_no_longer_fits(tmp_path):
    """A file with fewer time points since the reader was pickled: its default coordinate t=2
    failed only when a frame was read, with an IndexError naming no file."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _data((3, 2, 8, 9)), imagej=True, metadata={"axes": "TCYX"})
    with TiffStackND(path) as reader:
        reader.iter_axes = "c"
        reader.default_coords["t"] = 2
        blob = pickle.dumps(reader)
    tifffile.imwrite(path, _data((2, 2, 8, 9)), imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(StackReadError, match=re.escape(
            f"{path}: changed since the reader was pickled: its default coordinate t=2 is "
            "beyond the 2 coordinates of t now")):
        pickle.loads(blob)


def test_pickled_reader_reopens_the_file_a_path_through_a_link_names(tmp_path, monkeypatch):
    """``os.path.abspath`` drops ``..`` by the letters: after a link to a folder, ``link/..``
    became the folder holding the link, not the parent of its target, so the unpickled reader
    re-opened another file."""
    for folder in ("real/sub", "real/data", "data"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub", target_is_directory=True)
    for folder, frames in (("real/data", 2), ("data", 3)):
        tifffile.imwrite(tmp_path / folder / "a.tif", _data((frames, 4, 5)),
                         photometric="minisblack")
    monkeypatch.chdir(tmp_path)
    path = os.path.join("link", os.pardir, "data", "a.tif")
    with TiffStackND(path) as reader, pickle.loads(pickle.dumps(reader)) as clone:
        np.testing.assert_array_equal(np.stack(list(clone)), tifffile.imread(path))


def test_pickle_across_spawned_processes(hyperstack):
    path, data = hyperstack
    with TiffStackND(path) as reader:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            frames = pool.starmap(operator.getitem, [(reader, i) for i in range(3)])
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, data[i, 0, 0])


def _move_the_file_position_until_killed(fd: int, size: int) -> None:
    """What a forked process reading through an inherited descriptor does to its position."""
    rng = random.Random(0)
    while True:
        os.lseek(fd, rng.randrange(size), os.SEEK_SET)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
@pytest.mark.parametrize("kind", ["deflate", "packbits"])
def test_forked_process_moving_the_shared_file_position_changes_no_read(tmp_path, kind):
    """A reader inherited by forked processes (multiprocessing's default on Linux) shares its
    open file, and so the file's position, with them: tifffile's seek-then-read decoding read
    at the children's positions (deflate and PackBits pages failed to decode).
    Reads must not depend on that shared position."""
    path = tmp_path / f"{kind}.tif"
    data = _data((60, 24, 20))
    tifffile.imwrite(path, data, compression=kind, photometric="minisblack")
    with TiffStackND(path) as reader:
        assert reader.storage == "decoded"
        reader[0]
        fd = reader._file.fileno()
        child = multiprocessing.get_context("fork").Process(
            target=_move_the_file_position_until_killed, args=(fd, os.path.getsize(path)),
            daemon=True)
        child.start()
        try:
            for _ in range(3):
                for t in range(len(reader)):
                    np.testing.assert_array_equal(reader[t], data[t])
        finally:
            child.kill()
            child.join(10)


def _exit_with_plane_check(reader, t: int, expected: np.ndarray) -> None:
    os._exit(0 if np.array_equal(reader.get_plane(t=t), expected) else 1)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("held", ["stack", "sequence cache", "sequence file"])
def test_process_forked_while_another_thread_holds_a_lock_reads(tmp_path, held):
    """fork copies only its own thread: a reader's lock that another thread held then (while
    it decoded a page) stayed held in the child, whose reads waited forever."""
    data = _data((4, 24, 20))
    paths = [tmp_path / f"img_t{t}.tif" for t in range(len(data))]
    for path, plane in zip(paths, data, strict=True):
        tifffile.imwrite(path, plane, compression="zlib")
    if held == "stack":
        tifffile.imwrite(paths[0], data, compression="zlib", photometric="minisblack")
        reader = TiffStackND(paths[0])
    else:
        reader = TiffSequenceND([str(p) for p in paths])
    with reader:
        reader.get_plane(t=2)
        lock = {"stack": lambda: reader._lock,
                "sequence cache": lambda: reader._files._lock,
                "sequence file": lambda: reader._files._readers[2]._lock}[held]()
        assert _exit_code_of_child_forked_while_held(
            lock, _exit_with_plane_check, (reader, 2, data[2])) == 0


def _exit_code_of_child_forked_while_held(lock, target, args=()) -> int | None:
    """Fork a child running ``target(*args)`` while another thread holds ``lock``; return its
    exit code (killed after 30 s: a child that hung on the lock fails)."""
    taken, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            taken.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        child = multiprocessing.get_context("fork").Process(target=target, args=args)
        child.start()
        child.join(30)
        if child.is_alive():  # hung on the lock
            child.kill()
            child.join(10)
    finally:
        release.set()
        holder.join(10)
    return child.exitcode


@pytest.mark.parametrize("owner", ["stack", "sequence", "dataset file"])
def test_fork_at_the_registration_of_a_lock_owner_renews_its_locks(tmp_path, monkeypatch, owner):
    """A process may fork the moment another thread registers a new reader, dataset file or
    open-files cache for renewal: its renewal then ran on a half-built object (a dataset
    file without its decoder: AttributeError in the child's at-fork hook, which then
    renewed no lock of the owners after it)."""
    from pims_videoutils import _multifile

    data = _data((2, 3, 24, 20))
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:  # (a dataset: positions in one file)
        for position in data:
            writer.write(position, compression="zlib", metadata={"axes": "TYX"})
    renewed = []

    def fork_now(module_of_owner):
        def register(owner):  # then renew in the child forked at once
            owner._renew_locks_after_fork()
            renewed.append(type(owner).__name__)
        monkeypatch.setattr(module_of_owner, "renew_locks_after_fork", register)

    if owner == "stack":
        fork_now(readers_module)
        opened, position = TiffStackND(path), {}
    else:
        fork_now(_multifile if owner == "dataset file" else sequence)
        opened, position = TiffSequenceND(path), {"p": 1}
    with opened:
        np.testing.assert_array_equal(opened.get_plane(t=1, **position),
                                      data[position.get("p", 0), 1])
    assert renewed


def _exit_holding_no_file_under(folder) -> None:
    held = [name for name in _open_image_files() if name.startswith(str(folder))]
    os._exit(1 if held else 0)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open files not listed")
@pytest.mark.parametrize("kind", ["stack", "sequence"])
def test_reader_closed_during_a_read_holds_no_file_in_a_forked_child(tmp_path, kind):
    """A reader closed while another thread reads leaves its file (a sequence, the file being
    read) to be released by that read; a child forked meanwhile has no such thread, and kept
    the file open for good."""
    data = _data((2, 3, 24, 20))
    paths = [tmp_path / f"img_t{t}.tif" for t in range(len(data))]
    for path, stack in zip(paths, data, strict=True):
        tifffile.imwrite(path, stack, photometric="minisblack")
    if kind == "stack":
        reader = TiffStackND(paths[0])
        reader._reads_in_flight.append(0)  # another thread's read under way

        def end_the_read():
            reader._reads_in_flight.pop()
            reader._release_when_idle()
    else:
        reader = TiffSequenceND([str(path) for path in paths])
        cache = reader._files
        cache.acquire(1)  # another thread reads file 1

        def end_the_read():
            cache.release(1)
    reader.close()
    try:
        child = multiprocessing.get_context("fork").Process(
            target=_exit_holding_no_file_under, args=(tmp_path,))
        child.start()
        child.join(30)
    finally:
        end_the_read()
    assert child.exitcode == 0


def _lock_users(tmp_path, data):
    """What a child does that takes each module-level lock, and the lock (as the parent has it).

    Each use returns whether the child read the right plane.
    """
    paths = [tmp_path / f"img_t{t}.tif" for t in range(len(data))]
    for path, plane in zip(paths, data, strict=True):
        tifffile.imwrite(path, plane)
    stack, compressed = tmp_path / "stack.tif", tmp_path / "deflate.tif"
    tifffile.imwrite(stack, data, photometric="minisblack")
    tifffile.imwrite(compressed, data, photometric="minisblack", compression="zlib")

    def open_a_sequence():  # a new open-files cache joins the list of every cache
        with TiffSequenceND([str(path) for path in paths]) as reader:
            return np.array_equal(reader.get_plane(t=2), data[2])

    def run_a_dask_task():  # a task unpickled in a worker finds the worker's reader
        with TiffStackND(stack) as reader:
            task = pickle.loads(pickle.dumps(_dask.GraphReader(reader)))
            return np.array_equal(task.reader.get_plane(t=2), data[2])

    def load_the_readers():  # what pims.open does first
        _registration.ensure_readers_loaded()
        return True

    def read_without_preadv():  # a seek and a read, as where os.preadv is missing
        _pread._PREADV = None  # (in the child only)
        with open(paths[2], "rb") as file:
            head = bytearray(8)
            return _pread.read_at(file.fileno(), [head], 0) == 8 and head[:2] in (b"II", b"MM")

    def open_a_stack():  # tifffile parses the (compressed) file's series
        with TiffStackND(compressed) as reader:
            return np.array_equal(reader.get_plane(t=2), data[2])

    # (Python < 3.12 computes each functools.cached_property under a lock of the class)
    def property_lock(cls, name):
        return lambda: getattr(vars(cls)[name], "lock", None)

    return {
        "open-files caches": (lambda: sequence._OpenFiles._everywhere_lock, open_a_sequence),
        "tifffile cached property": (property_lock(tifffile.TiffFile, "series"), open_a_stack),
        "file grid cached property": (property_lock(FileGrid, "shape"), open_a_sequence),
        "dask re-opened readers": (lambda: _dask._REOPENED_LOCK, run_a_dask_task),
        "reader registration": (lambda: _registration._lock, load_the_readers),
        "seek lock": (lambda: _pread._SEEK_LOCK, read_without_preadv),
    }


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("held", ["open-files caches", "dask re-opened readers",
                                  "reader registration", "seek lock", "tifffile cached property",
                                  "file grid cached property"])
def test_process_forked_while_another_thread_holds_a_module_lock_goes_on(tmp_path, held):
    """Module-level locks, like readers' locks, stayed held in a child forked while another
    thread held them: the child's first sequence opened, first dask task, first ``pims.open``
    or first read without ``preadv`` waited forever; so did its first file opened when
    another thread was parsing one (a class-wide lock of Python 3.11's cached properties)."""
    data = _data((3, 24, 20))
    lock_of, use = _lock_users(tmp_path, data)[held]
    lock = lock_of()
    if lock is None:
        pytest.skip("this Python's functools.cached_property takes no lock")
    assert _exit_code_of_child_forked_while_held(
        lock, lambda: os._exit(0 if use() else 1)) == 0


@pytest.mark.parametrize("kind", ["interleaved-bigendian", "deflate", "imagej-tzcyx"])
def test_threads_read_what_one_thread_reads(tmp_path, kind):
    path = tmp_path / f"{kind}.tif"
    _write(kind, path)
    with tifffile.TiffFile(path) as tif:
        ref = tif.series[0].asarray()
    ref = ref.reshape(-1, *ref.shape[-2:])
    with TiffStackND(path) as reader:
        reader.iter_axes = non_plane_axes(reader)
        picks = [random.Random(i).randrange(len(reader)) for i in range(400)]
        with ThreadPoolExecutor(8) as pool:
            frames = list(pool.map(reader.__getitem__, picks))
    for i, frame in zip(picks, frames, strict=True):
        np.testing.assert_array_equal(frame, ref[i])


def test_ome_plane_timestamps(tmp_path):
    path = tmp_path / "stamps.ome.tif"
    data = _data((3, 2, 20, 24))
    stamps = [0.0, 0.1, 0.5, 0.6, 1.0, 1.1]
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "TCYX", "Plane": {"DeltaT": stamps, "DeltaTUnit": ["ms"] * 6}})
    with TiffStackND(path) as reader:
        assert [reader[t].metadata["timestamp"] for t in range(3)] == pytest.approx(
            [0.0, 0.0005, 0.001])
        reader.default_coords["c"] = 1
        frame = reader[2]
        assert frame.metadata["timestamp"] == pytest.approx(0.0011)
        assert frame.metadata["coords"] == {"t": 2, "c": 1}
        np.testing.assert_array_equal(frame, data[2, 1])


def test_get_plane_ignores_plane_axes_and_uses_defaults(hyperstack):
    path, data = hyperstack
    with TiffStackND(path) as reader:
        reader.default_coords["z"] = 3
        np.testing.assert_array_equal(reader.get_plane(t=1, c=1, y=5, x=7), data[1, 3, 1])
        assert "t=3, z=4, c=2" in repr(reader)


def test_copy_false_on_decoded_storage_gives_fresh_arrays(tmp_path):
    path = tmp_path / "lzw.tif"
    data = _write("lzw", path)
    with TiffStackND(path, copy=False) as reader:
        assert reader.storage == "decoded"
        frame = reader[2]
        assert frame.flags.writeable
        np.testing.assert_array_equal(frame, data[2])
