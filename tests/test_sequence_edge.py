"""Edge cases of TiffSequenceND found by the bug bash.

Fill values, datasets with missing images or files, OME positions of different sizes, closing
while other threads read, file names holding glob characters, unlabelled stacks in sequences.
References are tifffile's own decoding of each file and numpy's own conversions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pims_videoutils import ReaderClosedError, StackNotFoundError, StackReadError
from pims_videoutils.sequence import TiffSequenceND, _OpenFiles


@pytest.fixture
def gap(tmp_path):
    """img0, img1, img3 as uint8 planes: t=2 is a gap."""
    for i in (0, 1, 3):
        tifffile.imwrite(tmp_path / f"img{i}.tif", np.full((4, 5), i, np.uint8))
    return tmp_path


@pytest.mark.parametrize(
    "value",
    [np.nan, np.inf, 1e20, 2**64, 2**63, -1, 256, 0.5, "0", [1, 2], 1 + 0j],
    ids=repr,
)
def test_fill_value_the_pixel_type_cannot_hold_is_a_value_error(gap, value):
    # a ValueError with our message: no OverflowError, RuntimeWarning or ComplexWarning
    with pytest.raises(ValueError, match="does not fit uint8"):
        TiffSequenceND(gap, fill_missing=value)


@pytest.mark.parametrize("value", [0, 255, True, np.uint16(7), 3.0])
def test_fill_value_is_read_in_the_pixel_type(gap, value):
    with TiffSequenceND(gap, fill_missing=value) as reader:
        filled = reader.get_plane(t=2)
        assert filled.dtype == np.uint8
        np.testing.assert_array_equal(filled, np.full((4, 5), int(value), np.uint8))
        np.testing.assert_array_equal(reader.get_plane(t=3), tifffile.imread(gap / "img3.tif"))


def test_float_fill_values_round_but_do_not_overflow(tmp_path):
    for i in (0, 1, 3):
        tifffile.imwrite(tmp_path / f"img{i}.tif", np.full((4, 5), i, np.float32))
    with TiffSequenceND(tmp_path, fill_missing=0.1) as reader:
        np.testing.assert_array_equal(reader.get_plane(t=2), np.full((4, 5), 0.1, np.float32))
    with pytest.raises(ValueError, match="does not fit float32"):
        TiffSequenceND(tmp_path, fill_missing=1e300)


# --- NDTiff: images missing from the index, files missing from the folder ----------------------

NDTIFF = "NDTiff3.2_multichannel_NDTiffStack.tif"


def _ndtiff_copy(real_data: Path, folder: Path, keep, rename: str | None = None) -> Path:
    """Copy the real NDTiff dataset, keeping the index entries ``keep(axes)`` accepts."""
    source = real_data / "ndtiff" / "ndtiff3.2_multichannel"
    shutil.copyfile(source / NDTIFF, folder / (rename or NDTIFF))
    with open(folder / "NDTiff.index", "wb") as index:
        for axes, filename, *numbers in tifffile.read_ndtiff_index(source / "NDTiff.index"):
            if keep(axes):
                text, name = json.dumps(axes).encode(), filename.encode()
                index.write(struct.pack("<I", len(text)) + text)
                index.write(struct.pack("<I", len(name)) + name)
                index.write(struct.pack("<IiiiiIii", *numbers))
    return folder / (rename or NDTIFF)


@pytest.mark.parametrize("entry", ["NDTiff.index", "folder"])
def test_ndtiff_folder_with_a_tiff_of_its_own_opens_the_dataset(real_data, tmp_path, entry):
    # a projection saved beside the dataset is no file of it
    _ndtiff_copy(real_data, tmp_path, keep=lambda axes: True)
    tifffile.imwrite(tmp_path / "MAX_projection.tif", np.zeros((64, 64), np.uint16))
    expected = tifffile.imread(tmp_path / NDTIFF)
    with TiffSequenceND(tmp_path if entry == "folder" else tmp_path / entry) as reader:
        assert reader.sizes == {"t": 8, "c": 2, "z": 16, "y": 64, "x": 64}
        assert reader.files == (str(tmp_path / NDTIFF),)
        reader.bundle_axes = "czyx"
        np.testing.assert_array_equal(reader[6], expected[6])


def test_ndtiff_channel_names_follow_the_c_axis_of_the_index(real_data, tmp_path):
    # DAPI skipped at t=0: FITC comes first in the index, so tifffile makes it c=0
    path = _ndtiff_copy(real_data, tmp_path, lambda a: a["channel"] == "FITC" or a["time"] > 0)
    with tifffile.TiffFile(path) as tif:  # (the channels' pixels are the same: their times not)
        fitc = next(page.tags[51123].value["ElapsedTime-ms"] / 1000 for page in tif.pages
                    if page.tags[51123].value["Axes"] == {"channel": "FITC", "z": 0, "time": 1})
    with TiffSequenceND(tmp_path, fill_missing=0) as reader:
        assert reader.metadata["channel_names"] == ["FITC", "DAPI"]
        assert reader.get_plane(t=1, c=0, z=0).metadata["timestamp"] == fitc
        assert reader.get_plane(t=1, c=1, z=0).metadata["timestamp"] != fitc


def test_empty_ndtiff_index_is_named(real_data, tmp_path):
    # tifffile's own error spoke of an empty array reduction and named the data file
    path = _ndtiff_copy(real_data, tmp_path, keep=lambda axes: True)
    (tmp_path / "NDTiff.index").write_bytes(b"")
    for source in (tmp_path, path):
        with pytest.raises(StackReadError, match=r"NDTiff\.index: the NDTiff index is empty"):
            TiffSequenceND(source)


def test_ndtiff_acquisition_stopped_early_is_an_error_or_filled(real_data, tmp_path):
    # the last time point only reached z=9: 12 images (6 z x 2 c) were never written
    path = _ndtiff_copy(real_data, tmp_path, lambda a: a["time"] < 7 or a["z"] < 10)
    with pytest.raises(StackReadError, match=r"12 planes .*fill_missing"):
        TiffSequenceND(tmp_path)
    expected = tifffile.imread(path)  # tifffile zero-fills the images the index lacks
    assert expected.shape == (8, 2, 16, 64, 64)
    assert not expected[7, :, 10:].any() and expected[7, :, :10].all()
    for source in (tmp_path, path):
        with TiffSequenceND(source, fill_missing=0) as reader:
            assert reader.metadata["missing_files"] == 12
            reader.bundle_axes = "czyx"
            for t in (0, 7):
                np.testing.assert_array_equal(reader[t], expected[t])


def test_ndtiff_file_truncated_by_a_crash_is_an_error_or_filled(real_data, tmp_path):
    path = _ndtiff_copy(real_data, tmp_path, lambda a: True)
    os.truncate(path, path.stat().st_size - 50000)  # the index lists images the file lost
    with tifffile.TiffFile(path) as tif:
        series, size = tif.series[0], tif.filehandle.size
        assert series.shape == (8, 2, 16, 64, 64)
        beyond = [i for i, page in enumerate(series.pages)
                  if page.dataoffsets[0] + page.databytecounts[0] > size]
    assert len(beyond) == 4
    expected = tifffile.imread(real_data / "ndtiff" / "ndtiff3.2_multichannel" / NDTIFF)
    expected = expected.reshape(-1, 64, 64)
    expected[beyond] = 0
    for source in (tmp_path, path):
        with pytest.raises(StackReadError, match=r"4 planes .*fill_missing"):
            TiffSequenceND(source)
        with TiffSequenceND(source, fill_missing=0) as reader:
            assert reader.metadata["missing_files"] == 4
            assert reader.storage == "mapped"
            reader.iter_axes = "tcz"
            for i in range(len(reader)):
                np.testing.assert_array_equal(reader[i], expected[i])


def _replace_ndtiff_summary(path: Path, change) -> dict:
    """Rewrite in place the summary JSON of the NDTiff file ``path`` (its header) as
    ``change(summary)`` returns it, padded with spaces to its length; return the new summary."""
    raw = bytearray(path.read_bytes())
    start = raw.index(b"{")
    (length,) = struct.unpack_from("<I", raw, start - 4)
    summary = change(json.loads(raw[start : start + length]))
    text = json.dumps(summary, separators=(",", ":")).encode()
    assert len(text) <= length
    raw[start : start + length] = text.ljust(length)
    path.write_bytes(bytes(raw))
    with tifffile.TiffFile(path) as tif:  # as tifffile reads it
        assert tif.micromanager_metadata["Summary"] == summary
    return summary


def test_ndtiff_summary_z_step_and_interval(real_data, tmp_path):
    """Where an NDTiff summary gives ``z-step_um`` and ``Interval_ms`` (as Micro-Manager's
    summary metadata does), they are the z step and the frame interval (s); the images'
    intended z positions do not override the summary."""
    path = _ndtiff_copy(real_data, tmp_path, lambda a: True)

    def stated(summary):
        kept = {k: v for k, v in summary.items() if not k.startswith("Core-")}
        return {**kept, "z-step_um": 0.5, "Interval_ms": 1500}

    summary = _replace_ndtiff_summary(path, stated)
    for source in (tmp_path, path):
        with TiffSequenceND(source) as reader:
            assert reader.metadata["z_step"] == summary["z-step_um"]
            assert reader.metadata["frame_interval"] == summary["Interval_ms"] / 1000
            assert reader.frame_rate == pytest.approx(1000 / summary["Interval_ms"])


def test_ndtiff_channel_names_follow_the_index_not_the_summary_order(real_data, tmp_path):
    """A summary listing ``ChNames`` (as Micro-Manager's does) in another order than the
    index's first appearances, which number tifffile's ``c`` (DAPI skipped at t=0): the names
    follow ``c``."""
    path = _ndtiff_copy(real_data, tmp_path, lambda a: a["channel"] == "FITC" or a["time"] > 0)
    summary = _replace_ndtiff_summary(path, lambda summary: {
        **{k: v for k, v in summary.items() if not k.startswith("Core-")},
        "ChNames": ["DAPI", "FITC"]})
    with tifffile.TiffFile(path) as tif:
        seconds = {}  # of each channel's image at t=1, z=0 (their pixels are the same)
        for page in tif.pages:
            image = page.tags[51123].value
            if image["Axes"]["time"] == 1 and image["Axes"]["z"] == 0:
                seconds[image["Axes"]["channel"]] = image["ElapsedTime-ms"] / 1000
    assert len(set(seconds.values())) == 2
    with TiffSequenceND(tmp_path, fill_missing=0) as reader:
        names = reader.metadata["channel_names"]
        assert sorted(names) == sorted(summary["ChNames"])
        for c, name in enumerate(names):
            assert reader.get_plane(t=1, c=c, z=0).metadata["timestamp"] == seconds[name]


def test_ndtiff_uneven_intended_z_positions_give_no_z_step(real_data, tmp_path):
    """One image focused elsewhere than its stack's even spacing: no z step is made up."""
    path = _ndtiff_copy(real_data, tmp_path, lambda a: True)
    raw = path.read_bytes()
    moved = raw.replace(b'"ZPosition_um_Intended":0.4,', b'"ZPosition_um_Intended":0.5,', 1)
    assert moved != raw
    path.write_bytes(moved)
    for source in (tmp_path, path):
        with TiffSequenceND(source) as reader:
            assert reader.metadata["z_step"] is None


def test_ndtiff_intended_z_step_with_images_missing(real_data, tmp_path):
    """The last time point stopped at z=9: the complete stacks still give the z step."""
    path = _ndtiff_copy(real_data, tmp_path, lambda a: a["time"] < 7 or a["z"] < 10)
    with tifffile.TiffFile(path) as tif:
        intended = {page.tags[51123].value["ZPosition_um_Intended"] for page in tif.pages}
    assert len(intended) == 16
    step = (max(intended) - min(intended)) / 15
    with TiffSequenceND(tmp_path, fill_missing=0) as reader:
        assert reader.metadata["z_step"] == pytest.approx(step)


def test_ndtiff_index_naming_a_missing_file(real_data, tmp_path):
    _ndtiff_copy(real_data, tmp_path, lambda a: True, rename="renamed.tif")
    with pytest.raises(StackNotFoundError, match=re.escape(NDTIFF)):
        TiffSequenceND(tmp_path)


# --- multi-file OME-TIFF: positions of different sizes, a position's file missing --------------


def _write_ome_positions(folder: Path, times: list[int]) -> list[np.ndarray]:
    """One file per position ``pos{p}.ome.tif`` of ``times[p]`` planes, every file holding
    the OME-XML of all positions (as Bio-Formats writes a multi-file dataset)."""
    names = [f"pos{p}.ome.tif" for p in range(len(times))]
    uuids = [f"urn:uuid:00000000-0000-0000-0000-{p:012d}" for p in range(len(times))]
    images = "".join(
        f'<Image ID="Image:{p}" Name="pos{p}"><Pixels ID="Pixels:{p}" DimensionOrder="XYZCT" '
        f'Type="uint16" SizeX="6" SizeY="5" SizeZ="1" SizeC="1" SizeT="{size}">'
        f'<Channel ID="Channel:{p}:0" SamplesPerPixel="1"/><TiffData IFD="0" '
        f'PlaneCount="{size}"><UUID FileName="{names[p]}">{uuids[p]}</UUID></TiffData>'
        "</Pixels></Image>"
        for p, size in enumerate(times)
    )
    data = []
    for p, size in enumerate(times):
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><OME xmlns='
            f'"http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uuids[p]}">{images}</OME>'
        )
        data.append(np.random.default_rng(p).integers(0, 60000, (size, 5, 6), np.uint16))
        tifffile.imwrite(
            folder / names[p], data[p], description=xml, metadata=None, photometric="minisblack"
        )
    return data


@pytest.mark.parametrize("entry", ["folder", "pos0.ome.tif", "pos1.ome.tif"])
def test_ome_positions_of_different_sizes_open_one_series(tmp_path, entry):
    _write_ome_positions(tmp_path, [3, 2])
    source = tmp_path if entry == "folder" else tmp_path / entry
    for series, name in enumerate(["pos0.ome.tif", "pos1.ome.tif"]):
        # the file's own pages (tifffile's imread(series=1) of pos0.ome.tif reads pos0's pages)
        expected = tifffile.imread(tmp_path / name, is_ome=False)
        with TiffSequenceND(source, series=series) as reader:
            assert reader.sizes == {"t": len(expected), "y": 5, "x": 6}
            assert [os.path.basename(f) for f in reader.files] == [name]
            assert len(reader.metadata["series"]) == 2
            for t, plane in enumerate(expected):
                np.testing.assert_array_equal(reader[t], plane)


def test_ome_position_whose_file_is_missing_is_not_dropped_silently(tmp_path):
    _write_ome_positions(tmp_path, [3, 3])
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes["p"] == 2
    (tmp_path / "pos1.ome.tif").unlink()
    for options in ({}, {"fill_missing": 0}):
        with pytest.raises(StackNotFoundError, match=r"pos1\.ome\.tif"):
            TiffSequenceND(tmp_path, **options)


@pytest.mark.parametrize("entry", ["folder", "pos0.ome.tif", "pos2.ome.tif"])
def test_ome_position_whose_file_is_unreadable_is_not_dropped_silently(tmp_path, entry):
    _write_ome_positions(tmp_path, [3, 3, 3])
    (tmp_path / "pos1.ome.tif").write_bytes(b"overwritten")
    with tifffile.TiffFile(tmp_path / "pos0.ome.tif") as tif:
        assert len(tif.series) == 2  # tifffile drops position 1: position 2 would take its place
    source = tmp_path if entry == "folder" else tmp_path / entry
    for options in ({}, {"fill_missing": 0}):
        with pytest.raises(StackReadError, match=r"pos1\.ome\.tif: cannot read it .*not a TIFF"):
            TiffSequenceND(source, **options)


@pytest.mark.parametrize("entry", ["folder", "part0.ome.tif"])
def test_ome_file_holding_none_of_its_planes_is_named_not_read_as_a_sequence(tmp_path, entry):
    """The OME-XML puts planes 2 and 3 at IFDs 2 and 3 of part1.ome.tif, which has 2 pages (a
    file rewritten shorter). The folder was read as a numbered sequence of both files: ``p=2``,
    the missing planes silently zero, part1 refused as 'one file of a multi-file dataset'."""
    names = ["part0.ome.tif", "part1.ome.tif"]
    uuids = [f"urn:uuid:00000000-0000-0000-0000-{k:012d}" for k in range(2)]
    tiffdata = "".join(
        f'<TiffData FirstT="{2 * k}" IFD="{2 * k}" PlaneCount="2"><UUID FileName="{name}">'
        f"{uuid}</UUID></TiffData>"
        for k, (name, uuid) in enumerate(zip(names, uuids, strict=True))
    )
    planes = np.random.default_rng(27).integers(0, 60000, (2, 2, 5, 6), np.uint16)
    for name, uuid, data in zip(names, uuids, planes, strict=True):
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><OME xmlns='
            f'"http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{uuid}"><Image '
            'ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="6" '
            'SizeY="5" SizeZ="1" SizeC="1" SizeT="4"><Channel ID="Channel:0:0" '
            f'SamplesPerPixel="1"/>{tiffdata}</Pixels></Image></OME>'
        )
        tifffile.imwrite(tmp_path / name, data, description=xml, metadata=None,
                         photometric="minisblack")
    source = tmp_path if entry == "folder" else tmp_path / entry
    with pytest.raises(StackReadError, match=r"2 planes .*\(part1\.ome\.tif cannot be read: "
                                             r"none of the pages"):
        TiffSequenceND(source)
    with TiffSequenceND(source, fill_missing=0) as reader:
        assert reader.sizes == {"t": 4, "y": 5, "x": 6}
        expected = tifffile.imread(tmp_path / "part0.ome.tif", is_ome=False)
        for t in range(2):
            np.testing.assert_array_equal(reader.get_plane(t=t), expected[t])
        for t in range(2, 4):
            np.testing.assert_array_equal(reader.get_plane(t=t), np.zeros((5, 6), np.uint16))


# --- closing while other threads read --------------------------------------------------------


def test_close_waits_for_files_in_use_by_other_threads(tmp_path):
    data = _write_ome_positions(tmp_path, [4, 4])
    reader = TiffSequenceND(tmp_path, max_open_files=1)
    cache = reader._files
    handle = cache.acquire(1)  # another thread between acquiring file 1 and reading from it
    idle = cache.acquire(0)
    cache.release(0)
    reader.close()
    assert idle._file.closed  # not in use: closed at once
    with pytest.raises(ReaderClosedError):
        cache.acquire(0)
    # the read in progress finishes on an open file (it failed with EBADF before)
    np.testing.assert_array_equal(
        handle.read(reader._table, int(reader._table.offsets[1, 2])), data[1][2]
    )
    cache.release(1)
    assert handle._file.closed


def test_open_files_cache_closes_a_reader_once_its_last_user_releases_it():
    closed = []

    class Reader:
        def __init__(self, number):
            self.number = number

        def close(self):
            closed.append(self.number)

    cache = _OpenFiles(2, Reader, ["a.tif", "b.tif"])
    for number in (0, 1, 1):
        cache.acquire(number)
    cache.close()
    assert closed == [] and cache.open_count() == 2
    cache.release(1)
    assert closed == []
    cache.release(0)
    cache.release(1)
    assert sorted(closed) == [0, 1] and cache.open_count() == 0


# --- sources -------------------------------------------------------------------------------


def test_a_file_whose_name_holds_glob_characters_is_that_file(tmp_path):
    named = tmp_path / "cell[1].tif"
    tifffile.imwrite(
        named, np.arange(40, dtype=np.uint8).reshape(2, 4, 5), photometric="minisblack"
    )
    tifffile.imwrite(tmp_path / "cell1.tif", np.zeros((4, 5), np.uint8))  # what the glob matches
    with TiffSequenceND(named) as reader:
        assert reader.files == (str(named),)
        np.testing.assert_array_equal(reader.get_plane(t=1), tifffile.imread(named)[1])


@pytest.mark.parametrize("listing", [sorted, lambda names: sorted(names, reverse=True)])
def test_dataset_mixed_with_other_files_does_not_depend_on_listing_order(
    tmp_path, monkeypatch, listing
):
    from pims_videoutils import sequence

    _write_ome_positions(tmp_path, [2, 2])
    tifffile.imwrite(tmp_path / "zz_other.tif", np.zeros((5, 6), np.uint16))
    real = sequence._file_names
    monkeypatch.setattr(sequence, "_file_names", lambda folder: listing(real(folder)))
    with pytest.raises(StackReadError, match="open one file of the dataset"):
        TiffSequenceND(tmp_path)


# --- stacks inside sequences -------------------------------------------------------------------


@pytest.mark.parametrize("metadata", [{}, None], ids=["tifffile-shaped", "plain-multipage"])
def test_folder_of_unlabelled_z_stacks_named_by_time_gives_t_and_z(tmp_path, metadata):
    # multi-page files that do not name their axis: the names number t, so the pages are z
    for t in range(3):
        stack = np.random.default_rng(t).integers(0, 255, (4, 5, 6), np.uint8)
        tifffile.imwrite(
            tmp_path / f"cell_t{t:03d}.tif", stack, photometric="minisblack", metadata=metadata
        )
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"t": 3, "z": 4, "y": 5, "x": 6}
        reader.bundle_axes = "zyx"
        for t in range(3):
            np.testing.assert_array_equal(
                reader[t], tifffile.imread(tmp_path / f"cell_t{t:03d}.tif")
            )
        np.testing.assert_array_equal(
            reader.get_plane(t=2, z=3), tifffile.imread(tmp_path / "cell_t002.tif", key=3)
        )


def test_ndtiff_index_file_opens_its_dataset(real_data):
    folder = real_data / "ndtiff" / "ndtiff3.2_multichannel"
    expected = tifffile.imread(folder / NDTIFF)
    with TiffSequenceND(folder / "NDTiff.index") as reader:
        assert reader.sizes == {"t": 8, "c": 2, "z": 16, "y": 64, "x": 64}
        reader.bundle_axes = "czyx"
        np.testing.assert_array_equal(reader[5], expected[5])


def test_zero_copy_views_outlive_eviction_and_close(tmp_path):
    for t in range(3):
        stack = np.random.default_rng(t).integers(0, 60000, (3, 8, 9), np.uint16)
        tifffile.imwrite(tmp_path / f"s_t{t}.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    # in a child process: a view into an unmapped file crashes the process
    code = textwrap.dedent(f"""
        import numpy as np, tifffile
        from pims_videoutils import TiffSequenceND
        folder = {str(tmp_path)!r}
        reader = TiffSequenceND(folder, copy=False, max_open_files=1)
        views = [reader.get_plane(t=t, z=1) for t in range(3)]  # each read evicts a file
        reader.close()
        expected = [tifffile.imread(f"{{folder}}/s_t{{t}}.tif")[1] for t in range(3)]
        print(all(np.array_equal(v, e) for v, e in zip(views, expected)))
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"


def test_a_tiff_header_without_an_ifd_is_a_read_error(tmp_path):
    """4 bytes of TIFF header: tifffile's struct.error becomes a StackReadError naming it."""
    path = tmp_path / "tiny.tif"
    path.write_bytes(b"II*\x00")
    with pytest.raises(StackReadError, match=r"tiny\.tif"):
        TiffSequenceND(path)


def test_source_given_as_a_numpy_string(tmp_path):
    """dask-image passes numpy.str_ names; os.scandir would list such a folder as bytes."""
    data = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    for t, plane in enumerate(data):
        tifffile.imwrite(tmp_path / f"img{t}.tif", plane)
    with TiffSequenceND(np.str_(str(tmp_path))) as reader:
        expected = tifffile.imread(tmp_path / "img2.tif")
        np.testing.assert_array_equal(reader.get_plane(t=2), expected)


def test_pycromanager_dataset_folder_opens_its_full_resolution_images(real_data, tmp_path):
    """pycro-manager and Micro-Magellan save an NDTiff dataset in ``Full resolution``, with
    the levels of a pyramid (when asked for) beside it: the folder above opened them all as
    positions (and refused them, a level's planes being smaller)."""
    for level in ("Full resolution", "Downsampled_x2"):
        (tmp_path / level).mkdir()
        _ndtiff_copy(real_data, tmp_path / level, keep=lambda axes: True)
    (tmp_path / "display_settings.txt").write_text("{}")
    full = tmp_path / "Full resolution" / NDTIFF
    expected = tifffile.imread(full)
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"t": 8, "c": 2, "z": 16, "y": 64, "x": 64}
        assert reader.files == (str(full),)
        reader.bundle_axes = "czyx"
        np.testing.assert_array_equal(reader[5], expected[5])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_put_at_a_files_name_after_open_is_an_error_not_a_hang(tmp_path):
    """Opening a FIFO waits for a writer: the one-plane files' fast read used to wait forever
    (run in a child process, which the test kills if it hangs)."""
    planes = np.arange(3 * 6 * 7, dtype=np.uint16).reshape(3, 6, 7)
    for t, plane in enumerate(planes):
        tifffile.imwrite(tmp_path / f"img_{t}.tif", plane)
    script = textwrap.dedent(f"""
        import os
        from pims_videoutils import StackReadError, TiffSequenceND
        with TiffSequenceND({str(tmp_path)!r}) as reader:
            reader[0]
            path = reader.files[2]
            os.remove(path)
            os.mkfifo(path)
            try:
                reader[2]
            except StackReadError as error:
                print("StackReadError:", error)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "StackReadError:" in done.stdout and "img_2.tif" in done.stdout
    assert "not a regular file" in done.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_put_at_a_dataset_files_name_after_open_is_an_error_not_a_hang(tmp_path):
    """Re-opening a file of a multi-file dataset waited forever for a FIFO's writer, holding
    the reader's lock (run in a child process, which the test kills if it hangs)."""
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        import numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_sequence import _write_multifile_ome
        from pims_videoutils import StackReadError, TiffSequenceND
        folder = {str(tmp_path)!r}
        data = np.random.default_rng(29).integers(0, 60000, (2, 4, 16, 24), np.uint16)
        _write_multifile_ome(Path(folder), data)
        with TiffSequenceND(folder, max_open_files=1) as reader:
            assert np.array_equal(reader.get_plane(p=0, t=0), data[0, 0])
            path = os.path.join(folder, "pos1_part1.ome.tif")
            os.remove(path)
            os.mkfifo(path)
            try:
                reader.get_plane(p=1, t=3)
            except StackReadError as error:
                print("StackReadError:", error)
            assert np.array_equal(reader.get_plane(p=0, t=1), data[0, 1])
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "StackReadError:" in done.stdout and "pos1_part1.ome.tif" in done.stdout
    assert "not a regular file" in done.stdout


# --- the process's limit of open files ---------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="sets a limit of open files (resource)")
def test_multifile_dataset_opened_at_the_limit_of_open_files_is_read_whole(tmp_path):
    """At the limit of open files, tifffile skips the dataset's other files ('failed to read
    ..., raised OSError(24...). Missing data are zeroed'); the files were then taken for
    unreadable ('cannot read it (OSError: [Errno 24]...)', or their planes filled with
    fill_missing) instead of closing another reader's idle files and trying again."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for t in range(30):
        tifffile.imwrite(stacks / f"vol{t}.tif", np.zeros((2, 4, 5), np.uint16), imagej=True,
                         metadata={"axes": "ZYX"})
    script = textwrap.dedent(f"""
        import os, resource, sys
        from pathlib import Path
        import numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_sequence import _write_multifile_ome
        from pims_videoutils import TiffSequenceND
        folder = Path({str(tmp_path)!r}) / "ome"
        folder.mkdir()
        data = np.random.default_rng(30).integers(0, 60000, (2, 4, 16, 24), np.uint16)
        _write_multifile_ome(folder, data)
        with TiffSequenceND(folder.parent / "stacks") as stacks:
            for t in range(30):  # 30 files left open, idle
                stacks.get_plane(t=t, z=0)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (stacks.open_file_count() + 64, hard))
            taken = []
            try:
                while True:
                    taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            os.close(taken.pop())  # one file may be opened: the dataset's first, not the others
            with TiffSequenceND(folder, fill_missing=0) as reader:
                assert reader.metadata["missing_files"] == 0
                for p in range(2):
                    for t in range(4):
                        assert np.array_equal(reader.get_plane(p=p, t=t), data[p, t]), (p, t)
        print("read every plane")
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "read every plane" in done.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_readers_holding_more_files_than_the_process_may_open_still_read(tmp_path):
    """Idle files that readers keep open count against ``ulimit -n`` (1024 by default on Linux,
    256 on macOS): a dask worker keeps up to 16 re-opened readers of up to 128 open files
    each. Opening one more file used to fail with a bare ``OSError: [Errno 24]``; the idle
    files of every reader are now closed and the open tried again. When no file is idle, the
    error names the file and the limit (run in a child process with a low limit)."""
    rng = np.random.default_rng(31)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for t in range(30):
            tifffile.imwrite(tmp_path / name / f"vol{t}.tif", rng.integers(0, 60000, (2, 4, 5),
                             np.uint16), imagej=True, metadata={"axes": "ZYX"})
    script = textwrap.dedent(f"""
        import os, resource
        import numpy as np, tifffile
        from pims_videoutils import StackReadError, TiffSequenceND
        readers = [TiffSequenceND(os.path.join({str(tmp_path)!r}, name)) for name in "ab"]
        expected = [[tifffile.imread(path) for path in reader.files] for reader in readers]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
        for reader, stacks in [*zip(readers, expected), *zip(readers, expected)]:
            for t, stack in enumerate(stacks):
                for z in range(2):
                    assert np.array_equal(reader.get_plane(t=t, z=z), stack[z]), (t, z)
        print("read every plane; open files:", [r.open_file_count() for r in readers])
        def take_every_free_file_descriptor():
            try:
                while True:
                    os.open(os.devnull, os.O_RDONLY)
            except OSError:
                pass

        take_every_free_file_descriptor()
        with TiffSequenceND(os.path.join({str(tmp_path)!r}, "b")) as reader:  # (a re-open)
            assert np.array_equal(reader.get_plane(t=0, z=1), expected[1][0][1])
            print("opened another reader")
            reader._files.acquire(0)  # another thread reading the one open file: not idle
            take_every_free_file_descriptor()
            try:
                reader.get_plane(t=7)
            except StackReadError as error:
                print("StackReadError:", error)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "read every plane" in done.stdout and "opened another reader" in done.stdout
    assert "StackReadError:" in done.stdout and f"{os.sep}b{os.sep}vol7.tif" in done.stdout
    assert "too many open files" in done.stdout.lower() and "max_open_files" in done.stdout
