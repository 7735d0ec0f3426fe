"""The real third-party files of ../shared/data/real through every entry point.

Skipped when that folder is absent.
"""

from __future__ import annotations

import json
import unittest

import av
import numpy as np
import pytest
import tifffile
from conftest import REAL_DATA
from pims.tests.test_common import _image_series

import pims_videoutils
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND

# file: (sizes as documented in PROVENANCE.md, in pims names, and the expected storage)
REAL_FILES = {
    "pims/stuck.tif": ({"t": 5, "y": 512, "x": 512}, "mapped"),
    "pims/tiff_stack.tif": ({"z": 5, "y": 512, "x": 512}, "mapped"),
    "imagej/IXMtest_A02_s9.tif": ({"c": 3, "y": 395, "x": 695}, "mapped"),
    "imagej/Bead_Image1_crop.tif": ({"z": 41, "y": 150, "x": 150}, "mapped"),
    "imagej/hela-cells.tif": ({"y": 512, "x": 672, "s": 3}, "mapped"),
    "imagej/gray8-3x2-stack.tif": ({"z": 2, "y": 2, "x": 3}, "mapped"),
    "tifffile/cancer_cell_migration_crop.tif": ({"t": 48, "y": 130, "x": 130}, "mapped"),
    "ome-bioformats/CZT_peaks.ome.tif": ({"t": 4, "z": 4, "y": 48, "x": 56}, "mapped"),
    "ndtiff/ndtiff3.2_multichannel/NDTiff3.2_multichannel_NDTiffStack.tif": (
        {"t": 8, "c": 2, "z": 16, "y": 64, "x": 64}, "mapped"),
    "compressed/nuclei_deflate.tif": ({"t": 60, "y": 256, "x": 256}, "decoded"),
    "pillow/hopper_bigtiff.tif": ({"y": 128, "x": 128, "s": 3}, "mapped"),
    "pillow/tiff_tiled_planar_lzw.tiff": ({"y": 374, "x": 278, "s": 3}, "decoded"),
    "pillow/16bit.MM.deflate.tif": ({"y": 64, "x": 64}, "decoded"),
}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_equals_tifffile(real_data, name):
    path = real_data / name
    sizes, storage = REAL_FILES[name]
    with TiffStackND(path) as reader, tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        ref = series.asarray()
        assert reader.sizes == sizes
        assert reader.storage == storage
        assert reader.metadata["kind"] == series.kind
        if series.axes.endswith("SYX"):
            ref = np.moveaxis(ref, -3, -1)
        axes = [a for a in reader.axes if a not in "yxs"]
        ref = ref.reshape(*(sizes[a] for a in axes), *ref.shape[len(ref.shape) - 2 - (
            "s" in sizes):])
        for index in np.ndindex(*(sizes[a] for a in axes)):
            plane = reader.get_plane(**dict(zip(axes, index, strict=True)))
            assert plane.dtype.isnative
            np.testing.assert_array_equal(plane, ref[index])


def test_real_metadata(real_data):
    with TiffStackND(real_data / "imagej/Bead_Image1_crop.tif") as reader:
        meta = reader.metadata
        assert meta["z_step"] == 0.125
        assert meta["unit"] == "µm"
        assert meta["software"] == "ImageJ 1.53f"
        assert meta["colormap"].shape == (3, 256)
    with TiffStackND(real_data / "ome-bioformats/CZT_peaks.ome.tif") as reader:
        assert reader.metadata["software"] == "OME Bio-Formats"
        assert reader.metadata["ome_xml"].lstrip().startswith("<")
        assert reader.metadata["pixel_size_x"] is not None


def test_real_print_resolution_in_centimetres(real_data):
    """Pillow's test file stores 72 dpi as 28.34 pixels/cm: no pixel size of 353 µm."""
    path = real_data / "pillow/tiff_tiled_planar_lzw.tiff"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.resolutionunit == 3
        assert page.resolution[0] * 2.54 == pytest.approx(72, abs=0.05)
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["unit"] is None


def test_real_imagej_print_resolution_in_microns(real_data):
    """ImageJ 1.44f stores Bio-Formats' 72 dpi as 2834/1000000 pixels per micron (its unit):
    a print default, not pixels of 352.9 µm; the unit stays the file's."""
    path = real_data / "imagej/gray8-3x2-stack.tif"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert tif.imagej_metadata["unit"] == "micron"
        assert page.resolutionunit == 1  # none: pixels per ImageJ's unit
        numerator, denominator = page.tags["XResolution"].value
        assert numerator / denominator * 25400 == pytest.approx(72, abs=0.05)
        assert page.tags["YResolution"].value == (numerator, denominator)
    with TiffStackND(path) as reader:
        assert reader.metadata["pixel_size_x"] is None
        assert reader.metadata["pixel_size_y"] is None
        assert reader.metadata["unit"] == "µm"


def _stuck_case(name):
    class Case(_image_series, unittest.TestCase):
        def setUp(self):
            if not REAL_DATA.is_dir():
                self.skipTest("real data absent")
            self.v = TiffStackND(REAL_DATA / "pims" / name)
            self.frame0 = np.load(REAL_DATA / "pims/stuck_frame0.npy")
            self.frame1 = np.load(REAL_DATA / "pims/stuck_frame1.npy")
            self.expected_shape = (512, 512)
            self.expected_len = 5

        def tearDown(self):
            self.v.close()

    Case.__name__ = Case.__qualname__ = f"TestPimsMixin_{name.replace('.', '_')}"
    return Case


TestPimsMixinStuck = _stuck_case("stuck.tif")
TestPimsMixinTiffStack = _stuck_case("tiff_stack.tif")


def test_ndtiff_plane_times_are_micromanagers(real_data):
    """Every plane's ``timestamp`` is the ElapsedTime-ms that tifffile reads from its page."""
    path = real_data / "ndtiff/ndtiff3.2_multichannel/NDTiff3.2_multichannel_NDTiffStack.tif"
    expected, channels = {}, []
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            md = page.tags[51123].value
            if md["Axes"]["channel"] not in channels:  # channels in order of acquisition
                channels.append(md["Axes"]["channel"])
            key = md["Axes"]["time"], channels.index(md["Axes"]["channel"]), md["Axes"]["z"]
            expected[key] = md["ElapsedTime-ms"] / 1000, page.asarray()
    assert len(expected) == 8 * 2 * 16
    assert len({seconds for seconds, _ in expected.values()}) > 100
    with TiffStackND(path) as reader:
        for (t, c, z), (seconds, pixels) in expected.items():
            plane = reader.get_plane(t=t, c=c, z=z)
            np.testing.assert_array_equal(plane, pixels)  # the right page
            assert plane.metadata["timestamp"] == pytest.approx(seconds)
        assert reader[3].metadata["timestamp"] == pytest.approx(expected[3, 0, 0][0])


def test_ndtiff_channel_names_are_the_index_channels(real_data):
    """NDTiff names its channels in each image's ``Axes``: the ``c`` axis's names, in its order."""
    folder = real_data / "ndtiff/ndtiff3.2_multichannel"
    path = folder / "NDTiff3.2_multichannel_NDTiffStack.tif"
    names, first_times = [], {}
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:  # c follows the order in which channels first appear
            image = page.tags[51123].value
            axes = image["Axes"]
            if axes["channel"] not in names:
                names.append(axes["channel"])
            if axes["time"] == axes["z"] == 0:  # (the channels' pixels are the same)
                first_times[axes["channel"]] = image["ElapsedTime-ms"] / 1000
    assert len(names) == 2 and len(set(first_times.values())) == 2
    with TiffStackND(path) as reader, TiffSequenceND(folder) as dataset:
        for opened in reader, dataset:
            assert opened.metadata["channel_names"] == names
            for c, name in enumerate(names):
                plane = opened.get_plane(t=0, c=c, z=0)
                assert plane.metadata["timestamp"] == pytest.approx(first_times[name])


def test_ndtiff_z_step_is_the_spacing_of_the_intended_z_positions(real_data):
    """This NDTiff summary states no z step nor interval; each image's JSON states its
    intended z position (0, 0.4... 6 µm): the z step is their spacing, the interval unknown."""
    folder = real_data / "ndtiff/ndtiff3.2_multichannel"
    path = folder / "NDTiff3.2_multichannel_NDTiffStack.tif"
    intended = {}
    with tifffile.TiffFile(path) as tif:
        summary = tif.micromanager_metadata["Summary"]
        for page in tif.pages:
            image = page.tags[51123].value
            axes = image["Axes"]
            intended[axes["channel"], axes["time"], axes["z"]] = image["ZPosition_um_Intended"]
    assert not {"z-step_um", "Interval_ms"} & set(summary)
    steps = [intended[c, t, z + 1] - intended[c, t, z] for c, t, z in intended if z < 15]
    assert len(steps) == 2 * 8 * 15
    assert steps == pytest.approx([0.4] * len(steps))
    for opened in TiffStackND(path), TiffSequenceND(folder):
        with opened as reader:
            assert reader.metadata["z_step"] == pytest.approx(steps[0])
            assert reader.metadata["unit"] == "µm"
            assert reader.metadata["frame_interval"] is None


def test_ndtiff_index_is_read_once_per_open(real_data, ndtiff_index_reads):
    """tifffile reads NDTiff.index for its series; the channel names and the planes' times
    come from one more reading of it, not one per use."""
    path = real_data / "ndtiff/ndtiff3.2_multichannel/NDTiff3.2_multichannel_NDTiffStack.tif"
    with TiffStackND(path) as reader:
        assert len(ndtiff_index_reads) == 1
        assert reader.metadata["channel_names"] == ["DAPI", "FITC"]
        assert reader.get_plane(t=7, c=1, z=15).metadata["timestamp"] > 0


REAL_DATASETS = {  # folder: the files, in their order along t
    "sequences/banana": "banana*.tif",
    "sequences/stack_list": "Stack-*.tif",
}


def _tifffile_planes(path):
    """Every plane of ``path``'s first series as tifffile reads it, samples last."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        ref = series.asarray()
    return np.moveaxis(ref, -3, -1) if series.axes.endswith("SYX") else ref


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_to_dask_and_dask_image(real_data, name):
    """``to_dask`` holds every plane as tifffile reads it; ``dask_image`` the default frames."""
    dask_image_imread = pytest.importorskip("dask_image.imread")
    path = real_data / name
    with TiffStackND(path) as reader:
        np.testing.assert_array_equal(reader.to_dask().compute(), _tifffile_planes(path))
        frames = np.stack([np.asarray(frame) for frame in reader])
    np.testing.assert_array_equal(dask_image_imread.imread(str(path)).compute(), frames)


@pytest.mark.parametrize("folder", sorted(REAL_DATASETS))
def test_real_sequence_equals_tifffile_per_file(real_data, folder):
    files = sorted((real_data / folder).glob(REAL_DATASETS[folder]))
    expected = np.stack([tifffile.imread(f) for f in files])
    for source in real_data / folder, real_data / folder / REAL_DATASETS[folder]:
        with TiffSequenceND(source) as reader:
            assert reader.sizes["t"] == len(files)
            np.testing.assert_array_equal(reader.to_dask().compute(), expected)


def test_real_info_json_every_file_and_dataset(real_data, capsys):
    from pims_videoutils.cli import main

    paths = [str(real_data / name) for name in sorted(REAL_FILES)]
    paths += [str(real_data / folder) for folder in sorted(REAL_DATASETS)]
    paths.append(str(real_data / "ndtiff/ndtiff3.2_multichannel"))
    assert main(["info", "--json", *paths]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == paths
    for record, name in zip(records, sorted(REAL_FILES), strict=False):
        assert record["sizes"] == REAL_FILES[name][0]
    assert records[-1]["sizes"] == {"t": 8, "c": 2, "z": 16, "y": 64, "x": 64}


@pytest.mark.parametrize("name", ["compressed/nuclei_deflate.tif", "sequences/banana"])
def test_real_lossless_movie_is_bit_exact(real_data, tmp_path, name):
    """``pims-video convert --lossless`` of uint16 gray time points gives back their values."""
    from pims_videoutils.cli import main

    out = tmp_path / "movie.mkv"
    assert main(["convert", str(real_data / name), str(out), "--lossless", "--no-progress"]) == 0
    with av.open(str(out)) as container:
        movie = np.stack([f.to_ndarray(format="gray16le") for f in container.decode(video=0)])
    with pims_videoutils.open(real_data / name) as reader:
        np.testing.assert_array_equal(movie, reader.to_dask().compute())
