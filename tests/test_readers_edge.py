"""TiffStackND on edge cases found in the session-7 bug bash, each checked against tifffile.

Shapes with length-1 axes, samples that the metadata names as channels, unparsable or absurd
metadata values, units that differ per axis, non-regular files, corrupt sizes, files changed
after open, and pims.open with a pathlib.Path.
"""

from __future__ import annotations

import math
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pims
import pytest
import tifffile

import pims_videoutils
from pims_videoutils import StackReadError
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND

RNG = np.random.default_rng(11)


def _data(shape, dtype="u2"):
    return RNG.integers(0, 4000, shape).astype(dtype)


def _all_planes(reader):
    """Every plane, stacked in C order of the non-plane axes."""
    return np.stack([reader._read_plane(i) for i in range(reader._layout.nplanes)])


# --- length-1 axes ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 5, 7, 1), (4, 5, 7, 1, 1), (1, 4, 5, 7), (5, 7, 1),
                                   (1, 1, 5, 7)])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_unknown_axes_of_length_one_are_dropped(tmp_path, shape, compression):
    """An array (T, Y, X, 1) or (1, T, Y, X) gives T frames, as tifffile's pages say."""
    path = tmp_path / "unit.tif"
    data = _data(shape)
    tifffile.imwrite(path, data, photometric="minisblack", compression=compression)
    with tifffile.TiffFile(path) as tif:
        pages = np.stack([page.asarray() for page in tif.pages])
        assert set(tif.series[0].axes) <= set("QYX")
    with TiffStackND(path) as reader:
        assert len(reader) == len(pages)
        assert reader.sizes == {**({"t": len(pages)} if len(pages) > 1 else {}),
                                "y": pages.shape[1], "x": pages.shape[2]}
        np.testing.assert_array_equal(_all_planes(reader), pages)
        np.testing.assert_array_equal(reader[-1], pages[-1])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_named_axis_of_length_one_after_the_image_is_kept(tmp_path, compression):
    """(T, Y, X, 1) with axes 'TYXC' (channels last): one channel, T frames."""
    path = tmp_path / "tyxc.tif"
    data = _data((4, 5, 7, 1))
    tifffile.imwrite(path, data, photometric="minisblack", compression=compression,
                     metadata={"axes": "TYXC"})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TYXC"
        expected = tif.series[0].asarray()
    with TiffStackND(path) as reader:
        assert reader.sizes == {"t": 4, "c": 1, "y": 5, "x": 7}
        assert len(reader) == 4
        for i, frame in enumerate(reader):
            np.testing.assert_array_equal(frame, expected[i, :, :, 0])


# --- samples named by the metadata ------------------------------------------------------------


@pytest.mark.parametrize("axes", ["TCYX", "TZYX"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_planar_samples_take_the_name_the_metadata_gives(tmp_path, axes, compression):
    """tifffile writes (T, 3, Y, X) as planar RGB; its metadata says C (or Z): so do we."""
    path = tmp_path / "tcyx.tif"
    data = _data((2, 3, 5, 7))
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate",
                     compression=compression, metadata={"axes": axes})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == axes
        expected = tif.series[0].asarray()
    name = axes[1].lower()
    with TiffStackND(path) as reader:
        assert reader.sizes == {"t": 2, name: 3, "y": 5, "x": 7}
        reader.iter_axes = ["t", name]
        reader.bundle_axes = "yx"
        for i, frame in enumerate(reader):
            np.testing.assert_array_equal(frame, expected[i // 3, i % 3])


def test_contiguous_samples_named_channels(tmp_path):
    path = tmp_path / "tyxc.tif"
    data = _data((2, 5, 7, 3), "u1")
    tifffile.imwrite(path, data, photometric="rgb", metadata={"axes": "TYXC"})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TYXC"
        expected = tif.series[0].asarray()
    with TiffStackND(path) as reader:
        assert reader.sizes == {"t": 2, "y": 5, "x": 7, "c": 3}
        reader.bundle_axes = "yx"  # (before iter_axes: see the xfail test below)
        reader.iter_axes = "c"
        reader.default_coords["t"] = 1
        np.testing.assert_array_equal(reader[2], expected[1, :, :, 2])


@pytest.mark.parametrize("images", [10, 14])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_imagej_image_count_contradicting_its_dimensions(tmp_path, images, compression):
    """An ImageJ header whose ``images`` disagrees with its channels x slices x frames, all of
    whose planes the file holds: tifffile reads the dimensions ("images" is not reliable), so
    does the reader (it refused the file as "truncated or corrupt")."""
    path = tmp_path / "count.tif"
    tifffile.imwrite(path, _data((12, 4, 5)), imagej=True, compression=compression)
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].description
    assert "images=12\n" in description and "channels=12\n" in description
    tifffile.tiffcomment(path, description.replace("images=12", f"images={images}").encode())
    with tifffile.TiffFile(path) as tif:
        expected = tif.series[0].asarray()
        assert tif.imagej_metadata["images"] == images
    with TiffStackND(path) as reader:
        assert reader.sizes == {"c": 12, "y": 4, "x": 5}
        np.testing.assert_array_equal(_all_planes(reader), expected)


# --- metadata values --------------------------------------------------------------------------


def _imagej_with(path, extra):
    data = _data((5, 6, 7))
    description = "ImageJ=1.53f\nimages=5\nframes=5\nunit=micron\n" + extra
    with tifffile.TiffWriter(path) as tif:
        tif.write(data, contiguous=True, description=description, metadata=None,
                  resolution=(2.0, 4.0), resolutionunit=1)
    return data


@pytest.mark.parametrize("value", ["foo", "0.5um", "-1", "0", "inf", "nan", "true"])
def test_bad_imagej_metadata_values_are_unknown(tmp_path, value):
    """A value that is not a positive number is unknown; it does not refuse the pixels."""
    path = tmp_path / "ij.tif"
    data = _imagej_with(path, f"spacing={value}\nfinterval={value}\n")
    with TiffStackND(path) as reader:
        np.testing.assert_array_equal(_all_planes(reader), data)
        assert reader.metadata["z_step"] is None
        assert reader.metadata["frame_interval"] is None
        assert reader.frame_rate is None
        assert reader.metadata["pixel_size_x"] == 1 / 2.0  # the rest is still read


@pytest.mark.parametrize("fps", ["0", "inf", "-4"])
def test_imagej_fps_that_is_not_positive_is_unknown(tmp_path, fps):
    path = tmp_path / "ij.tif"
    _imagej_with(path, f"fps={fps}\n")
    with TiffStackND(path) as reader:
        assert reader.metadata["frame_interval"] is None
        assert reader.frame_rate is None


def _ome_with(tmp_path, replacements):
    """An OME-TIFF (T=2, C=3) whose OME-XML has ``replacements`` applied."""
    path = tmp_path / "cells.ome.tif"
    data = _data((2, 3, 4, 6))
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "TCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "TimeIncrement": 2.0,
        "TimeIncrementUnit": "ms", "Plane": {"DeltaT": [0, 1, 2, 3, 4, 5]}})
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    for old, new in replacements.items():
        assert old in xml
        xml = xml.replace(old, new)
    tifffile.tiffcomment(path, xml.encode())
    return path, data


@pytest.mark.parametrize("replacements", [
    {'PhysicalSizeX="0.5"': 'PhysicalSizeX="abc"', 'TimeIncrement="2.0"': 'TimeIncrement="x"'},
    {'PhysicalSizeX="0.5"': 'PhysicalSizeX="0"', 'TimeIncrement="2.0"': 'TimeIncrement="INF"'},
    {'PhysicalSizeX="0.5"': 'PhysicalSizeX="-1"', 'TimeIncrementUnit="ms"':
        'TimeIncrementUnit="fortnight"'},
], ids=["not-numbers", "zero-and-infinite", "negative-and-unknown-unit"])
def test_bad_ome_values_are_unknown(tmp_path, replacements):
    path, data = _ome_with(tmp_path, replacements)
    with TiffStackND(path) as reader:
        np.testing.assert_array_equal(_all_planes(reader), data.reshape(6, 4, 6))
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["frame_interval"] is None
        assert reader.frame_rate is None


def test_bad_ome_plane_entries_are_skipped(tmp_path):
    """A Plane with a non-numeric DeltaT or TheT has no time stamp; the others keep theirs."""
    path, _ = _ome_with(tmp_path, {'TheT="1" DeltaT="3"': 'TheT="q" DeltaT="3"',
                                   'DeltaT="4"': 'DeltaT="zz"'})
    with TiffStackND(path) as reader:
        reader.iter_axes = "tc"
        stamps = [frame.metadata.get("timestamp") for frame in reader]
        assert 'TheT="q"' in reader.metadata["ome_xml"]  # the file's own XML
    assert stamps == [0.0, 1.0, 2.0, None, None, 5.0]


@pytest.mark.parametrize("case", ["tyx", "xct", "ctx"])
def test_bundled_planes_carry_their_time_stamps(tmp_path, case):
    """Bundling planes whose time stamps differ gives them as an array over the bundled
    non-plane axes (pims's bundling set ``ndarray.shape``, deprecated in numpy 2.5)."""
    path, data = _ome_with(tmp_path, {})  # TCYX (2, 3, 4, 6); plane k has DeltaT k (s)
    stamps = np.arange(6.0).reshape(2, 3)
    iter_axes, index, expected, expected_stamps = {
        "tyx": ("c", 2, data[:, 2], stamps[:, 2]),
        "xct": ("y", 1, data[:, :, 1].transpose(2, 1, 0), stamps.T),
        "ctx": ("y", 3, data[:, :, 3].transpose(1, 0, 2), stamps.T),
    }[case]
    with TiffStackND(path) as reader:
        reader.bundle_axes = case
        reader.iter_axes = iter_axes
        frame = reader[index]
    assert frame.metadata["axes"] == list(case)
    np.testing.assert_array_equal(frame, expected)
    np.testing.assert_array_equal(frame.metadata["timestamp"], expected_stamps)


def test_ome_units_per_axis_are_converted_to_the_x_unit(tmp_path):
    """PhysicalSizeY in nm and PhysicalSizeZ in nm are given in X's unit (µm)."""
    path, _ = _ome_with(tmp_path, {'PhysicalSizeY="0.5"': 'PhysicalSizeY="500" '
                                   'PhysicalSizeYUnit="nm" PhysicalSizeZ="200" '
                                   'PhysicalSizeZUnit="nm"',
                                   'TimeIncrementUnit="ms"': 'TimeIncrementUnit="min"'})
    with TiffStackND(path) as reader:
        meta = reader.metadata
    assert meta["unit"] == "µm"
    assert meta["pixel_size_y"] == 0.5
    assert meta["z_step"] == 0.2
    assert meta["frame_interval"] == 120.0


def test_ome_unit_that_cannot_be_converted_is_unknown(tmp_path):
    path, _ = _ome_with(tmp_path, {'PhysicalSizeY="0.5"': 'PhysicalSizeY="3" '
                                   'PhysicalSizeYUnit="thou"'})
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] == 0.5
        assert reader.metadata["pixel_size_y"] is None


# --- what the path names ----------------------------------------------------------------------


@pytest.mark.parametrize("opener", [TiffStackND, pims_videoutils.open, pims.open])
def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path, opener):
    """Opening a FIFO waits for a writer; ``open`` would try reader after reader, each waiting."""
    fifo = tmp_path / "stream.tif"
    os.mkfifo(fifo)
    outcome = []

    def attempt():
        try:
            opener(fifo)
        except StackReadError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    while thread.is_alive():  # a reader waits in open(): writers until every reader gave up
        with open(fifo, "wb"):
            pass
        thread.join(1)
        outcome.append("waited")
    assert len(outcome) == 1 and "not a regular file" in str(outcome[0])


@pytest.mark.parametrize("path", [b"stack.tif", 42])
def test_path_that_is_not_a_string_is_a_type_error(path):
    with pytest.raises(TypeError):
        TiffStackND(path)


def test_nul_in_path_is_a_read_error(tmp_path):
    with pytest.raises(StackReadError):
        TiffStackND(f"{tmp_path}/a\0b.tif")


@pytest.mark.parametrize("option", [{"series": 0.5}, {"series": "0"}, {"level": 1.5}])
def test_series_and_level_must_be_integers(tmp_path, option):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _data((5, 6, 7)))
    [(name, value)] = option.items()  # the message named neither the option nor its value
    with pytest.raises(TypeError, match=f"{name} must be an integer, not {type(value).__name__}"):
        TiffStackND(path, **option)
    if name == "series":  # TiffSequenceND passes it on (for OME files: a StackReadError)
        for number in (1, 2):
            tifffile.imwrite(tmp_path / f"run{number}.ome.tif", _data((3, 6, 7)), ome=True,
                             metadata={"axes": "TYX"})
        for files in ([path], [tmp_path / "run1.ome.tif", tmp_path / "run2.ome.tif"]):
            with pytest.raises(TypeError, match="series must be an integer, not "):
                TiffSequenceND(files, **option)
            with pytest.raises(TypeError, match="max_open_files must be an integer, not str"):
                TiffSequenceND(files, max_open_files="3")
    with TiffStackND(path, series=np.int64(0), level=np.uint8(0)) as reader:
        assert len(reader) == 5


def test_pims_open_takes_a_path_object(tmp_path):
    path = tmp_path / "stack.tif"
    data = _data((5, 6, 7))
    tifffile.imwrite(path, data)
    with pims.open(pathlib.Path(path)) as reader:
        assert isinstance(reader, TiffStackND)
        np.testing.assert_array_equal(reader[2], data[2])


# --- corrupt sizes ----------------------------------------------------------------------------


def _patch_tag(path, name, value):
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[name]
        fmt = tif.byteorder + {3: "H", 4: "I"}[int(tag.dtype)]
        offset = tag.valueoffset
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


@pytest.mark.parametrize(("kind", "tag"), [
    ("plain", "ImageWidth"), ("deflate", "ImageLength"), ("shaped", "ImageWidth"),
    ("deflate", "RowsPerStrip"),
])
def test_sizes_of_zero_raise_read_errors(tmp_path, kind, tag):
    """tifffile divides by these (ZeroDivisionError); the reader says the file is bad."""
    path = tmp_path / f"{kind}.tif"
    options = {"plain": {"metadata": None}, "deflate": {"compression": "zlib"}}.get(kind, {})
    tifffile.imwrite(path, _data((3, 32, 40)), photometric="minisblack", **options)
    _patch_tag(path, tag, 0)
    with pytest.raises(StackReadError):
        with TiffStackND(path) as reader:
            reader[0]


def test_out_of_memory_while_decoding_is_a_read_error(tmp_path, monkeypatch):
    """A page claiming absurd sizes makes numpy fail to allocate: a StackReadError."""
    path = tmp_path / "deflate.tif"
    tifffile.imwrite(path, _data((5, 32, 40)), compression="zlib")

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 384. GiB")

    with TiffStackND(path) as reader:
        monkeypatch.setattr(tifffile.TiffPage, "asarray", no_memory)
        monkeypatch.setattr(tifffile.TiffFrame, "asarray", no_memory)
        with pytest.raises(StackReadError, match="MemoryError: Unable to allocate 384") as info:
            reader[1]
    assert info.value.__context__ is None  # (its traceback would keep tifffile's buffers)


def test_compressed_file_rewritten_after_open(tmp_path):
    """Pages that now decode to another shape raise StackReadError, not numpy's ValueError."""
    path = tmp_path / "deflate.tif"
    data = _data((6, 8, 10))
    tifffile.imwrite(path, data, compression="zlib")
    with TiffStackND(path) as reader:
        np.testing.assert_array_equal(reader[0], data[0])
        tifffile.imwrite(path, _data((2, 3, 4), "u1"), compression="zlib")
        for i in range(len(reader)):
            with pytest.raises(StackReadError):
                reader[i]


def test_page_of_other_planar_configuration_is_not_scrambled(tmp_path):
    """One page of a planar RGB stack stores its samples interleaved (same size, own layout).

    Its decoded (y, x, samples) array was moved as if it were (samples, y, x): pixels
    scrambled without an error. The other pages still read as tifffile decodes them.
    """
    path = tmp_path / "planar.tif"
    data = RNG.integers(0, 255, (4, 3, 20, 24)).astype("u1")
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate")
    with tifffile.TiffFile(path) as tif:
        position = tif.pages[2].tags["PlanarConfiguration"].offset + 8
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(struct.pack("<H", 1))
    with TiffStackND(path) as reader:
        assert reader.sizes["s"] == 3
        for i in (0, 1, 3):
            np.testing.assert_array_equal(reader[i], np.moveaxis(data[i], 0, -1))
        with pytest.raises(StackReadError, match=r"page 2 decodes to .*inconsistent pages"):
            reader[2]


def test_copy_of_a_file_replaced_by_rename_keeps_reading_the_old_one(tmp_path):
    path = tmp_path / "stack.tif"
    data = _data((5, 8, 10))
    tifffile.imwrite(path, data, compression="zlib")
    with TiffStackND(path) as reader:
        tifffile.imwrite(tmp_path / "new.tif", data[::-1], compression="zlib")
        shutil.move(tmp_path / "new.tif", path)
        np.testing.assert_array_equal(_all_planes(reader), data)


def test_zero_copy_views_outlive_close(tmp_path):
    """close() must not unmap what copy=False views point into (a segfault: run in a child)."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _data((5, 8, 9)), imagej=True)
    code = textwrap.dedent(f"""
        import gc, numpy as np, tifffile
        from pims_videoutils import TiffStackND
        reader = TiffStackND({str(path)!r}, copy=False)
        views = [reader[i] for i in range(len(reader))]
        reader.close()
        gc.collect()
        print(np.array_equal(np.stack(views), tifffile.imread({str(path)!r})))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


def test_closing_without_views_closes_the_mapping_at_once(tmp_path):
    """No view alive: close() leaves no descriptor of the file open (the mapping's included)."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _data((5, 8, 9)), imagej=True)

    reader = TiffStackND(path, copy=False)
    np.asarray(reader[2]).sum()
    assert _descriptors_of(path) >= 1
    reader.close()
    assert _descriptors_of(path) == 0


def _descriptors_of(path):
    """Number of this process's open descriptors of the file (its mappings' included)."""
    return sum(os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(path)
               for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}"))


@pytest.mark.parametrize("copy", [True, False])
def test_failing_init_closes_the_file(tmp_path, monkeypatch, copy):
    """An error after the file is opened (here: in setting up the axes) leaves no descriptor
    of it open, the mapping of ``copy=False`` included."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _data((5, 8, 9)), imagej=True)

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(TiffStackND, "_init_planes", fail)
    with pytest.raises(RuntimeError, match="boom"):
        TiffStackND(path, copy=copy)
    assert _descriptors_of(path) == 0


# --- pims bundling after iter_axes changes ----------------------------------------------------


def test_iterating_rgb_samples_gives_one_sample_per_frame(tmp_path):
    """``iter_axes = 's'`` on an RGB file: pims's setter leaves bundle_axes 'yx'."""
    path = tmp_path / "rgb.tif"
    data = _data((2, 5, 7, 3), "u1")
    tifffile.imwrite(path, data, photometric="rgb")
    with TiffStackND(path) as reader:
        reader.iter_axes = "s"
        assert reader.bundle_axes == ["y", "x"]
        np.testing.assert_array_equal(reader[1], data[0, :, :, 1])


def test_bundle_follows_iter_axes_taking_a_bundled_axis(tmp_path):
    """pims's iter_axes setter drops 'y' from bundle_axes: frames are then rows along x."""
    path = tmp_path / "stack.tif"
    data = _data((3, 4, 5, 6))
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    with TiffStackND(path) as reader:
        reader.iter_axes = "y"
        assert reader.bundle_axes == ["x"]
        reader.iter_axes = "z"
        reader.default_coords["y"] = 2
        frame = reader[3]
        assert frame.metadata["axes"] == ["x"]
        np.testing.assert_array_equal(frame, data[0, 3, 2])
        assert math.prod(frame.shape) == 6


@pytest.mark.parametrize(("unit", "per_unit"), [("CENTIMETER", 1e4), ("MILLIMETER", 1e3),
                                                ("MICROMETER", 1.0)])
def test_pixel_size_from_metric_resolution_units(tmp_path, unit, per_unit):
    """tifffile writes resolutions per mm and per µm too (ResolutionUnit 4 and 5)."""
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, _data((5, 6, 7)), resolution=(per_unit / 0.25, per_unit / 0.5),
                     resolutionunit=unit)
    with TiffStackND(path) as reader:
        assert reader.metadata["unit"] == "µm"
        assert reader.metadata["pixel_size_x"] == pytest.approx(0.25)
        assert reader.metadata["pixel_size_y"] == pytest.approx(0.5)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_pixel_size_of_each_series_from_its_own_pages(tmp_path, compression):
    """Series 1 of a file has the pixel size its own pages' resolution tags give (it had
    series 0's, read from the file's first page)."""
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tif:
        for size, shape, axes in ((0.5, (3, 8, 9), "TYX"), (0.25, (2, 16, 18), "ZYX")):
            tif.write(_data(shape), resolution=(1e4 / size, 1e4 / (2 * size)),
                      resolutionunit="CENTIMETER", metadata={"axes": axes},
                      photometric="minisblack", compression=compression)
    with tifffile.TiffFile(path) as tif:
        expected = [tuple(1e4 / r for r in s.keyframe.resolution) for s in tif.series]
        assert all(s.keyframe.resolutionunit == 3 for s in tif.series)
    assert expected == [(0.5, 1.0), (0.25, 0.5)]
    for series, (size_x, size_y) in enumerate(expected):
        with TiffStackND(path, series=series) as reader:
            assert reader.metadata["pixel_size_x"] == pytest.approx(size_x)
            assert reader.metadata["pixel_size_y"] == pytest.approx(size_y)
            assert reader.metadata["unit"] == "µm"


def _with_resolution_rationals(path, numerator, denominator):
    """Set both resolution tags of every page of ``path`` to ``numerator / denominator``."""
    with tifffile.TiffFile(path) as tif:
        places = [page.tags[code].valueoffset for page in tif.pages for code in (282, 283)]
    raw = bytearray(path.read_bytes())
    for place in places:
        struct.pack_into("<II", raw, place, numerator, denominator)
    path.write_bytes(raw)


@pytest.mark.parametrize(("numerator", "denominator"), [(5, 0), (0, 0), (1, 0)])
@pytest.mark.parametrize("imagej", [False, True], ids=["plain", "imagej"])
def test_resolution_with_a_zero_denominator_is_unknown(tmp_path, numerator, denominator,
                                                       imagej):
    """tifffile reads a resolution n/0 as n pixels per unit (``page.resolution``), which gave a
    pixel size (1/0 in an ImageJ file: 1 micron) where the file gives none."""
    path = tmp_path / "res.tif"
    data = _data((5, 6, 7))
    if imagej:
        tifffile.imwrite(path, data, imagej=True, resolution=(2.0, 2.0),
                         metadata={"unit": "um"})
    else:
        tifffile.imwrite(path, data, resolution=(4e4, 4e4), resolutionunit="CENTIMETER")
    _with_resolution_rationals(path, numerator, denominator)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].tags["XResolution"].value == (numerator, denominator)
    with TiffStackND(path) as reader:
        np.testing.assert_array_equal(_all_planes(reader), data)
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["pixel_size_y"] is None


def test_resolution_in_inches_is_not_a_pixel_size(tmp_path):
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, _data((5, 6, 7)), resolution=(72, 72), resolutionunit="INCH")
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["unit"] is None


@pytest.mark.parametrize("per_cm", [72 / 2.54, 28.34, 28.35, 96 / 2.54, 37.8])
def test_print_resolution_in_centimetres_is_not_a_pixel_size(tmp_path, per_cm):
    """72 or 96 dpi stored per centimetre (28.35 or 37.8 pixels/cm, e.g. by Pillow and image
    editors) is a print default as it is per inch, not pixels of 353 or 265 µm."""
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, _data((5, 6, 7)), resolution=(per_cm, per_cm),
                     resolutionunit="CENTIMETER")
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["pixel_size_y"] is None
        assert reader.metadata["unit"] is None


@pytest.mark.parametrize("dpi", [72, 96])
@pytest.mark.parametrize(("unit", "metres"), [("MILLIMETER", 1e-3), ("MICROMETER", 1e-6)])
def test_print_resolution_in_mm_or_um_is_not_a_pixel_size(tmp_path, dpi, unit, metres):
    """72 or 96 dpi stored per mm or per µm (ResolutionUnit 4, 5) is a print default as it is
    per centimetre."""
    path = tmp_path / "res.tif"
    per_unit = dpi / 0.0254 * metres
    tifffile.imwrite(path, _data((5, 6, 7)), resolution=(per_unit, per_unit),
                     resolutionunit=unit)
    with tifffile.TiffFile(path) as tif:  # the file says dpi pixels per inch
        assert tif.pages[0].resolution[0] * 0.0254 / metres == pytest.approx(dpi, abs=0.05)
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["pixel_size_y"] is None
        assert reader.metadata["unit"] is None


@pytest.mark.parametrize("dpi", [72, 71.98, 72.01, 96])
@pytest.mark.parametrize(("unit", "metres"), [("micron", 1e-6), ("\\u00B5m", 1e-6),
                                              ("mm", 1e-3), ("cm", 1e-2), ("inch", 0.0254),
                                              ("nm", 1e-9)])
def test_imagej_print_resolution_in_its_unit_is_not_a_pixel_size(tmp_path, dpi, unit, metres):
    """ImageJ counts pixels per its own ``unit``: 72 or 96 dpi converted to it (as Bio-Formats
    and ImageJ do: 0.002834 pixels per micron) is a print default, not 353 or 265 µm pixels.
    The file's unit and z spacing are still read."""
    path = tmp_path / "res.tif"
    per_unit = dpi / 0.0254 * metres
    tifffile.imwrite(path, _data((2, 6, 7)), imagej=True, resolution=(per_unit, per_unit),
                     metadata={"unit": unit, "spacing": 2.5, "axes": "ZYX"})
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["pixel_size_y"] is None
        assert reader.metadata["z_step"] == 2.5
        assert reader.metadata["unit"] == ("µm" if metres == 1e-6 else unit)


def test_imagej_unit_um_over_centimetre_tags_as_imagej_reads_it(tmp_path):
    """Micro-Manager writes resolution tags in pixels per cm (ResolutionUnit 3) and ImageJ's
    ``unit=um``: ImageJ converts them to µm (its FileOpener: cm tags and ``um``: x 10000), and
    so must the reader: 0.5 µm pixels, not 5e-05 µm."""
    path = tmp_path / "mm.tif"
    per_cm = 1e4 / 0.5
    tifffile.imwrite(path, _data((2, 6, 7)), imagej=True, resolution=(per_cm, per_cm / 2),
                     resolutionunit="CENTIMETER", metadata={"unit": "um"})
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.resolutionunit == 3 and tif.imagej_metadata["unit"] == "um"
        size_x, size_y = (1e4 / r for r in page.resolution)  # µm: the tags count per cm
    with TiffStackND(path) as reader:
        assert reader.metadata["unit"] == "µm"
        assert reader.metadata["pixel_size_x"] == pytest.approx(size_x) == 0.5
        assert reader.metadata["pixel_size_y"] == pytest.approx(size_y) == 1.0


@pytest.mark.parametrize(("unit", "size"), [("micron", 0.1), ("micron", 352.0), ("mm", 0.25),
                                            ("inch", 1 / 300)])
def test_imagej_calibration_near_but_not_at_print_resolution_is_read(tmp_path, unit, size):
    """A pixel size that is not 72 or 96 dpi in the file's unit is the file's calibration."""
    path = tmp_path / "res.tif"
    tifffile.imwrite(path, _data((2, 6, 7)), imagej=True, resolution=(1 / size, 1 / size),
                     metadata={"unit": unit})
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] == pytest.approx(size, rel=1e-6)
        assert reader.metadata["pixel_size_y"] == pytest.approx(size, rel=1e-6)


def test_imagej_print_resolution_only_along_x_keeps_both_sizes(tmp_path):
    """Only both axes at a print resolution make it a default (one alone is a calibration)."""
    path = tmp_path / "res.tif"
    per_micron = 72 / 25400
    tifffile.imwrite(path, _data((2, 6, 7)), imagej=True, resolution=(per_micron, 2.0),
                     metadata={"unit": "micron"})
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] == pytest.approx(1 / per_micron, rel=1e-6)
        assert reader.metadata["pixel_size_y"] == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize(("axes", "names"), [("STYX", "ctyx"), ("TSYX", "tcyx"),
                                             ("SCYX", "acyx")])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_samples_axis_outside_the_plane_is_not_s(tmp_path, axes, names, compression):
    """``s`` is a pixel's samples (to_video drops the last of 2 or 4 as alpha): separate
    planes that the metadata calls samples are channels, ``c`` (else a spare letter)."""
    path = tmp_path / "samples.tif"
    data = _data((2, 3, 5, 7))
    tifffile.imwrite(path, data, metadata={"axes": axes}, photometric="minisblack",
                     compression=compression)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == axes
        expected = tif.series[0].asarray()
    with TiffStackND(path) as reader:
        assert "".join(reader.sizes) == names
        assert list(reader.sizes.values()) == list(data.shape)
        np.testing.assert_array_equal(_all_planes(reader), expected.reshape(6, 5, 7))


@pytest.mark.parametrize("options", [{"tile": (2, 16, 16)}, {"tile": (2, 16, 16),
                                                            "compression": "zlib"}, {}])
@pytest.mark.parametrize("shape", [(4, 32, 32), (2, 4, 32, 32)])
def test_volumetric_pages_are_refused_saying_so(tmp_path, options, shape):
    """Pages holding a volume (ImageDepth > 1, tifffile's ``volumetric=True``) are not read:
    the error says what the file has and that it is not supported, naming the file."""
    path = tmp_path / "volume.tif"
    tifffile.imwrite(path, _data(shape), volumetric=True, photometric="minisblack", **options)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].imagedepth == 4
    with pytest.raises(StackReadError, match=r"volume\.tif: volumetric pages \(ImageDepth 4, "
                       r".*\) are not supported"):
        TiffStackND(path)


@pytest.mark.parametrize("axes", ["CCYX", "YZYX"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_axis_code_repeated_by_the_metadata(tmp_path, axes, compression):
    """tifffile writes and reads axes 'CCYX' as given; the reader names the outer C otherwise
    (it failed with pims's "axis 'c' already exists" ValueError, leaving the file open)."""
    path = tmp_path / "repeated.tif"
    tifffile.imwrite(path, _data((4, 3, 5, 6)), photometric="minisblack",
                     compression=compression, metadata={"axes": axes})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == axes
        expected = tif.series[0].asarray()
    with TiffStackND(path) as reader:
        assert list(reader.sizes.values()) == [4, 3, 5, 6]
        assert list(reader.sizes)[1:] == [axes[1].lower(), "y", "x"]
        np.testing.assert_array_equal(_all_planes(reader), expected.reshape(12, 5, 6))


def _imagej_calibrated(path, resolutionunit=None, **metadata):
    """An ImageJ TYX file with resolution (2, 4) pixels per unit and ``metadata``."""
    tifffile.imwrite(path, _data((3, 5, 6)), imagej=True, resolution=(2.0, 4.0),
                     resolutionunit=resolutionunit, metadata={"axes": "TYX", **metadata})
    with tifffile.TiffFile(path) as tif:
        return tif.imagej_metadata


@pytest.mark.parametrize(("tunit", "seconds"), [("sec", 1.0), ("min", 60.0), ("ms", 1e-3),
                                                ("hour", 3600.0), ("fortnight", None)])
def test_imagej_frame_interval_in_its_time_unit(tmp_path, tunit, seconds):
    """ImageJ writes ``finterval`` in ``tunit`` (e.g. 5 min); frame_interval is in seconds."""
    ij = _imagej_calibrated(tmp_path / "t.tif", finterval=5, tunit=tunit)
    assert (ij["finterval"], ij["tunit"]) == (5, tunit)
    with TiffStackND(tmp_path / "t.tif") as reader:
        if seconds is None:  # a unit that cannot be converted: unknown
            assert reader.metadata["frame_interval"] is None
        else:
            assert reader.metadata["frame_interval"] == pytest.approx(5 * seconds)
            assert reader.frame_rate == pytest.approx(1 / (5 * seconds))


def test_imagej_y_and_z_units_are_converted_to_the_x_unit(tmp_path):
    """ImageJ writes ``yunit`` / ``zunit`` when they differ from ``unit``."""
    ij = _imagej_calibrated(tmp_path / "u.tif", unit="um", yunit="nm", zunit="mm", spacing=0.5)
    assert (ij["unit"], ij["yunit"], ij["zunit"]) == ("um", "nm", "mm")
    with TiffStackND(tmp_path / "u.tif") as reader:
        meta = reader.metadata
        assert meta["unit"] == "µm"
        assert meta["pixel_size_x"] == pytest.approx(1 / 2.0)
        assert meta["pixel_size_y"] == pytest.approx(1 / 4.0 / 1000)  # 0.25 nm
        assert meta["z_step"] == pytest.approx(500.0)  # 0.5 mm


@pytest.mark.parametrize(("unit", "resolutionunit"), [("cm", "CENTIMETER"), ("inch", "INCH")])
def test_imagej_resolution_is_per_its_unit_whatever_the_resolution_unit(tmp_path, unit,
                                                                         resolutionunit):
    """ImageJ calibrated in cm (or inch) writes ResolutionUnit centimetre (inch), with the
    resolution in pixels per cm: the pixel size is 1/resolution in cm, as ImageJ reads it."""
    _imagej_calibrated(tmp_path / "cm.tif", resolutionunit, unit=unit)
    with tifffile.TiffFile(tmp_path / "cm.tif") as tif:
        assert tif.pages[0].resolutionunit == getattr(tifffile.RESUNIT, resolutionunit)
    with TiffStackND(tmp_path / "cm.tif") as reader:
        assert reader.metadata["unit"] == unit
        assert reader.metadata["pixel_size_x"] == pytest.approx(1 / 2.0)
        assert reader.metadata["pixel_size_y"] == pytest.approx(1 / 4.0)


def test_ome_metadata_of_the_series_not_of_an_image_without_pixels(tmp_path):
    """An OME image with MetadataOnly (an overview, a label) has no tifffile series: series 0
    is the next image, whose pixel size, interval, channel names and times are its own."""
    path, data = _ome_with(tmp_path, {})
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    start = xml.index("<Image ")
    overview = (
        '<Image ID="Image:9" Name="overview"><Pixels ID="Pixels:9" DimensionOrder="XYCZT" '
        'Type="uint8" SizeX="8" SizeY="8" SizeC="2" SizeZ="1" SizeT="1" PhysicalSizeX="7.0" '
        'PhysicalSizeY="7.0" TimeIncrement="60"><Channel ID="Channel:9:0" Name="X"/>'
        '<Channel ID="Channel:9:1" Name="Y"/><MetadataOnly/></Pixels></Image>')
    tifffile.tiffcomment(path, (xml[:start] + overview + xml[start:]).encode())
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) == 1 and tif.series[0].shape == data.shape
        np.testing.assert_array_equal(tif.series[0].asarray(), data)
    with TiffStackND(path) as reader:
        meta = reader.metadata
        assert (meta["pixel_size_x"], meta["pixel_size_y"]) == (0.5, 0.5)
        assert meta["frame_interval"] == pytest.approx(2e-3)  # 2.0 ms
        assert meta["channel_names"] is None  # the image's channels have no names
        assert [frame.metadata["timestamp"] for frame in reader] == [0.0, 3.0]


def test_negative_index_out_of_range_names_the_index_given(tmp_path):
    """reader[-4] of 3 frames said "frame -1 out of range 0..2": the index after adding 3."""
    path = tmp_path / "three.tif"
    tifffile.imwrite(path, _data((3, 4, 5)), photometric="minisblack")
    with TiffStackND(path) as reader:
        assert len(reader) == 3
        np.testing.assert_array_equal(reader[-3], tifffile.imread(path, key=0))
        with pytest.raises(IndexError, match=r"^frame -4 out of range -3\.\.2$"):
            reader[-4]


@pytest.mark.parametrize("value", [1.7, "1", None])
def test_get_plane_refuses_coordinates_that_are_not_integers(tmp_path, value):
    """get_plane(t=1.7) gave plane 1 (int() truncated it), where numpy refuses such indices."""
    path = tmp_path / "three.tif"
    tifffile.imwrite(path, _data((3, 4, 5)), photometric="minisblack")
    with TiffStackND(path) as reader:
        np.testing.assert_array_equal(reader.get_plane(t=np.int64(2)),
                                      tifffile.imread(path, key=2))
        with pytest.raises(TypeError, match=r"t=.* is not an integer"):
            reader.get_plane(t=value)


@pytest.mark.parametrize("opener", [TiffStackND, TiffSequenceND])
def test_get_plane_refuses_an_axis_the_reader_lacks(tmp_path, opener):
    """get_plane(T=1) (a typo of t) gave the plane at t=0, silently."""
    data = _data((3, 2, 4, 5))
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    with opener(path) as reader:
        np.testing.assert_array_equal(reader.get_plane(t=2, z=1, y=3), data[2, 1])
        for typo in ({"T": 1}, {"q": 0}, {"t": 1, "zz": 1}):
            message = r"no axis '(T|q|zz)' \(the axes are t, z, y, x\)"
            with pytest.raises(ValueError, match=message):
                reader.get_plane(**typo)


def test_imagej_unit_without_resolution_tags_has_no_pixel_size(tmp_path):
    """Without XResolution/YResolution tifffile says (1, 1) pixels per inch: no pixel size."""
    path = tmp_path / "nores.tif"
    _imagej_calibrated(path, unit="um")
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            for code in (282, 283, 296):  # renamed to private tags
                struct.pack_into(tif.byteorder + "H", raw, page.tags[code].offset, 65000 + code)
    path.write_bytes(bytes(raw))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and 282 not in tif.pages[0].tags
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["unit"] == "µm"
