"""Micro-Manager "separate image files" acquisitions, and folders of position sub-folders.

Micro-Manager writes one TIFF per image with a ``metadata.txt`` beside the images; with
several stage positions, one sub-folder per position (``Pos0``, ``Pos1``...), each with its
own ``metadata.txt``, whose summary counts the positions. Version 1.4 names images
``img_{time:09d}_{channel name}_{slice:03d}.tif`` (no position in the name), version 2
``img_channel000_position000_time000000000_z000.tif``. Every plane is checked against
tifffile's decoding of the file that should hold it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pims
import pytest
import tifffile

import pims_videoutils
from pims_videoutils import StackReadError, TiffSequenceND, TiffStackND
from pims_videoutils._open import opens_as_sequence

CHANNELS = ("DAPI", "GFP")


def image_name(t: int, z: int, c: int, p: int, version: int) -> str:
    if version == 1:
        return f"img_{t:09d}_{CHANNELS[c]}_{z:03d}.tif"
    return f"img_channel{c:03d}_position{p:03d}_time{t:09d}_z{z:03d}.tif"


def write_acquisition(root: Path, positions: int, frames: int = 3, slices: int = 2,
                      version: int = 1, labels=None) -> Path:
    """Write an acquisition of random 5 x 6 uint16 images; return its folder."""
    rng = np.random.default_rng(positions * 10 + version)
    labels = labels or [f"Pos{p}" for p in range(positions)]
    for p, label in enumerate(labels):
        folder = root / label if positions > 1 else root
        folder.mkdir(parents=True, exist_ok=True)
        summary = {"Positions": positions, "Frames": frames, "Slices": slices,
                   "Channels": len(CHANNELS), "ChNames": list(CHANNELS[::-1]), "Prefix": "acq",
                   "Interval_ms": 250.0, "z-step_um": 0.5, "PixelSize_um": 0.108,
                   "MicroManagerVersion": "1.4.23"}
        (folder / "metadata.txt").write_text(json.dumps({"Summary": summary}, indent=1))
        for t in range(frames):
            for z in range(slices):
                for c in range(len(CHANNELS)):
                    image = {"Frame": t, "Slice": z, "ChannelIndex": c, "PositionIndex": p,
                             "PositionName": label,
                             "ElapsedTime-ms": 1000.0 * p + 250.0 * t + 7.5 * (2 * z + c)}
                    tifffile.imwrite(
                        folder / image_name(t, z, c, p, version),
                        rng.integers(0, 60000, (5, 6), dtype=np.uint16),
                        extratags=[(51123, "s", 0, json.dumps(image), True)],
                    )
    return root


def expected_plane(root: Path, label: str | None, t: int, z: int, c: int, p: int,
                   version: int = 1) -> np.ndarray:
    folder = root / label if label else root
    return tifffile.imread(folder / image_name(t, z, c, p, version))


def assert_every_plane(reader, root: Path, labels, frames=3, slices=2, version=1):
    assert reader.sizes == {"p": len(labels), "t": frames, "z": slices, "c": 2, "y": 5, "x": 6}
    for p, label in enumerate(labels):
        for t in range(frames):
            for z in range(slices):
                for c in range(2):
                    np.testing.assert_array_equal(
                        reader.get_plane(p=p, t=t, z=z, c=c),
                        expected_plane(root, label, t, z, c, p, version))


@pytest.fixture
def acquisition(tmp_path):
    return write_acquisition(tmp_path / "acq_1", positions=3)


def test_acquisition_folder_has_positions_from_its_sub_folders(acquisition):
    with TiffSequenceND(acquisition) as reader:
        assert reader.metadata["file_axes"]["p"] == ["Pos0", "Pos1", "Pos2"]
        assert reader.metadata["file_pattern"] == "micromanager1.4"
        assert_every_plane(reader, acquisition, ["Pos0", "Pos1", "Pos2"])
        reader.default_coords.update(p=2, c=1, z=1)
        np.testing.assert_array_equal(reader[2], expected_plane(acquisition, "Pos2", 2, 1, 1, 2))


def test_any_one_image_opens_the_whole_acquisition(acquisition):
    image = acquisition / "Pos1" / image_name(2, 1, 0, 1, version=1)
    with TiffSequenceND(image) as reader:
        assert_every_plane(reader, acquisition, ["Pos0", "Pos1", "Pos2"])
        # frames show the image's position (they showed Pos0), at t, z, c 0 as by default
        assert reader.default_coords["p"] == 1
        np.testing.assert_array_equal(reader[2], expected_plane(acquisition, "Pos1", 2, 0, 0, 1))


@pytest.mark.parametrize("opener", [pims.open, pims_videoutils.open])
def test_open_reads_one_image_alone_as_pims_does(acquisition, opener):
    # dask-image's imread of a glob of images reads each file's frame 0 through pims.open
    image = acquisition / "Pos1" / image_name(2, 1, 0, 1, version=1)
    assert not opens_as_sequence(str(image))
    with opener(str(image)) as reader:
        assert isinstance(reader, TiffStackND) and len(reader) == 1
        np.testing.assert_array_equal(reader[0], tifffile.imread(image))


@pytest.mark.parametrize("positions", [1, 3])
def test_one_image_opens_its_acquisition_not_other_tiffs_beside_it(tmp_path, positions):
    root = write_acquisition(tmp_path / "acq", positions=positions)
    labels = [f"Pos{p}" for p in range(positions)] if positions > 1 else [None]
    # results saved in the acquisition folder: a projection, an analysis folder
    tifffile.imwrite(root / "MAX_projection.tif", np.zeros((5, 6), "u2"))
    (root / "analysis").mkdir()
    tifffile.imwrite(root / "analysis" / "mask.tif", np.zeros((5, 6), "u2"))
    folder = root / labels[-1] if labels[-1] else root
    image = folder / image_name(1, 0, 1, positions - 1, version=1)
    with TiffSequenceND(image) as reader:
        for p, label in enumerate(labels):
            for t, z, c in np.ndindex(3, 2, 2):
                coords = {"t": t, "z": z, "c": c} | ({"p": p} if positions > 1 else {})
                np.testing.assert_array_equal(reader.get_plane(**coords),
                                              expected_plane(root, label, t, z, c, p))


def test_acquisition_metadata_from_its_summary(acquisition, tmp_path):
    with TiffSequenceND(acquisition) as reader:
        meta = reader.metadata
        assert (meta["frame_interval"], meta["z_step"], meta["pixel_size_x"]) == (0.25, 0.5, 0.108)
        assert reader.frame_rate == 4.0 and meta["software"] == "Micro-Manager 1.4.23"
        # 1.4 names the channels in the file names: the names follow the c axis, not ChNames
        assert meta["channel_names"] == ["DAPI", "GFP"]
    version2 = write_acquisition(tmp_path / "v2", positions=2, version=2)
    with TiffSequenceND(version2) as reader:
        assert reader.metadata["channel_names"] == ["GFP", "DAPI"]  # ChNames: by channel index
    (acquisition / "Pos0" / "metadata.txt").write_text('{"Summary": {"Interval_ms": "soon"')
    with TiffSequenceND(acquisition) as reader:  # a summary that cannot be read: unknown
        assert reader.metadata["frame_interval"] is None and reader.frame_rate is None


def test_images_open_without_tifffiles_header_warnings_and_keep_their_pixel_size(
        tmp_path, caplog):
    """Image files carry Micro-Manager's per-image tag but not its file header: tifffile's
    search for the header logged four failures per open; the image's own pixel size stays."""
    image = tmp_path / "img_000000000_DAPI_000.tif"
    tifffile.imwrite(image, np.arange(30, dtype=np.uint16).reshape(5, 6),
                     extratags=[(51123, "s", 0, json.dumps({"PixelSizeUm": 0.065}), True)])
    with tifffile.TiffFile(image) as tif:
        assert tif.is_micromanager
    caplog.clear()
    with caplog.at_level("WARNING", logger="tifffile"), TiffStackND(image) as reader:
        meta = reader.metadata
        np.testing.assert_array_equal(reader[0], tifffile.imread(image))
    assert caplog.records == []
    assert meta["pixel_size_x"] == 0.065 and "micromanager_metadata" not in meta
    with caplog.at_level("WARNING", logger="tifffile"), tifffile.TiffFile(image) as tif:
        tif.micromanager_metadata  # noqa: B018 (the test can see the warnings it guards against)
    assert any("read_micromanager_metadata" in r.getMessage() for r in caplog.records)


def test_opening_an_acquisition_logs_nothing(acquisition, caplog):
    with caplog.at_level("WARNING"), TiffSequenceND(acquisition / "Pos0" / image_name(
            0, 0, 0, 0, version=1)) as reader:
        assert reader.sizes["p"] == 3
    assert caplog.records == []


def test_the_image_alone_with_tiffstacknd(acquisition):
    image = acquisition / "Pos1" / image_name(2, 1, 0, 1, version=1)
    with TiffStackND(image) as reader:
        assert len(reader) == 1
        np.testing.assert_array_equal(reader[0], tifffile.imread(image))


@pytest.mark.parametrize("imagej", [False, True])
def test_one_image_file_carries_its_elapsed_time(tmp_path, imagej):
    """An image of a "separate image files" acquisition records when it was taken
    (ElapsedTime-ms in its tag 51123): its frame carries that ``timestamp``, as the planes
    of Micro-Manager's stacks do (single mapped pages had none)."""
    image = tmp_path / "img_000000002_DAPI_000.tif"
    tifffile.imwrite(image, np.arange(30, dtype=np.uint16).reshape(5, 6), imagej=imagej,
                     extratags=[(51123, "s", 0, json.dumps({"ElapsedTime-ms": 1234.5}), True)])
    with tifffile.TiffFile(image) as tif:
        seconds = tif.pages[0].tags[51123].value["ElapsedTime-ms"] / 1000
    with TiffStackND(image) as reader:
        assert reader.storage == "mapped"
        assert reader[0].metadata["timestamp"] == seconds
        assert reader.get_plane().metadata["timestamp"] == seconds


def _move_image_metadata_after_pixels(image: Path, added_ms: float) -> None:
    """Store the image's tag 51123 value at the end of the file, ``added_ms`` later (the
    old value stays where it was, unreferenced), as a writer may place it after the pixels."""
    with tifffile.TiffFile(image) as tif:
        tag = tif.pages[0].tags[51123]
        assert tif.byteorder == "<" and not tif.is_bigtiff
        entry, metadata = tag.offset, dict(tag.value)
    metadata["ElapsedTime-ms"] += added_ms
    blob = json.dumps(metadata).encode() + b"\0"
    data = bytearray(image.read_bytes())
    end = len(data)
    data[entry + 4 : entry + 12] = np.array([len(blob), end], "<u4").tobytes()
    image.write_bytes(bytes(data) + blob)


def _elapsed_seconds(image: Path) -> float:
    with tifffile.TiffFile(image) as tif:
        return tif.pages[0].tags[51123].value["ElapsedTime-ms"] / 1000


def test_every_image_of_a_sequence_carries_its_own_elapsed_time(tmp_path):
    """The sequence's planes carry each image's own ElapsedTime-ms (seconds) as
    ``timestamp``, as TiffStackND of that image does: planes read with one preadv each (the
    first file's structure checked) had none."""
    root = write_acquisition(tmp_path / "acq", positions=2)
    for image in sorted((root / "Pos1").glob("*.tif"))[::2]:
        _move_image_metadata_after_pixels(image, added_ms=0.125)
    with TiffSequenceND(root) as reader:
        for p, label in enumerate(["Pos0", "Pos1"]):
            for t, z, c in np.ndindex(3, 2, 2):
                image = root / label / image_name(t, z, c, p, version=1)
                expected = _elapsed_seconds(image)
                with TiffStackND(image) as alone:
                    assert alone.get_plane().metadata["timestamp"] == expected
                plane = reader.get_plane(p=p, t=t, z=z, c=c)
                np.testing.assert_array_equal(plane, tifffile.imread(image))
                assert plane.metadata["timestamp"] == expected
        reader.default_coords.update(p=1, z=1, c=0)
        assert [frame.metadata["timestamp"] for frame in reader] == [
            _elapsed_seconds(root / "Pos1" / image_name(t, 1, 0, 1, version=1))
            for t in range(3)]


def test_positions_in_natural_order_and_other_folders_ignored(tmp_path):
    labels = ["Pos2", "Pos10", "Pos1"]
    root = write_acquisition(tmp_path / "acq", positions=3, labels=labels)
    (root / "analysis").mkdir()  # results saved beside the positions: not a position
    tifffile.imwrite(root / "analysis" / "img_000000000_DAPI_000.tif", np.zeros((5, 6), "u2"))
    with TiffSequenceND(root) as reader:
        assert reader.metadata["file_axes"]["p"] == ["Pos1", "Pos2", "Pos10"]
        assert_every_plane(reader, root, ["Pos1", "Pos2", "Pos10"])


def test_position_folder_without_its_metadata_is_not_dropped(acquisition):
    (acquisition / "Pos1" / "metadata.txt").unlink()  # lost in a copy
    summary = json.loads((acquisition / "Pos0" / "metadata.txt").read_text())["Summary"]
    assert summary["Positions"] == 3
    with TiffSequenceND(acquisition) as reader:
        assert reader.metadata["file_axes"]["p"] == ["Pos0", "Pos1", "Pos2"]
        assert_every_plane(reader, acquisition, ["Pos0", "Pos1", "Pos2"])
    (acquisition / "analysis").mkdir()  # now which folder is the third position?
    tifffile.imwrite(acquisition / "analysis" / "img_000000000_DAPI_000.tif",
                     np.zeros((5, 6), "u2"))
    with pytest.raises(StackReadError, match=r"3 positions .* only 2 of .*Pos1"):
        TiffSequenceND(acquisition)


def test_micromanager2_names_number_the_positions_themselves(tmp_path):
    root = write_acquisition(tmp_path / "acq", positions=2, version=2)
    with TiffSequenceND(root / "Pos1" / image_name(0, 0, 0, 1, version=2)) as reader:
        assert reader.metadata["file_axes"]["p"] == [0, 1]
        assert_every_plane(reader, root, ["Pos0", "Pos1"], version=2)


def test_single_position_acquisition_from_one_image(tmp_path):
    root = write_acquisition(tmp_path / "acq", positions=1)
    image = root / image_name(1, 0, 1, 0, version=1)
    with TiffSequenceND(image) as reader:
        assert reader.sizes == {"t": 3, "z": 2, "c": 2, "y": 5, "x": 6}
        np.testing.assert_array_equal(reader.get_plane(t=1, z=0, c=1), tifffile.imread(image))


def test_image_name_without_metadata_is_one_file(tmp_path):
    root = write_acquisition(tmp_path / "acq", positions=1)
    (root / "metadata.txt").unlink()
    image = root / image_name(1, 0, 1, 0, version=1)
    assert not opens_as_sequence(str(image))
    with pims.open(str(image)) as reader:
        assert isinstance(reader, TiffStackND) and len(reader) == 1


def test_missing_image_of_one_position(acquisition):
    gone = acquisition / "Pos1" / image_name(2, 0, 1, 1, version=1)
    gone.unlink()
    with pytest.raises(StackReadError, match="no file for"):
        TiffSequenceND(acquisition)
    with TiffSequenceND(acquisition, fill_missing=7) as reader:
        assert reader.metadata["missing_files"] == 1
        assert (reader.get_plane(p=1, t=2, z=0, c=1) == 7).all()
        np.testing.assert_array_equal(reader.get_plane(p=1, t=2, z=0, c=0),
                                      expected_plane(acquisition, "Pos1", 2, 0, 0, 1))


def test_opened_from_an_image_pickles_and_reopens(acquisition):
    image = acquisition / "Pos2" / image_name(0, 0, 0, 2, version=1)
    with TiffSequenceND(image) as reader:
        again = pickle.loads(pickle.dumps(reader))
    with again:
        assert_every_plane(again, acquisition, ["Pos0", "Pos1", "Pos2"])


def test_plain_folder_of_well_folders(tmp_path):
    rng = np.random.default_rng(3)
    planes = {}
    for well in ("B1", "A10", "A2"):
        (tmp_path / well).mkdir()
        for t in range(4):
            planes[well, t] = rng.integers(0, 255, (3, 4), dtype=np.uint8)
            tifffile.imwrite(tmp_path / well / f"frame{t:03d}.tif", planes[well, t])
    (tmp_path / "notes").mkdir()  # no TIFF: not a position
    assert opens_as_sequence(str(tmp_path))
    with pims.open(str(tmp_path)) as reader:
        assert reader.sizes == {"p": 3, "t": 4, "y": 3, "x": 4}
        assert reader.metadata["file_axes"]["p"] == ["A2", "A10", "B1"]
        for p, well in enumerate(("A2", "A10", "B1")):
            for t in range(4):
                np.testing.assert_array_equal(reader.get_plane(p=p, t=t), planes[well, t])


@pytest.mark.parametrize("opener", [TiffSequenceND, pims.open, pims_videoutils.open])
def test_acquisition_folder_with_a_tiff_of_its_own_is_the_acquisition(acquisition, opener):
    # a projection saved in the acquisition folder, beside Pos0/ Pos1/ Pos2/
    tifffile.imwrite(acquisition / "MAX_acq_1.tif", np.zeros((5, 6), np.uint16))
    with opener(str(acquisition)) as reader:
        assert isinstance(reader, TiffSequenceND)
        assert reader.metadata["file_axes"]["p"] == ["Pos0", "Pos1", "Pos2"]
        assert_every_plane(reader, acquisition, ["Pos0", "Pos1", "Pos2"])


def test_acquisition_folder_reads_only_the_images_of_its_positions(acquisition):
    # a projection saved in a position folder is not an image of the acquisition (as when
    # opened from one of its images)
    tifffile.imwrite(acquisition / "Pos1" / "MAX_Pos1.tif", np.zeros((5, 6), np.uint16))
    with TiffSequenceND(acquisition) as reader:
        assert reader.metadata["file_axes"]["p"] == ["Pos0", "Pos1", "Pos2"]
        assert_every_plane(reader, acquisition, ["Pos0", "Pos1", "Pos2"])


def test_folder_with_its_own_tiffs_ignores_sub_folders(tmp_path):
    tifffile.imwrite(tmp_path / "a1.tif", np.ones((3, 4), np.uint8))
    tifffile.imwrite(tmp_path / "a2.tif", np.full((3, 4), 2, np.uint8))
    (tmp_path / "old").mkdir()
    tifffile.imwrite(tmp_path / "old" / "a1.tif", np.zeros((3, 4), np.uint8))
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"t": 2, "y": 3, "x": 4}
        assert reader.files == (str(tmp_path / "a1.tif"), str(tmp_path / "a2.tif"))


def test_summary_longer_than_the_first_bytes_read_is_read_whole(acquisition):
    """The summary is parsed from the first 64 KiB of ``metadata.txt`` (the file lists every
    image after it: megabytes), and from up to 1 MiB when it does not end within them."""
    for position in ("Pos0", "Pos1", "Pos2"):
        path = acquisition / position / "metadata.txt"
        summary = json.loads(path.read_text())["Summary"]
        summary["Comment"] = "x" * 100_000
        images = {f"FrameKey-{t}-0-0": {"pad": "y" * 2000} for t in range(600)}  # 1.2 MB
        path.write_text(json.dumps({"Summary": summary, **images}, indent=1))
    with TiffSequenceND(acquisition) as reader:
        meta = reader.metadata
        assert (meta["frame_interval"], meta["z_step"], meta["pixel_size_x"]) == (0.25, 0.5, 0.108)
        assert_every_plane(reader, acquisition, ["Pos0", "Pos1", "Pos2"])
