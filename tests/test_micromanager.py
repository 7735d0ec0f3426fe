"""Micro-Manager 2.0 multi-file, multi-position "MMStack" datasets (written by mmwriter.py).

The independent reference is tifffile: first that it reads the synthetic files as the
Micro-Manager datasets we meant to write, then each file's own pages decoded by tifffile, placed
by the coordinates in each page's MicroManagerMetadata tag (51123).
"""

from __future__ import annotations

import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pims
import pytest
import tifffile
from mmwriter import mmstack_name, write_mmstack

import pims_videoutils
from pims_videoutils import StackNotFoundError, StackReadError
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND

SHAPE = (2, 3, 2, 2, 5, 7)  # P, T, Z, C, Y, X: 12 images per position
SIZES = {"t": 3, "p": 2, "z": 2, "c": 2, "y": 5, "x": 7}


def _data(seed: int, shape=SHAPE, dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype)


def _by_coords(files, value) -> dict[tuple[int, int, int, int], object]:
    """``value(page, metadata)`` of every page of every file, read by tifffile, keyed by its
    (p, t, z, c) from its MicroManagerMetadata tag (51123)."""
    found = {}
    for path in files:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                md = page.tags[51123].value
                key = md["PositionIndex"], md["FrameIndex"], md["SliceIndex"], md["ChannelIndex"]
                assert key not in found
                found[key] = value(page, md)
    return found


def _pages_by_coords(files) -> dict[tuple[int, int, int, int], np.ndarray]:
    """Every page decoded by tifffile, by (p, t, z, c)."""
    return _by_coords(files, lambda page, md: page.asarray())


def _times_by_coords(files) -> dict[tuple[int, int, int, int], float]:
    """Every page's ElapsedTime-ms in seconds, by (p, t, z, c)."""
    return _by_coords(files, lambda page, md: md["ElapsedTime-ms"] / 1000)


def _open_fds_under(folder: Path) -> int:
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd).startswith(str(folder))
        except OSError:
            continue
    return count


@pytest.fixture
def dataset(tmp_path):
    """Two positions, each spread over two files (8 + 4 images)."""
    data = _data(1)
    files = write_mmstack(tmp_path, data, pixel_size_um=0.65, max_images_per_file=8,
                          channel_names=["DAPI", "GFP"])
    return tmp_path, files, data


# --- the writer, as tifffile reads it ----------------------------------------------------------


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tifffile_reads_the_synthetic_dataset_as_micromanager(tmp_path, byteorder, dtype):
    data = _data(2, dtype=dtype)
    files = write_mmstack(tmp_path, data, prefix="cells", max_images_per_file=8,
                          byteorder=byteorder, interval_ms=500.0)
    assert [f.name for f in files] == [
        "cells_MMStack_Pos0.ome.tif", "cells_MMStack_Pos0_1.ome.tif",
        "cells_MMStack_Pos1.ome.tif", "cells_MMStack_Pos1_1.ome.tif",
    ]
    assert [mmstack_name("cells", 1, 1)] == [files[3].name]
    for path in files:
        with tifffile.TiffFile(path) as tif:
            assert tif.byteorder == byteorder
            assert tif.is_micromanager and tif.is_mmstack
            assert {"micromanager", "mmstack"} <= tif.flags
            mm = tif.micromanager_metadata
            assert mm["MajorVersion"] == 0
            summary = mm["Summary"]
            assert (summary["Prefix"], summary["Frames"], summary["Positions"]) == ("cells", 3, 2)
            assert summary["Interval_ms"] == 500.0
            assert mm["Comments"] == {"Summary": ""}
            # MM's ImageJ header, the same in every file, counts the images of one position
            assert tif.imagej_metadata["images"] == 12
            assert tif.imagej_metadata["frames"] == 3
            assert [c["Name"] for c in mm["DisplaySettings"]["channels"]] == ["Ch0", "Ch1"]
            # the index map lists exactly this file's images, at their IFD offsets
            index = mm["IndexMap"]
            assert len(index) == len(tif.pages) == (8 if "_1." not in path.name else 4)
            for (c, z, t, p, offset), page in zip(index.tolist(), tif.pages, strict=True):
                md = page.tags[51123].value
                assert page.offset == offset
                assert (md["ChannelIndex"], md["SliceIndex"], md["FrameIndex"]) == (c, z, t)
                assert md["PositionIndex"] == p == int(path.name.split("Pos")[1][0])
            # one series spanning every file and position
            (series,) = tif.series
            assert (series.kind, series.axes, series.shape) == ("mmstack", "TRZCYX",
                                                                (3, 2, 2, 2, 5, 7))
            assert {page.parent.filehandle.path for page in series.pages} == {
                str(f) for f in files}
            np.testing.assert_array_equal(series.asarray(), data.transpose(1, 0, 2, 3, 4, 5))
    pages = _pages_by_coords(files)
    assert len(pages) == 24
    for (p, t, z, c), plane in pages.items():
        np.testing.assert_array_equal(plane, data[p, t, z, c])


# --- one reader for the whole dataset --------------------------------------------------------


def _check_whole_dataset(reader, files, position: int = 0) -> None:
    """``position``: the default p, that of the file the reader was opened from."""
    expected = _pages_by_coords(files)
    assert isinstance(reader, TiffSequenceND)
    assert reader.sizes == SIZES
    assert sorted(reader.files) == sorted(str(f) for f in files)
    assert reader.metadata["kind"] == "mmstack"
    assert reader.iter_axes == ["t"] and len(reader) == 3
    for (p, t, z, c), plane in expected.items():
        np.testing.assert_array_equal(reader.get_plane(p=p, t=t, z=z, c=c), plane)
    assert reader.default_coords["p"] == position
    np.testing.assert_array_equal(reader[2], expected[position, 2, 0, 0])  # default z=c=0


@pytest.mark.parametrize(("entry", "position"), [(0, 0), (1, 0), (2, 1), (3, 1), ("folder", 0)])
def test_any_file_or_the_folder_opens_the_whole_dataset(dataset, entry, position):
    """Opened from a file of position 1 (acq_MMStack_Pos1.ome.tif or its continuation
    _Pos1_1), frames showed position 0: now that file's position, by default."""
    folder, files, _ = dataset
    source = folder if entry == "folder" else files[entry]
    with TiffSequenceND(source) as reader:
        _check_whole_dataset(reader, files, position)


@pytest.mark.parametrize("opener", ["pims.open file", "pims_videoutils.open file",
                                    "pims_videoutils.open folder"])
def test_open_functions_give_the_whole_dataset(dataset, opener):
    folder, files, _ = dataset
    # TiffStackND (priority 20) refuses the file, whose series continues in other files;
    # TiffSequenceND (19) then reads the whole dataset
    if opener == "pims.open file":
        reader, position = pims.open(str(files[3])), 1
    elif opener == "pims_videoutils.open file":
        reader, position = pims_videoutils.open(files[1]), 0
    else:
        reader, position = pims_videoutils.open(folder), 0
    with reader:
        _check_whole_dataset(reader, files, position)


@pytest.mark.parametrize(("byteorder", "dtype"), [(">", np.uint16), ("<", np.uint8)])
def test_big_endian_and_uint8_datasets(tmp_path, byteorder, dtype):
    files = write_mmstack(tmp_path, _data(9, dtype=dtype), max_images_per_file=8,
                          byteorder=byteorder)
    with TiffSequenceND(files[3]) as reader:
        assert reader.pixel_type == dtype
        _check_whole_dataset(reader, files, position=1)


def test_mixed_byte_orders_are_refused(tmp_path):
    data = _data(11)
    files = write_mmstack(tmp_path, data, max_images_per_file=8)
    (tmp_path / "big").mkdir()
    big = write_mmstack(tmp_path / "big", data, max_images_per_file=8, byteorder=">")
    big[3].replace(files[3])  # position 1, part 1, big-endian
    with pytest.raises(StackReadError, match=r"Pos1_1\.ome\.tif: its byte order differs"):
        TiffSequenceND(files[0])


def test_bundles_and_iteration_over_positions(dataset):
    _, files, data = dataset
    with TiffSequenceND(files[2]) as reader:
        reader.iter_axes = "pt"
        reader.bundle_axes = "czyx"
        assert len(reader) == 6
        for i in range(6):
            p, t = divmod(i, 3)
            frame = reader[i]
            assert frame.shape == (2, 2, 5, 7)
            np.testing.assert_array_equal(frame, data[p, t].transpose(1, 0, 2, 3))


def test_metadata(dataset):
    folder, _, _ = dataset
    with TiffSequenceND(folder) as reader:
        meta = reader.metadata
        # pixel size from the images' PixelSizeUm (the resolution tags say 15384 px/cm)
        assert (meta["pixel_size_x"], meta["pixel_size_y"], meta["unit"]) == (0.65, 0.65, "µm")
        assert meta["z_step"] == 1.5
        assert meta["frame_interval"] == 0.25
        assert reader.frame_rate == 4.0
        assert meta["channel_names"] == ["DAPI", "GFP"]
        assert meta["software"].startswith("Micro-Manager 2.0")
        assert (meta["files"], meta["missing_files"], meta["file_pattern"]) == (4, 0, "mmstack")
        assert meta["micromanager_metadata"]["Summary"]["Positions"] == 2
        assert reader.storage == "mapped"


def test_image_of_a_multi_file_dataset_whose_ifd_puts_its_pixels_elsewhere(tmp_path):
    """As test_image_whose_ifd_puts_its_pixels_elsewhere, in the second file of a position
    spread over two: TiffSequenceND mapped the place tifffile assumed (t=3's own pixels),
    where the IFD points at those of the file's first image (t=2)."""
    data = _data(52, shape=(1, 4, 1, 1, 5, 7))
    files = write_mmstack(tmp_path, data, max_images_per_file=2)

    def page_at(tif, offset):  # tifffile's own parse of the IFD at offset
        tif.filehandle.seek(offset)
        return tifffile.TiffPage(tif, 0)

    with tifffile.TiffFile(files[1]) as tif:
        moved, target = tif.pages[1].offset, tif.pages[0].dataoffsets[0]
        strip_offsets = page_at(tif, moved).tags["StripOffsets"].offset
    with open(files[1], "r+b") as f:
        f.seek(strip_offsets + 8)
        f.write(target.to_bytes(4, "little"))
    with tifffile.TiffFile(files[1]) as tif:
        np.testing.assert_array_equal(page_at(tif, moved).asarray(), data[0, 2, 0, 0])
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes["t"] == 4
        for t, expected in enumerate(data[0, [0, 1, 2, 2], 0, 0]):
            np.testing.assert_array_equal(reader.get_plane(t=t), expected)


def test_single_file_position_is_a_plain_stack(tmp_path):
    data = _data(3, shape=(1, 3, 2, 2, 5, 7))
    (path,) = write_mmstack(tmp_path, data, interval_ms=100.0)
    expected = _pages_by_coords([path])
    for reader in (TiffStackND(path), TiffSequenceND(path), pims.open(str(path))):
        with reader:
            assert reader.sizes == {"t": 3, "z": 2, "c": 2, "y": 5, "x": 7}
            assert reader.metadata["kind"] == "mmstack"
            assert reader.frame_rate == 10.0
            assert reader.metadata["pixel_size_x"] == 0.5
            for (_, t, z, c), plane in expected.items():
                np.testing.assert_array_equal(reader.get_plane(t=t, z=z, c=c), plane)
    with pims.open(str(path)) as reader:
        assert isinstance(reader, TiffStackND)


def test_image_whose_ifd_puts_its_pixels_elsewhere(tmp_path):
    """tifffile places each image's pixels 162 bytes after its IFD, without reading the IFD.

    Here the IFD of image t=2 points its StripOffsets at the pixels of t=0: tifffile's own
    page (parsed from the IFD) shows those; mapping the place tifffile assumed gave t=2's old
    pixels. The reader must read what the IFD says.
    """
    data = _data(5, shape=(1, 4, 1, 1, 5, 7))
    (path,) = write_mmstack(tmp_path, data)
    def page_at(tif, offset):  # tifffile's own parse of the IFD at offset
        tif.filehandle.seek(offset)
        return tifffile.TiffPage(tif, 0)

    with tifffile.TiffFile(path) as tif:
        frames = list(tif.series[0])
        moved, target = frames[2].offset, frames[0].dataoffsets[0]
        strip_offsets = page_at(tif, moved).tags["StripOffsets"].offset
    with open(path, "r+b") as f:
        f.seek(strip_offsets + 8)
        f.write(target.to_bytes(4, "little"))
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(page_at(tif, moved).asarray(), data[0, 0, 0, 0])
    with TiffStackND(path) as reader:
        assert reader.sizes["t"] == 4
        for t, expected in enumerate(data[0, [0, 1, 0, 3], 0, 0]):
            np.testing.assert_array_equal(reader.get_plane(t=t), expected)


def test_all_positions_in_one_file(tmp_path):
    """Micro-Manager's option to save every position in one file (here with a continuation)."""
    data = _data(7)
    files = write_mmstack(tmp_path, data, split_positions=False, max_images_per_file=16)
    assert [f.name for f in files] == ["acq_MMStack.ome.tif", "acq_MMStack_1.ome.tif"]
    for source in (files[0], files[1], tmp_path):
        with TiffSequenceND(source) as reader:
            _check_whole_dataset(reader, files)
    files[0].unlink()
    with pytest.raises(StackNotFoundError, match=r"acq_MMStack\.ome\.tif: no such file"):
        TiffSequenceND(files[1])


def test_a_continuation_of_a_file_of_every_position_shows_position_0(tmp_path):
    """Positions in one file: a continuation file holding position 1's last images only is
    no file of position 1 (files are not split by position): frames show position 0."""
    files = write_mmstack(tmp_path, _data(7), split_positions=False, max_images_per_file=20)
    with tifffile.TiffFile(files[1]) as tif:  # the last 4 images: t=2, p=1
        assert {page.tags[51123].value["PositionIndex"] for page in tif.pages} == {1}
    with TiffSequenceND(files[1]) as reader:
        _check_whole_dataset(reader, files, position=0)


def test_all_positions_in_one_file_is_a_plain_stack(tmp_path):
    data = _data(8)
    (path,) = write_mmstack(tmp_path, data, split_positions=False)
    expected = _pages_by_coords([path])
    for reader in (TiffStackND(path), TiffSequenceND(path), pims.open(str(path))):
        with reader:
            assert reader.sizes == SIZES
            assert reader.metadata["kind"] == "mmstack"
            for (p, t, z, c), plane in expected.items():
                np.testing.assert_array_equal(reader.get_plane(p=p, t=t, z=z, c=c), plane)
    with pims.open(str(path)) as reader:
        assert isinstance(reader, TiffStackND)


def test_one_position_over_two_files(tmp_path):
    data = _data(4, shape=(1, 3, 2, 2, 5, 7))
    files = write_mmstack(tmp_path, data, max_images_per_file=8)
    assert len(files) == 2
    expected = _pages_by_coords(files)
    for source in (files[0], files[1], tmp_path):
        with TiffSequenceND(source) as reader:
            assert reader.sizes == {"t": 3, "z": 2, "c": 2, "y": 5, "x": 7}
            assert len(reader.files) == 2
            for (_, t, z, c), plane in expected.items():
                np.testing.assert_array_equal(reader.get_plane(t=t, z=z, c=c), plane)


@pytest.mark.parametrize("index", [0, 1])
def test_tiffstacknd_refuses_a_file_of_a_multifile_dataset(dataset, index):
    _, files, _ = dataset
    with pytest.raises(StackReadError, match=r"spans several files.*TiffSequenceND"):
        TiffStackND(files[index])


def test_micromanager_ome_master_and_binaryonly_parts(tmp_path):
    """MM 2.0 puts the OME-XML in the first file and a BinaryOnly pointer in the others."""
    data = _data(5)
    ome = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        + "".join(
            f'<Image ID="Image:{p}"><Pixels ID="Pixels:{p}" DimensionOrder="XYCZT" '
            'Type="uint16" SizeX="7" SizeY="5" SizeZ="2" SizeC="2" SizeT="3" '
            'PhysicalSizeX="0.65" PhysicalSizeY="0.65"/></Image>'
            for p in range(2)
        )
        + "</OME>"
    )
    files = write_mmstack(tmp_path, data, max_images_per_file=8, pixel_size_um=0.65,
                          ome_xml=ome)
    with tifffile.TiffFile(files[0]) as tif:
        assert {"ome", "mmstack"} <= tif.flags
        assert tif.ome_metadata == ome
    with tifffile.TiffFile(files[3]) as tif:
        assert {"ome", "mmstack"} <= tif.flags
        assert 'BinaryOnly MetadataFile="acq_MMStack_Pos0.ome.tif"' in tif.ome_metadata
    for source, position in ((files[0], 0), (files[3], 1)):
        with TiffSequenceND(source) as reader:
            _check_whole_dataset(reader, files, position)
            assert reader.metadata["pixel_size_x"] == 0.65
            assert reader.metadata["ome_companion"] is None
    with pytest.raises(StackReadError, match="spans several files"):
        TiffStackND(files[3])


def test_micromanager_images_read_as_ome_keep_their_elapsed_times(tmp_path):
    """Micro-Manager files whose index map header is damaged: tifffile reads them as OME
    series (the master's OME-XML, without Plane DeltaT); each plane still has the
    ElapsedTime-ms of its own image metadata (tag 51123) as timestamp."""
    data = _data(5)
    ome = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        + "".join(
            f'<Image ID="Image:{p}"><Pixels ID="Pixels:{p}" DimensionOrder="XYZCT" '
            'Type="uint16" SizeX="7" SizeY="5" SizeZ="2" SizeC="2" SizeT="3">'
            f'<TiffData IFD="0" PlaneCount="12"><UUID FileName="{mmstack_name("acq", p)}">'
            f"urn:uuid:{p}</UUID></TiffData></Pixels></Image>"
            for p in range(2)
        )
        + "</OME>"
    )
    files = write_mmstack(tmp_path, data, ome_xml=ome)
    for file in files:  # no index map header
        raw = bytearray(file.read_bytes())
        raw[8:12] = bytes(4)
        file.write_bytes(bytes(raw))
    expected = {}
    for p, file in enumerate(files):
        with tifffile.TiffFile(file) as tif:
            assert "mmstack" not in tif.flags and "micromanager" in tif.flags
            assert p or tif.series[0].kind == "ome"  # (the master: the others point to it)
            for page in tif.pages:
                image = page.aspage().tags[51123].value
                key = p, image["FrameIndex"], image["SliceIndex"], image["ChannelIndex"]
                expected[key] = image["ElapsedTime-ms"] / 1000
    assert len(expected) == 24 and len(set(expected.values())) == 3
    with TiffSequenceND(tmp_path) as reader:
        assert reader.metadata["kind"] == "ome"
        for (p, t, z, c), seconds in expected.items():
            plane = reader.get_plane(p=p, t=t, z=z, c=c)
            np.testing.assert_array_equal(plane, data[p, t, z, c])
            assert plane.metadata["timestamp"] == seconds


# --- missing files ---------------------------------------------------------------------------


def test_missing_continuation_file_of_one_position(dataset):
    folder, files, data = dataset
    files[1].unlink()  # Pos0_1: the last 4 images of position 0
    for source in (files[0], files[2], folder):
        with pytest.raises(StackReadError, match=r"4 planes.*in no file.*fill_missing"):
            TiffSequenceND(source)
    with TiffSequenceND(folder, fill_missing=0) as reader:
        assert reader.metadata["missing_files"] == 4
        np.testing.assert_array_equal(reader.get_plane(p=0, t=1, z=1, c=1), data[0, 1, 1, 1])
        assert not reader.get_plane(p=0, t=2, z=0, c=0).any()  # image 9 of position 0
        np.testing.assert_array_equal(reader.get_plane(p=1, t=2, z=1, c=0), data[1, 2, 1, 0])


def test_missing_first_file_of_a_continued_position(dataset):
    folder, files, _ = dataset
    files[0].unlink()
    with pytest.raises(StackNotFoundError, match=r"Pos0\.ome\.tif: no such file, but "
                       r"acq_MMStack_Pos0_1\.ome\.tif continues it"):
        TiffSequenceND(files[1])
    with pytest.raises(StackReadError):  # whichever file the folder lists first
        TiffSequenceND(folder)


@pytest.mark.parametrize(("positions", "kept", "per_file"),
                         [(2, 0, None), (2, 1, None), (3, 1, None), (2, 1, 8), (3, 0, 8)])
def test_files_of_one_position_alone(tmp_path, positions, kept, per_file):
    """The files of one position of a multi-position acquisition, the others gone (a copy of
    one position, on purpose or not). tifffile returns a position of one file alone
    ("Returning subset", a log line; the reader read it without a word), but fills the other
    positions with zeros when the position spans two files (the reader refused it, asking for
    fill_missing). Both read as that position, and say so: a warning, and
    metadata['missing_positions']."""
    data = _data(50, shape=(positions, 3, 2, 2, 5, 7))
    files = write_mmstack(tmp_path, data, max_images_per_file=per_file)
    own = {mmstack_name("acq", kept), mmstack_name("acq", kept, 1)}
    for file in files:
        if file.name not in own:
            file.unlink()
    entry = tmp_path / mmstack_name("acq", kept)
    message = rf"Pos{kept}\.ome\.tif: read as Pos{kept} alone: {positions - 1} of the " \
              rf"acquisition's {positions} positions have no file"
    sources = [(tmp_path, TiffSequenceND), (entry, TiffSequenceND)]
    if per_file is None:  # (else the position spans several files)
        sources.append((entry, TiffStackND))
    for source, reader_type in sources:
        with pytest.warns(pims_videoutils.IncompleteDatasetWarning, match=message):
            reader = reader_type(source)
        with reader:
            assert reader.sizes == {"t": 3, "z": 2, "c": 2, "y": 5, "x": 7}
            assert reader.metadata["missing_positions"] == positions - 1
            for t, z, c in np.ndindex(3, 2, 2):
                np.testing.assert_array_equal(reader.get_plane(t=t, z=z, c=c),
                                              data[kept, t, z, c])


def test_all_positions_present_are_not_missing(dataset):
    folder, _, _ = dataset
    with TiffSequenceND(folder) as reader:
        assert reader.metadata["missing_positions"] == 0


def test_one_position_of_three_missing_is_still_an_error(tmp_path):
    """Two positions of three: the gone one is no copy of one position (fill_missing)."""
    data = _data(51, shape=(3, 2, 1, 1, 5, 7))
    files = write_mmstack(tmp_path, data)
    files[1].unlink()
    with pytest.raises(StackReadError, match=r"2 planes.*in no file.*fill_missing"):
        TiffSequenceND(tmp_path)
    with TiffSequenceND(tmp_path, fill_missing=0) as reader:
        assert reader.sizes["p"] == 3
        assert reader.metadata["missing_positions"] == 0
        assert not reader.get_plane(p=1, t=1).any()


def test_missing_last_file_of_a_single_position(tmp_path):
    data = _data(6, shape=(1, 3, 2, 2, 5, 7))
    files = write_mmstack(tmp_path, data, max_images_per_file=8)
    files[1].unlink()
    # Documented behaviour: nothing tells a missing continuation file from an aborted
    # acquisition, so the file reads as tifffile reads it: the time points it holds
    with tifffile.TiffFile(files[0]) as tif:
        assert tif.series[0].shape == (2, 2, 2, 5, 7)
    expected = _pages_by_coords(files[:1])
    for source in (files[0], tmp_path):
        with TiffSequenceND(source) as reader:
            assert reader.sizes == {"t": 2, "z": 2, "c": 2, "y": 5, "x": 7}
            for (_, t, z, c), plane in expected.items():
                np.testing.assert_array_equal(reader.get_plane(t=t, z=z, c=c), plane)


def test_truncated_last_file_of_an_acquisition_has_missing_planes(dataset):
    folder, files, data = dataset
    # an acquisition that crashed while writing: its last file lost its last images (tifffile
    # keeps them in the series as placeholders at offset 0, "missing data are zeroed")
    os.truncate(files[3], files[3].stat().st_size - 1200)
    with tifffile.TiffFile(files[0]) as tif:
        series = tif.series[0]
        assert series.axes[:4] == "TRZC"
        lost = {np.unravel_index(i, series.shape[:4]) for i, page in enumerate(series.pages)
                if page is not None and not page.offset}
    assert len(lost) == 2
    for source in (files[0], folder):
        with pytest.raises(StackReadError, match=r"2 planes.*in no file.*fill_missing"):
            TiffSequenceND(source)
    with TiffSequenceND(folder, fill_missing=7) as reader:
        assert reader.metadata["missing_files"] == 2
        assert reader.storage == "mapped"
        for t, p, z, c in np.ndindex(3, 2, 2, 2):
            plane = reader.get_plane(p=p, t=t, z=z, c=c)
            if (t, p, z, c) in lost:
                assert (plane == 7).all()
            else:
                np.testing.assert_array_equal(plane, data[p, t, z, c])



def test_truncated_single_file_acquisition_names_the_reader_that_reads_its_planes(tmp_path):
    """A one-file acquisition that stopped while writing: TiffStackND says the file is
    truncated and names the dataset reader, which reads every plane the file holds."""
    data = _data(3, shape=(1, 6, 2, 2, 5, 7))
    (path,) = write_mmstack(tmp_path, data)
    size = path.stat().st_size * 6 // 10
    os.truncate(path, size)
    held = {}  # tifffile's decoding of the images whose pixels the file still holds
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            if page.dataoffsets[0] + page.databytecounts[0] <= size:
                plane = page.asarray()
                (where,) = [k for k in np.ndindex(6, 2, 2) if (data[0][k] == plane).all()]
                held[where] = plane
    assert 0 < len(held) < 24
    with pytest.raises(StackReadError, match=r"past the end of the file.*truncated file.*"
                       r"TiffSequenceND\(path, fill_missing=0\)"):
        TiffStackND(path)
    with TiffSequenceND(path, fill_missing=0) as reader:
        assert reader.sizes == {"t": 6, "z": 2, "c": 2, "y": 5, "x": 7}
        for t, z, c in np.ndindex(6, 2, 2):
            expected = held.get((t, z, c), np.zeros((5, 7), np.uint16))
            np.testing.assert_array_equal(reader.get_plane(t=t, z=z, c=c), expected)

# --- resources -------------------------------------------------------------------------------


def test_bounded_open_files_pickle_and_close(dataset):
    folder, files, data = dataset
    with TiffSequenceND(files[0], max_open_files=1) as reader:
        reader.iter_axes = "pt"
        for i in range(6):
            reader[i]
        assert reader.open_file_count() <= 1
        with pickle.loads(pickle.dumps(reader)) as clone:
            assert clone.sizes == SIZES
            np.testing.assert_array_equal(clone.get_plane(p=1, t=2, z=1, c=1), data[1, 2, 1, 1])
    assert reader.closed
    assert _open_fds_under(folder) == 0


def test_plane_times_of_a_dataset(dataset):
    folder, files, _ = dataset
    expected = _times_by_coords(files)
    assert len(set(expected.values())) == 3  # one per time point (interval 0.25 s)
    with TiffSequenceND(folder) as reader:
        for (p, t, z, c), seconds in expected.items():
            assert reader.get_plane(p=p, t=t, z=z, c=c).metadata["timestamp"] == seconds
        assert [reader[t].metadata["timestamp"] for t in range(3)] == [0.0, 0.25, 0.5]


def test_plane_times_of_a_single_file(tmp_path):
    (path,) = write_mmstack(tmp_path, _data(4, shape=(1, 3, 2, 2, 5, 7)), interval_ms=100.0)
    expected = _times_by_coords([path])
    with TiffStackND(path) as reader:
        for (_, t, z, c), seconds in expected.items():
            assert reader.get_plane(t=t, z=z, c=c).metadata["timestamp"] == seconds


def test_image_metadata_length_beyond_the_file_is_not_allocated(tmp_path):
    """An image's metadata tag (51123) claiming 4 GB in a small file: the times were read
    with a 4 GB buffer (an address space limit made the open fail with MemoryError)."""
    (path,) = write_mmstack(tmp_path, _data(6, shape=(1, 4, 1, 1, 5, 7)), interval_ms=100.0)
    expected = [seconds for _, seconds in sorted(_times_by_coords([path]).items())]
    with tifffile.TiffFile(path) as tif:
        ifd = list(tif.series[0])[2].offset
        tif.filehandle.seek(ifd)
        count = tifffile.TiffPage(tif, 0).tags[51123].offset + 4
    with open(path, "r+b") as f:
        f.seek(count)
        f.write((2**32 - 1).to_bytes(4, "little"))
    tracemalloc.start()
    try:
        with TiffStackND(path) as reader:
            peak = tracemalloc.get_traced_memory()[1]
            times = [reader.get_plane(t=t).metadata["timestamp"] for t in range(4)]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20
    assert times == expected


def _position_folders(root: Path, data: np.ndarray, labels=("Pos0", "Pos1")) -> list[list[Path]]:
    """Write each position of ``data`` as its own two-file dataset in a folder of ``root``."""
    written = []
    for p, label in enumerate(labels):
        (root / label).mkdir()
        written.append(write_mmstack(root / label, data[p : p + 1], max_images_per_file=8))
    return written


def test_positions_in_folders_each_a_multifile_dataset_open_as_one(tmp_path):
    # each folder: acq_MMStack_Pos0.ome.tif and its continuation _1 (12 images, 8 per file)
    data = _data(40)
    written = _position_folders(tmp_path, data, labels=("Pos10", "Pos2"))
    assert [len(files) for files in written] == [2, 2]
    for source in (tmp_path, str(tmp_path)):
        with TiffSequenceND(source) as reader:
            assert reader.sizes == SIZES
            assert reader.metadata["file_axes"] == {"p": ["Pos2", "Pos10"]}  # natural order
            assert reader.files == tuple(str(f) for f in written[1] + written[0])
            for p, files in enumerate(written[::-1]):
                for (_, t, z, c), plane in _pages_by_coords(files).items():
                    np.testing.assert_array_equal(reader.get_plane(p=p, t=t, z=z, c=c), plane)


def test_positions_in_folders_whose_datasets_differ_are_refused_naming_both(tmp_path):
    _position_folders(tmp_path, _data(41), labels=("Pos0",))
    (tmp_path / "Pos1").mkdir()  # stopped after 2 time points of 3: 8 images, 6 per file
    write_mmstack(tmp_path / "Pos1", _data(42, shape=(1, 2, 2, 2, 5, 7)), max_images_per_file=6)
    with pytest.raises(StackReadError, match=r"Pos1.acq_MMStack_Pos0\.ome\.tif: its dataset "
                       r".*differs from .*Pos0.acq_MMStack_Pos0\.ome\.tif"):
        TiffSequenceND(tmp_path)
