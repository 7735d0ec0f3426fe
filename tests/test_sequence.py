"""Tests of TiffSequenceND against tifffile's own decoding of each file."""

from __future__ import annotations

import gc
import glob
import json
import os
import pickle
import random
import re
import shutil
import struct
import threading
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pims
import pytest
import tifffile
from conftest import REAL_DATA
from pims.tests.test_common import _image_series

from pims_videoutils import ReaderClosedError, StackNotFoundError, StackReadError
from pims_videoutils.readers import TiffStackND
from pims_videoutils.sequence import TiffSequenceND, _list_files


def _write(path: Path, data: np.ndarray, **kwargs) -> Path:
    tifffile.imwrite(path, data, **kwargs)
    return path


def _write_ome_images(path: Path, planes) -> None:
    """Write an OME-TIFF file holding each plane as an image of its own (series, positions)."""
    with tifffile.TiffWriter(path, ome=True) as writer:
        for plane in planes:
            writer.write(plane)


def _planes(seed: int, count: int, shape=(6, 7), dtype=np.uint16) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 60000, shape).astype(dtype) for _ in range(count)]


def _open_fds_under(folder: Path) -> int:
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        count += target.startswith(str(folder))
    return count


@pytest.fixture
def numbered(tmp_path):
    """Twelve single-plane files f1.tif ... f12.tif (natural order differs from sorted)."""
    for i, plane in enumerate(_planes(1, 12), start=1):
        _write(tmp_path / f"f{i}.tif", plane)
    return tmp_path


# --- the shared real folders -----------------------------------------------------------------


def test_banana_folder(real_data):
    folder = real_data / "sequences" / "banana"
    files = sorted(folder.glob("banana*.tif"))
    with TiffSequenceND(folder) as reader:
        assert reader.sizes == {"t": 25, "y": 384, "x": 384}
        assert reader.iter_axes == ["t"] and reader.bundle_axes == ["y", "x"]
        assert len(reader) == 25
        assert reader.metadata["file_axes"] == {"t": list(range(2, 27))}
        assert reader.pixel_type == np.dtype("uint16")
        for i, path in enumerate(files):
            frame = reader[i]
            expected = tifffile.imread(path)
            assert frame.dtype.isnative
            np.testing.assert_array_equal(frame, expected)
            assert frame.frame_no == i


class TestBananaWithPimsMixin(_image_series, unittest.TestCase):
    """pims's own reader checks (slicing, iteration, pipelines, frame_no) on the banana folder."""

    def setUp(self):
        folder = REAL_DATA / "sequences" / "banana"
        if not folder.is_dir():
            self.skipTest(f"real data folder {folder} is absent")
        self.v = TiffSequenceND(folder)
        self.expected_shape = (384, 384)
        self.expected_len = 25
        self.frame0 = tifffile.imread(folder / "banana0002.tif")
        self.frame1 = tifffile.imread(folder / "banana0003.tif")


def test_stack_list_folder(real_data):
    folder = real_data / "sequences" / "stack_list"
    with TiffSequenceND(folder) as reader:
        assert reader.sizes == {"t": 4, "z": 5, "y": 172, "x": 165}
        assert reader.iter_axes == ["t"]
        reader.bundle_axes = "zyx"
        for i in range(4):
            np.testing.assert_array_equal(
                reader[i], tifffile.imread(folder / f"Stack-{i + 1}.tif")
            )
        reader.bundle_axes = "yx"
        reader.iter_axes = "tz"
        assert len(reader) == 20
        np.testing.assert_array_equal(reader[7], tifffile.imread(folder / "Stack-2.tif")[2])


# --- sources and order -------------------------------------------------------------------------


def test_natural_order_from_folder_glob_and_list(numbered):
    expected = [tifffile.imread(numbered / f"f{i}.tif") for i in range(1, 13)]
    shuffled = [numbered / f"f{i}.tif" for i in range(1, 13)]
    random.Random(2).shuffle(shuffled)
    for source in (numbered, str(numbered / "f*.tif"), shuffled):
        with TiffSequenceND(source) as reader:
            assert len(reader) == 12
            assert [Path(f).name for f in reader.files] == [f"f{i}.tif" for i in range(1, 13)]
            for i in (0, 1, 9, 11):
                frame = reader[i]
                np.testing.assert_array_equal(frame, expected[i])
                assert type(frame) is pims.Frame and frame.frame_no == i
                assert frame.metadata == {"axes": ["y", "x"], "coords": {"t": i}}
                assert frame[1:3].frame_no == i and frame.flags.writeable


def test_folder_ignores_other_files(numbered):
    (numbered / "notes.txt").write_text("not an image")
    (numbered / ".hidden.tif").write_bytes(b"junk")
    with TiffSequenceND(numbered) as reader:
        assert len(reader.files) == 12


@pytest.mark.parametrize("kind", ["folder", "empty-folder", "glob", "list"])
def test_missing_sources(tmp_path, kind):
    source = {
        "folder": tmp_path / "absent",
        "empty-folder": tmp_path,
        "glob": str(tmp_path / "*.tif"),
        "list": [tmp_path / "absent.tif"],
    }[kind]
    with pytest.raises(StackNotFoundError):
        TiffSequenceND(source)
    with pytest.raises(FileNotFoundError):
        TiffSequenceND(source)


@pytest.mark.parametrize(
    ("source", "named"),
    [
        (lambda folder: bytes(folder), "source .* not bytes"),
        (lambda folder: 5, "source .* not int"),
        (lambda folder: None, "source .* not NoneType"),
        (lambda folder: [bytes(folder / "f1.tif")], r"file .* not bytes \(b'.*f1\.tif'\)"),
        (lambda folder: [folder / "f1.tif", 5], r"file .* not int \(5\)"),
    ],
    ids=["bytes", "int", "None", "list of bytes", "int in a list"],
)
def test_source_of_another_type_is_a_type_error_saying_so(numbered, source, named):
    """These raised TypeErrors of the code inside ("'int' object is not iterable", "a
    bytes-like object is required, not 'str'", "expected str, bytes or os.PathLike object,
    not int" for a bytes folder: its bytes were taken for a list of files)."""
    with pytest.raises(TypeError, match=named):
        TiffSequenceND(source(numbered))


def test_folder_in_a_list_of_files_is_named_as_a_folder(numbered):
    (numbered / "sub").mkdir()
    with pytest.raises(StackReadError, match=r"sub: a folder in the list of files"):
        TiffSequenceND([numbered / "f1.tif", numbered / "sub"])


@pytest.mark.parametrize(
    "pattern",
    ["*.tif", "*1.tif", ".*.tif", "[ab]1.*", "*", "?1.TIF", "sub*/*.tif", "absent/*.tif"],
)
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_glob_lists_what_glob_lists(tmp_path, monkeypatch, pattern, relative):
    for name in ("a1.tif", "b1.TIF", "a2.tif", ".h1.tif", "c1.png", "sub1/a3.tif"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d1.tif").mkdir()
    (tmp_path / "link1.tif").symlink_to(tmp_path / "a1.tif")
    (tmp_path / "broken1.tif").symlink_to(tmp_path / "absent.tif")
    if relative:
        monkeypatch.chdir(tmp_path)
    source = pattern if relative else str(tmp_path / pattern)
    expected = sorted(name for name in glob.glob(source) if os.path.isfile(name))
    if expected:
        assert sorted(_list_files(source)) == expected
    else:
        with pytest.raises(StackNotFoundError, match="no file matches"):
            _list_files(source)


def test_folder_without_tiff_files_says_what_it_holds(tmp_path):
    """As pims_videoutils.open(folder) does: the error said only "holds no .tif or .tiff
    file", not what the folder holds instead (a folder of PNG files, of an empty sub-folder)."""
    for k in range(3):
        (tmp_path / f"frame{k}.png").write_bytes(b"png")
    (tmp_path / "notes.txt").touch()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StackNotFoundError, match=r"holds no \.tif or \.tiff file \(nor do its "
                       r"sub-folders\); it holds 3 \.png files, 1 \.txt file and 1 sub-folder$"):
        TiffSequenceND(tmp_path)
    with pytest.raises(StackNotFoundError, match=r"; it holds nothing$"):
        TiffSequenceND(tmp_path / "empty")


def test_relative_source_reads_after_chdir(numbered, monkeypatch):
    # files are opened on first use: a relative source must still name them after os.chdir
    monkeypatch.chdir(numbered.parent)
    with TiffSequenceND(numbered.name, max_open_files=1) as reader:
        monkeypatch.chdir("/")
        for i in (11, 0, 5):
            expected = tifffile.imread(numbered / f"f{i + 1}.tif")
            np.testing.assert_array_equal(reader[i], expected)
        assert all(os.path.isabs(name) for name in reader.files)


def test_not_a_tiff_first_file(tmp_path):
    (tmp_path / "a1.tif").write_bytes(b"this is not a tiff file at all")
    _write(tmp_path / "a2.tif", _planes(0, 1)[0])
    with pytest.raises(StackReadError, match=r"a1\.tif"):
        TiffSequenceND(tmp_path)


# --- axes from names -----------------------------------------------------------------------------


def test_t_z_c_tokens(tmp_path):
    planes = iter(_planes(3, 4 * 3 * 2))
    truth = {}
    for t in range(4):
        for z in range(3):
            for c in (1, 2):
                path = _write(tmp_path / f"img_t{t:04d}_z{z:03d}_c{c}.tif", next(planes))
                truth[t, z, c - 1] = path
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"t": 4, "z": 3, "c": 2, "y": 6, "x": 7}
        assert reader.iter_axes == ["t"]
        reader.iter_axes = "tzc"
        assert len(reader) == 24
        for i, (t, z, c) in enumerate(sorted(truth)):
            frame = reader[i]
            assert frame.metadata["coords"] == {"t": t, "z": z, "c": c}
            np.testing.assert_array_equal(frame, tifffile.imread(truth[t, z, c]))
        reader.bundle_axes = "czyx"
        reader.iter_axes = "t"
        np.testing.assert_array_equal(
            reader[3][1, 2], tifffile.imread(tmp_path / "img_t0003_z002_c2.tif")
        )


def test_micromanager_positions(tmp_path):
    planes = iter(_planes(4, 2 * 3 * 2))
    for c in range(2):
        for p in range(3):
            for t in range(2):
                name = f"img_channel{c:03d}_position{p:03d}_time{t:09d}_z000.tif"
                _write(tmp_path / name, next(planes))
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"p": 3, "t": 2, "c": 2, "y": 6, "x": 7}
        reader.default_coords["p"] = 2
        reader.default_coords["c"] = 1
        expected = tifffile.imread(tmp_path / "img_channel001_position002_time000000001_z000.tif")
        np.testing.assert_array_equal(reader[1], expected)


def test_position_only_dataset_iterates_positions(tmp_path):
    for p, plane in enumerate(_planes(5, 3)):
        _write(tmp_path / f"well_pos{p}.tif", plane)
    with TiffSequenceND(tmp_path) as reader:
        assert reader.iter_axes == ["p"]
        np.testing.assert_array_equal(reader[2], tifffile.imread(tmp_path / "well_pos2.tif"))


def test_user_regex(tmp_path):
    planes = iter(_planes(6, 4))
    for p in (1, 2):
        for t in (5, 6):
            _write(tmp_path / f"cell{p}-{t}.tif", next(planes))
    with pytest.raises(StackReadError, match="several varying numbers"):
        TiffSequenceND(tmp_path)
    with TiffSequenceND(tmp_path, pattern=r"cell(?P<p>\d+)-(?P<t>\d+)") as reader:
        assert reader.sizes == {"p": 2, "t": 2, "y": 6, "x": 7}
        reader.default_coords["p"] = 1
        np.testing.assert_array_equal(reader[0], tifffile.imread(tmp_path / "cell2-5.tif"))
    with pytest.raises(ValueError, match="named groups"):
        TiffSequenceND(tmp_path, pattern=r"cell(\d+)")


# --- gaps, mixed layouts -------------------------------------------------------------------------


def test_gap_is_an_error_by_default_and_filled_on_request(tmp_path):
    planes = _planes(7, 5)
    for t, plane in zip((1, 2, 3, 5, 6), planes, strict=True):
        _write(tmp_path / f"frame_{t}.tif", plane)
    with pytest.raises(StackReadError, match="gap"):
        TiffSequenceND(tmp_path)
    with TiffSequenceND(tmp_path, fill_missing=7) as reader:
        assert len(reader) == 6
        assert reader.metadata["missing_files"] == 1
        np.testing.assert_array_equal(reader[3], np.full((6, 7), 7, np.uint16))
        assert reader[3].dtype == np.uint16
        np.testing.assert_array_equal(reader[4], tifffile.imread(tmp_path / "frame_5.tif"))
    with pytest.raises(ValueError, match="fill_missing"):
        TiffSequenceND(tmp_path, fill_missing=-1)


def test_missing_combination_filled(tmp_path):
    for name, plane in zip(("t1_c1", "t2_c1", "t1_c2"), _planes(8, 3), strict=True):
        _write(tmp_path / f"{name}.tif", plane)
    with pytest.raises(StackReadError, match="no file for t=2, c=2"):
        TiffSequenceND(tmp_path)
    with TiffSequenceND(tmp_path, fill_missing=0) as reader:
        reader.iter_axes = "tc"
        assert not reader[3].any()
        np.testing.assert_array_equal(reader[2], tifffile.imread(tmp_path / "t2_c1.tif"))


@pytest.mark.parametrize(
    ("odd", "message"),
    [
        (np.zeros((6, 8), np.uint16), r"planes yx=\(6, 8\) instead of yx=\(6, 7\)"),
        (np.zeros((6, 7), np.uint8), "pixel type uint8 instead of uint16"),
        (np.zeros((2, 6, 7), np.uint16), "axes"),
        (np.zeros((6, 7, 3), np.uint16), "planes yxs"),
    ],
    ids=["shape", "dtype", "stack", "rgb"],
)
def test_mixed_layouts_raise_naming_the_file(numbered, odd, message):
    _write(
        numbered / "f7.tif",
        odd,
        photometric="rgb" if odd.ndim == 3 and odd.shape[-1] == 3 else None,
    )
    with TiffSequenceND(numbered) as reader:
        np.testing.assert_array_equal(reader[5], tifffile.imread(numbered / "f6.tif"))
        with pytest.raises(StackReadError, match=message) as info:
            reader.get_frame(6)
        assert info.value.path.endswith("f7.tif")
        assert "f1.tif" in str(info.value)
        np.testing.assert_array_equal(reader[7], tifffile.imread(numbered / "f8.tif"))


@pytest.mark.parametrize(
    "content", [b"not a tiff file", b"II*\x00garbage"], ids=["not-tiff", "bad-ifd-pointer"]
)
def test_corrupt_later_file_raises_naming_it(numbered, content):
    (numbered / "f3.tif").write_bytes(content)
    with TiffSequenceND(numbered) as reader:
        with pytest.raises(StackReadError) as info:
            reader.get_frame(2)
        assert info.value.path.endswith("f3.tif")


# --- each file a stack ---------------------------------------------------------------------------


def test_each_file_a_z_stack_and_rgb(tmp_path):
    rng = np.random.default_rng(9)
    for t in range(3):
        _write(
            tmp_path / f"vol_{t}.tif",
            rng.integers(0, 255, (4, 5, 6), np.uint8),
            imagej=True,
            metadata={"axes": "ZYX"},
        )
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"t": 3, "z": 4, "y": 5, "x": 6}
        reader.bundle_axes = "zyx"
        np.testing.assert_array_equal(reader[2], tifffile.imread(tmp_path / "vol_2.tif"))
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for t in range(2):
        _write(rgb / f"c{t}.tif", rng.integers(0, 255, (5, 6, 3), np.uint8), photometric="rgb")
    with TiffSequenceND(rgb) as reader:
        assert reader.bundle_axes == ["y", "x", "s"]
        np.testing.assert_array_equal(reader[1], tifffile.imread(rgb / "c1.tif"))


def test_name_axis_clashing_with_file_axis(tmp_path):
    for i in range(2):
        _write(
            tmp_path / f"movie_t{i}.tif",
            np.zeros((3, 4, 5), np.uint8),
            imagej=True,
            metadata={"axes": "TYX"},
        )
    with pytest.raises(StackReadError, match="each file also has a 't' axis"):
        TiffSequenceND(tmp_path)  # the names say t: not overruled
    with TiffSequenceND(tmp_path, pattern=r"_t(?P<p>\d+)$") as reader:
        assert reader.sizes == {"p": 2, "t": 3, "y": 4, "x": 5}


@pytest.mark.parametrize("kind", ["ome", "imagej"])
def test_numbered_time_lapse_stacks_are_numbered_along_p(tmp_path, kind):
    # run1.ome.tif ... run3.ome.tif, each a time lapse: the plain numbering cannot be t
    stacks = {}
    for run in (1, 2, 3):
        stacks[run] = np.random.default_rng(run).integers(0, 255, (4, 5, 6), np.uint8)
        name = f"run{run}.ome.tif" if kind == "ome" else f"run{run}.tif"
        _write(tmp_path / name, stacks[run], metadata={"axes": "TYX"}, **{kind: True})
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"p": 3, "t": 4, "y": 5, "x": 6}
        assert reader.metadata["file_axes"] == {"p": [1, 2, 3]}
        assert reader.iter_axes == ["t"]
        for p, run in enumerate((1, 2, 3)):
            for t in range(4):
                np.testing.assert_array_equal(reader.get_plane(p=p, t=t), stacks[run][t])


def test_big_endian_files_read_native(tmp_path):
    planes = _planes(10, 3)
    for i, plane in enumerate(planes):
        _write(tmp_path / f"be{i}.tif", plane, byteorder=">")
    with TiffSequenceND(tmp_path) as reader:
        assert reader.pixel_type.isnative
        for i, plane in enumerate(planes):
            frame = reader[i]
            assert frame.flags.aligned and frame.flags.writeable
            np.testing.assert_array_equal(frame, plane)


# --- resources: LRU, threads, pickling, closing --------------------------------------------------


@pytest.fixture
def stacks(tmp_path):
    """Twelve two-plane ZYX files vol1.tif ... vol12.tif (each file kept open while used)."""
    rng = np.random.default_rng(12)
    for i in range(1, 13):
        data = rng.integers(0, 60000, (2, 6, 7), np.uint16)
        _write(tmp_path / f"vol{i}.tif", data, imagej=True, metadata={"axes": "ZYX"})
    return tmp_path


def test_lru_bound_is_honoured(stacks):
    with TiffSequenceND(stacks, max_open_files=3) as reader:
        assert reader.sizes == {"t": 12, "z": 2, "y": 6, "x": 7}
        assert reader.open_file_count() == 1
        for i in range(12):
            reader.get_frame(i)
            assert reader.open_file_count() <= 3
            assert _open_fds_under(stacks) <= 3
        assert reader.open_file_count() == 3
    assert _open_fds_under(stacks) == 0
    with pytest.raises(ValueError, match="max_open_files"):
        TiffSequenceND(stacks, max_open_files=0)


def test_single_plane_files_are_not_kept_open(numbered):
    with TiffSequenceND(numbered, max_open_files=3) as reader:
        for i in range(12):
            reader.get_frame(i)
        assert _open_fds_under(numbered) <= 1


@pytest.mark.parametrize("kind", ["numbered", "stacks"])
def test_threads_share_a_small_cache(request, kind):
    folder = request.getfixturevalue(kind)
    with TiffSequenceND(folder, max_open_files=2) as reader:
        reader.iter_axes = [a for a in reader.sizes if a not in "yx"]
        expected = [
            plane
            for path in reader.files
            for plane in tifffile.imread(path).reshape(-1, *reader.frame_shape)
        ]
        assert len(reader) == len(expected)
    with TiffSequenceND(folder, max_open_files=2) as reader:
        reader.iter_axes = [a for a in reader.sizes if a not in "yx"]
        errors = _read_from_threads(reader, expected, n_threads=4, reads=300)
        assert reader.open_file_count() <= 2
    assert errors == []


def test_pickle_round_trip_keeps_source_options_and_axes(tmp_path):
    for t in range(3):
        for c in range(2):
            _write(tmp_path / f"s_t{t}_c{c}.tif", _planes(t * 2 + c, 1)[0])
    with TiffSequenceND(str(tmp_path / "s_*.tif"), max_open_files=5) as reader:
        reader.iter_axes = "c"
        reader.default_coords["t"] = 2
        data = pickle.dumps(reader)
        assert len(data) < 2000
        with pickle.loads(data) as clone:
            assert clone.sizes == reader.sizes
            assert clone.iter_axes == ["c"]
            assert clone._options == reader._options
            for i in range(2):
                np.testing.assert_array_equal(clone[i], reader[i])
                np.testing.assert_array_equal(
                    clone[i], tifffile.imread(tmp_path / f"s_t2_c{i}.tif")
                )


def test_closed_reader_does_not_pickle(tmp_path, numbered):
    """Unpickling re-lists and re-opens the files: a closed reader came back open."""
    ome = tmp_path / "positions" / "two.ome.tif"  # (a dataset: positions in one file)
    ome.parent.mkdir()
    _write_ome_images(ome, _planes(0, 2))
    for source in (numbered, ome):
        reader = TiffSequenceND(source)
        reader.close()
        with pytest.raises(ReaderClosedError, match="closed reader cannot be pickled"):
            pickle.dumps(reader)


def _pickled_folder_reader(folder, times: int, default_t: int) -> bytes:
    """Write ``times`` x 2 channels of files, pickle a reader of them iterating over ``c``
    at ``t = default_t``."""
    for t in range(times):
        for c in range(2):
            _write(folder / f"img_t{t}_c{c}.tif", _planes(t * 2 + c, 1)[0])
    with TiffSequenceND(folder) as reader:
        reader.iter_axes = "c"
        reader.default_coords["t"] = default_t
        return pickle.dumps(reader)


def test_unpickled_reader_of_files_that_lost_an_axis(tmp_path):
    """An axis gone from a folder since its reader was pickled (the files of the second
    channel deleted): pims's "axes ['c'] do not exist", naming no folder, before."""
    blob = _pickled_folder_reader(tmp_path, times=2, default_t=1)
    for t in range(2):
        (tmp_path / f"img_t{t}_c1.tif").unlink()
    with pytest.raises(StackReadError, match="changed since the reader was pickled: no axis c"):
        pickle.loads(blob)


def test_unpickled_reader_whose_default_coordinate_no_longer_fits(tmp_path):
    """The folder shrank since the reader was pickled (time points deleted): its default
    coordinate t=2 failed only when a frame was read, with an IndexError naming no folder."""
    blob = _pickled_folder_reader(tmp_path, times=3, default_t=2)
    for c in range(2):
        (tmp_path / f"img_t2_c{c}.tif").unlink()
    with pytest.raises(StackReadError, match=re.escape(
            f"{tmp_path}: changed since the reader was pickled: its default coordinate t=2 is "
            "beyond the 2 coordinates of t now")):
        pickle.loads(blob)


def test_source_through_a_link_then_up_is_the_folder_the_system_opens(tmp_path, monkeypatch):
    """``os.path.abspath`` drops ``..`` by the letters: after a link to a folder,
    ``link/../data`` was read as the ``data`` beside the link, not beside its target (other
    files), also when pickled."""
    for folder in ("real/sub", "real/data", "data"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "sub", target_is_directory=True)
    for t, plane in enumerate(_planes(1, 2)):
        _write(tmp_path / "real" / "data" / f"img_t{t}.tif", plane)
    _write(tmp_path / "data" / "img_t0.tif", _planes(2, 1)[0])
    monkeypatch.chdir(tmp_path)
    folder = os.path.join("link", os.pardir, "data")
    names = [os.path.join(folder, f"img_t{t}.tif") for t in range(2)]
    for source in (folder, os.path.join(folder, "img_t*.tif"), names):
        with TiffSequenceND(source) as reader, pickle.loads(pickle.dumps(reader)) as clone:
            for opened in (reader, clone):
                assert len(opened) == 2
                for t, name in enumerate(names):
                    np.testing.assert_array_equal(opened[t], tifffile.imread(name))


def test_closed_reader(numbered):
    reader = TiffSequenceND(numbered)
    reader.get_frame(3)
    reader.close()
    reader.close()
    assert reader.closed
    assert reader.open_file_count() == 0
    with pytest.raises(ReaderClosedError, match=re.escape(f"{numbered}: reader is closed")):
        reader.get_frame(0)
    with pytest.raises(ValueError):
        reader.get_frame(5)


class _ClosedBetweenReads(TiffSequenceND):
    """A reader that another thread closes right after the next read of its open files."""

    close_after_next_read = False

    @property
    def _files(self):
        files = self._held_files
        if self.close_after_next_read:
            self.close_after_next_read = False
            self._held_files = None  # (as close() sets it; the files are closed by the test)
        return files

    @_files.setter
    def _files(self, files):
        self._held_files = files


def test_open_file_count_while_another_thread_closes(numbered):
    """open_file_count read the open files twice: a close() between the reads gave
    "'NoneType' object has no attribute 'open_count'"."""
    reader = _ClosedBetweenReads(numbered)
    files = reader._held_files
    try:
        reader.close_after_next_read = True
        assert reader.open_file_count() == 1  # (the first file, open when it was counted)
        assert reader.closed
    finally:
        files.close()


def test_closed_dataset_names_itself(tmp_path):
    """Reading a closed sequence said "I/O operation on a closed TiffSequenceND": which one?"""
    path = tmp_path / "two.ome.tif"  # (a dataset: positions in one file)
    _write_ome_images(path, _planes(0, 2))
    reader = TiffSequenceND(path)
    reader.close()
    with pytest.raises(ReaderClosedError, match=re.escape(f"{path}: reader is closed")):
        reader.get_plane(p=1)


def test_many_files_open_lazily(tmp_path):
    count = 10_000
    data = np.random.default_rng(11).integers(0, 255, (count, 4, 4), np.uint8)
    tifffile.imwrite(tmp_path / "img00000.tif", data[0])
    template = (tmp_path / "img00000.tif").read_bytes()
    head = len(template) - data[0].nbytes  # tifffile writes the pixels last
    for i in range(1, count):  # same structure, other pixels: fast to write
        (tmp_path / f"img{i:05d}.tif").write_bytes(template[:head] + data[i].tobytes())
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "img09999.tif"), data[9999])
    with TiffSequenceND(tmp_path, max_open_files=16) as reader:
        assert len(reader) == count
        assert reader.open_file_count() == 1
        for i in (0, 1, 4999, 9998, 9999):
            np.testing.assert_array_equal(reader[i], data[i])
        assert reader.open_file_count() <= 16


def test_file_with_other_tags_is_verified_in_full(numbered):
    plane = _planes(13, 1)[0]
    _write(numbered / "f4.tif", plane, description="written by another program")
    with TiffSequenceND(numbered) as reader:
        np.testing.assert_array_equal(reader[3], plane)
        np.testing.assert_array_equal(reader[4], tifffile.imread(numbered / "f5.tif"))


def test_per_file_display_range_is_read_through_the_template(tmp_path):
    """ImageJ writes each file's min/max into its description: such files differ from the
    first one only there, so they are verified and read with one preadv (never opened in
    full); a file whose description differs otherwise is opened in full."""
    planes = _planes(14, 6)
    for i, plane in enumerate(planes):
        _write(tmp_path / f"ij{i}.tif", plane, imagej=True,
               metadata={"min": float(plane.min()), "max": float(plane.max())})
    _write(tmp_path / "ij5.tif", planes[5], imagej=True, metadata={"min": 1.0, "spacing": 2.0})
    with TiffSequenceND(tmp_path) as reader:
        kept = reader.open_file_count()  # the first file, opened to learn the layout
        for i in range(5):
            np.testing.assert_array_equal(reader[i], tifffile.imread(tmp_path / f"ij{i}.tif"))
        assert reader.open_file_count() == kept
        np.testing.assert_array_equal(reader[5], planes[5])
        assert reader.open_file_count() == kept + 1


def _write_description_last(path: Path, planes: list[np.ndarray], description: str) -> None:
    """One IFD, then the planes (uint16, contiguous), then the ImageDescription's text."""
    height, width = planes[0].shape
    pixels = b"".join(plane.astype("<u2").tobytes() for plane in planes)
    text = description.encode() + b"\0"
    pixel_offset = 8 + 2 + 10 * 12 + 4
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 1, 16), (259, 3, 1, 1),
               (262, 3, 1, 1), (270, 2, len(text), pixel_offset + len(pixels)),
               (273, 4, 1, pixel_offset), (277, 3, 1, 1), (278, 3, 1, height),
               (279, 4, 1, height * width * 2)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHIHH" if kind == 3 else "<HHII", code, kind, count, value,
                    *((0,) if kind == 3 else ()))
        for code, kind, count, value in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + pixels + text)


def test_file_whose_description_after_the_pixels_differs_is_read_in_full(tmp_path):
    planes = _planes(15, 4, shape=(4, 5))
    one = "ImageJ=1.53t\nimages=1\n"
    _write_description_last(tmp_path / "img1.tif", planes[:1], one)
    _write_description_last(tmp_path / "img2.tif", planes[1:3], f"{one}slices=2\n".replace(
        "images=1", "images=2"))
    _write_description_last(tmp_path / "img3.tif", planes[3:], one)
    expected = [tifffile.imread(tmp_path / f"img{i}.tif") for i in (1, 2, 3)]
    assert [e.shape for e in expected] == [(4, 5), (2, 4, 5), (4, 5)]  # img2 is a stack
    with TiffSequenceND(tmp_path) as reader:
        np.testing.assert_array_equal(reader[0], expected[0])
        with pytest.raises(StackReadError, match=r"img2\.tif: its layout differs .* axes"):
            reader[1]
        np.testing.assert_array_equal(reader[2], expected[2])


def test_truncated_later_file_raises_naming_it(numbered):
    path = numbered / "f5.tif"
    path.write_bytes(path.read_bytes()[:-10])
    with TiffSequenceND(numbered) as reader:
        np.testing.assert_array_equal(reader[3], tifffile.imread(numbered / "f4.tif"))
        with pytest.raises(StackReadError) as info:
            reader.get_frame(4)
        assert info.value.path.endswith("f5.tif")


def test_file_deleted_after_opening(numbered):
    with TiffSequenceND(numbered) as reader:
        (numbered / "f6.tif").unlink()
        with pytest.raises(StackNotFoundError):
            reader.get_frame(5)


# --- datasets spanning files: multi-file OME-TIFF, NDTiff ----------------------------------------


def _write_multifile_ome(folder: Path, data: np.ndarray, run: int = 0, delta_t=None,
                         **kwargs) -> None:
    """Write data (P, T, Y, X) as 2 files per position, each with 2 T planes, all in one OME.

    ``run`` numbers the acquisition: the files' UUIDs differ from run to run. ``delta_t``:
    a function of (position, t) giving each plane's ``DeltaT`` in ms (a ``Plane`` element).
    """
    positions, times, height, width = data.shape
    names = {(p, k): f"pos{p}_part{k}.ome.tif" for p in range(positions) for k in range(2)}
    uuids = {key: f"urn:uuid:00000000-0000-0000-{run:04d}-{i:012d}" for i, key in enumerate(names)}
    half = times // 2
    for key, name in names.items():
        images = []
        for p in range(positions):
            tiffdata = "".join(
                f'<TiffData FirstT="{half * k}" IFD="0" PlaneCount="{half}">'
                f'<UUID FileName="{names[p, k]}">{uuids[p, k]}</UUID></TiffData>'
                for k in range(2)
            )
            planes = "" if delta_t is None else "".join(
                f'<Plane TheZ="0" TheC="0" TheT="{t}" DeltaT="{delta_t(p, t)}" '
                'DeltaTUnit="ms"/>' for t in range(times))
            images.append(
                f'<Image ID="Image:{p}" Name="pos{p}"><Pixels ID="Pixels:{p}" '
                f'DimensionOrder="XYZCT" Type="uint16" SizeX="{width}" SizeY="{height}" '
                f'SizeZ="1" SizeC="1" SizeT="{times}" PhysicalSizeX="0.5" PhysicalSizeY="0.5">'
                f'<Channel ID="Channel:{p}:0" Name="GFP" SamplesPerPixel="1"/>'
                f"{tiffdata}{planes}</Pixels></Image>"
            )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
            f'UUID="{uuids[key]}">{"".join(images)}</OME>'
        )
        p, k = key
        tifffile.imwrite(
            folder / name,
            data[p, half * k : half * (k + 1)],
            description=xml,
            metadata=None,
            **kwargs,
        )


@pytest.fixture
def multifile_ome(tmp_path):
    data = np.random.default_rng(20).integers(0, 60000, (2, 4, 16, 24), np.uint16)
    _write_multifile_ome(tmp_path, data)
    return tmp_path, data


@pytest.mark.parametrize("entry", ["pos1_part1.ome.tif", "pos0_part0.ome.tif", "folder"])
def test_multifile_ome_opens_whole_dataset_from_any_file(multifile_ome, entry):
    folder, data = multifile_ome
    source = folder if entry == "folder" else folder / entry
    with TiffSequenceND(source) as reader:
        assert reader.sizes == {"p": 2, "t": 4, "y": 16, "x": 24}
        assert len(reader.files) == 4
        assert reader.metadata["kind"] == "ome"
        assert reader.metadata["pixel_size_x"] == 0.5
        assert reader.metadata["channel_names"] == ["GFP"]
        reader.iter_axes = "pt"
        for i in range(8):
            np.testing.assert_array_equal(reader[i], data.reshape(-1, 16, 24)[i])
        with tifffile.TiffFile(folder / "pos0_part0.ome.tif") as tif:  # tifffile's own reading
            np.testing.assert_array_equal(tif.series[1].asarray()[3], reader[7])


@pytest.mark.parametrize("entry", ["pos1_part1.ome.tif", "folder"])
def test_multifile_ome_planes_carry_their_delta_t(tmp_path, entry):
    """Each plane of a multi-file OME dataset has the ``timestamp`` of its OME ``Plane``
    (``DeltaT``), as in one OME-TIFF file; they were dropped (no timestamp at all)."""
    data = np.random.default_rng(21).integers(0, 60000, (2, 4, 16, 24), np.uint16)
    _write_multifile_ome(tmp_path, data, delta_t=lambda p, t: 1000 * p + 250 * t + 7)
    with tifffile.TiffFile(tmp_path / "pos0_part0.ome.tif") as tif:  # the file's own XML
        root = ET.fromstring(tif.ome_metadata)
    expected = {}
    for p, image in enumerate(e for e in root if e.tag.endswith("Image")):
        for plane in image.iter():
            if plane.tag.endswith("Plane"):
                assert plane.attrib["DeltaTUnit"] == "ms"
                expected[p, int(plane.attrib["TheT"])] = float(plane.attrib["DeltaT"]) / 1000
    assert len(expected) == 8
    with TiffSequenceND(tmp_path if entry == "folder" else tmp_path / entry) as reader:
        assert reader.sizes == {"p": 2, "t": 4, "y": 16, "x": 24}
        for (p, t), seconds in expected.items():
            plane = reader.get_plane(p=p, t=t)
            np.testing.assert_array_equal(plane, data[p, t])
            assert plane.metadata["timestamp"] == pytest.approx(seconds)


def test_multifile_dataset_series_list_as_tifffile_reads_them(multifile_ome, real_data):
    """``metadata['series']`` of a multi-file dataset lists tifffile's series with the keys
    TiffStackND gives (``levels`` too: it was missing)."""
    folder, _ = multifile_ome
    ndtiff = real_data / "ndtiff" / "ndtiff3.2_multichannel"
    for source, probe in ((folder, folder / "pos0_part0.ome.tif"),
                          (ndtiff, ndtiff / "NDTiff3.2_multichannel_NDTiffStack.tif")):
        with tifffile.TiffFile(probe) as tif:
            expected = [{"index": i, "shape": tuple(s.shape), "axes": s.axes,
                         "dtype": str(s.dtype), "kind": s.kind,
                         "levels": [tuple(level.shape) for level in s.levels]}
                        for i, s in enumerate(tif.series)]
        with TiffSequenceND(source) as reader:
            assert reader.metadata["series"] == expected
    with TiffStackND(probe) as stack:  # the NDTiff dataset is one file: the same series
        assert stack.metadata["series"] == expected


def test_multifile_ome_lru_pickle_and_threads(multifile_ome):
    folder, data = multifile_ome
    flat = data.reshape(-1, 16, 24)
    with TiffSequenceND(folder / "pos0_part0.ome.tif", max_open_files=1) as reader:
        reader.iter_axes = "pt"
        errors = []

        def work(seed):
            for i in random.Random(seed).choices(range(8), k=200):
                if not np.array_equal(reader[i], flat[i]):
                    errors.append(i)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert reader.open_file_count() <= 1
        with pickle.loads(pickle.dumps(reader)) as clone:
            assert clone.iter_axes == ["p", "t"]
            np.testing.assert_array_equal(clone[5], flat[5])


@pytest.mark.parametrize(
    "options", [{"compression": "zlib"}, {"tile": (16, 16)}], ids=["zlib", "tiled"]
)
def test_multifile_ome_decoded_pages(tmp_path, options):
    data = np.random.default_rng(24).integers(0, 60000, (2, 4, 32, 48), np.uint16)
    _write_multifile_ome(tmp_path, data, **options)
    with TiffSequenceND(tmp_path / "pos0_part0.ome.tif", max_open_files=2) as reader:
        assert reader.storage == "decoded"
        assert reader.sizes == {"p": 2, "t": 4, "y": 32, "x": 48}
        reader.iter_axes = "pt"
        with tifffile.TiffFile(tmp_path / "pos1_part1.ome.tif") as tif:
            reference = np.stack([series.asarray() for series in tif.series])
        np.testing.assert_array_equal(reference, data)
        for i in range(8):
            np.testing.assert_array_equal(reader[i], reference.reshape(-1, 32, 48)[i])


def test_multifile_ome_tiffdata_with_a_negative_ifd_is_refused(multifile_ome):
    """TiffData IFD="-1" in a multi-file dataset: tifffile indexes the file's pages from the
    end (plane 0 = the file's last page), so the planes came out rotated, silently."""
    folder, data = multifile_ome
    for file in folder.iterdir():
        xml = tifffile.tiffcomment(file)
        tifffile.tiffcomment(file, xml.replace('<TiffData FirstT="0" IFD="0"',
                                               '<TiffData FirstT="0" IFD="-1"'))
    with tifffile.TiffFile(folder / "pos0_part0.ome.tif") as tif:  # tifffile's own reading
        np.testing.assert_array_equal(tif.series[0].asarray()[0], data[0, 1])
    with pytest.raises(StackReadError, match="TiffData element gives the negative IFD index -1"):
        TiffSequenceND(folder)


def test_multifile_ome_page_whose_own_tags_give_another_shape(multifile_ome):
    """A page of the second file stores 24 x 16 where its series says 16 x 24 (same bytes):
    it was mapped as 16 x 24, silently, as TiffStackND did before commit fd0fee0. Read page
    by page, it is refused as tifffile's own decoding of the page disagrees with the series."""
    folder, _ = multifile_ome
    path = folder / "pos0_part1.ome.tif"
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[1].tags
        edits = {"ImageWidth": 16, "ImageLength": 24, "RowsPerStrip": 24}
        places = {name: (tags[name].valueoffset, "<H" if tags[name].dtype == 3 else "<I")
                  for name in edits}
    raw = bytearray(path.read_bytes())
    for name, value in edits.items():
        position, kind = places[name]
        struct.pack_into(kind, raw, position, value)
    path.write_bytes(raw)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[1].asarray().shape == (24, 16)
    with pytest.raises(StackReadError, match=r"pos0_part1\.ome\.tif.*\(24, 16\)"):
        with TiffSequenceND(folder) as reader:
            reader.get_plane(p=0, t=3)


def test_multifile_ome_missing_file(multifile_ome):
    folder, data = multifile_ome
    (folder / "pos1_part1.ome.tif").unlink()
    with pytest.raises(StackReadError, match="fill_missing"):
        TiffSequenceND(folder / "pos0_part0.ome.tif")
    with TiffSequenceND(folder / "pos0_part0.ome.tif", fill_missing=0) as reader:
        assert reader.metadata["missing_files"] == 2
        reader.iter_axes = "pt"
        np.testing.assert_array_equal(reader[5], data[1, 1])
        assert not reader[6].any()


@pytest.mark.parametrize("content", [b"", b"not a tiff at all"])
def test_multifile_ome_unreadable_file_is_named_and_its_planes_filled(multifile_ome, content):
    folder, data = multifile_ome
    broken = folder / "pos1_part1.ome.tif"
    broken.write_bytes(content)
    with pytest.raises(tifffile.TiffFileError):
        tifffile.TiffFile(broken)
    for source in (folder, folder / "pos0_part0.ome.tif"):
        with pytest.raises(StackReadError, match=r"2 planes .*pos1_part1\.ome\.tif cannot be "
                           r"read: TiffFileError: not a TIFF file.*fill_missing"):
            TiffSequenceND(source)
        with TiffSequenceND(source, fill_missing=0) as reader:
            assert reader.metadata["missing_files"] == 2
            reader.iter_axes = "pt"
            for i in range(6):
                np.testing.assert_array_equal(reader[i], data.reshape(-1, 16, 24)[i])
            assert not reader[6].any() and not reader[7].any()


def test_multifile_ome_truncated_file_is_named(multifile_ome):
    folder, _ = multifile_ome
    broken = folder / "pos1_part1.ome.tif"
    os.truncate(broken, broken.stat().st_size - 100)  # the second IFD, after the pixels, cut
    with tifffile.TiffFile(broken) as tif, pytest.raises(struct.error):  # its second IFD
        tif.pages.useframes = True  # (as tifffile reads the files of an OME dataset)
        list(tif.pages)
    for source in (folder, folder / "pos0_part0.ome.tif"):
        with pytest.raises(StackReadError, match=r"pos1_part1\.ome\.tif: cannot read this file "
                           r"of the dataset of pos0_part0\.ome\.tif \(error: unpack"):
            TiffSequenceND(source)
    gc.collect()  # (a file left open would now warn)


@pytest.mark.parametrize("entry", ["pos0_part0.ome.tif", "pos1_part1.ome.tif", "folder"])
def test_multifile_ome_file_of_another_acquisition_is_refused(tmp_path, entry):
    # pos1_part1 overwritten by a re-run of the acquisition: same name, other UUID and pixels
    data = np.random.default_rng(23).integers(0, 60000, (2, 4, 16, 24), np.uint16)
    _write_multifile_ome(tmp_path, data)
    other = tmp_path / "other"
    other.mkdir()
    _write_multifile_ome(other, data[::-1], run=1)
    with tifffile.TiffFile(other / "pos1_part1.ome.tif") as tif:
        xml = tif.pages.first.description
    (other / "pos1_part1.ome.tif").replace(tmp_path / "pos1_part1.ome.tif")
    shutil.rmtree(other)
    own = re.search(r'<OME [^>]*UUID="([^"]+)"', xml)[1]
    named = re.search(r'<UUID FileName="pos1_part1.ome.tif">([^<]+)<', xml)[1]
    assert own == named  # consistent in its own acquisition...
    with tifffile.TiffFile(tmp_path / "pos0_part0.ome.tif") as tif:
        xml = tif.pages.first.description
        assert re.search(r'<UUID FileName="pos1_part1.ome.tif">([^<]+)<', xml)[1] != own
        # ...but not in this one, where tifffile reads its pixels as those of position 1
        np.testing.assert_array_equal(tif.series[1].asarray()[2:], data[0, 2:])
    source = tmp_path if entry == "folder" else tmp_path / entry
    # opened from the foreign file, the others are the foreign ones
    culprit = "pos0_part0" if entry == "pos1_part1.ome.tif" else "pos1_part1"
    with pytest.raises(StackReadError, match=rf"{culprit}\.ome\.tif: its OME UUID .* is not"):
        TiffSequenceND(source)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
@pytest.mark.parametrize("link", ["folder", "files"])
@pytest.mark.parametrize("entry", ["pos1_part0.ome.tif", "folder"])
def test_multifile_ome_through_symbolic_links(tmp_path, link, entry):
    """Data reached through a linked folder (or linked files), as on many clusters: tifffile
    names the files by their real paths, which were taken for files other than the
    source's ("... belongs to a dataset of 4 files, but the source also holds 4 other")."""
    data = np.random.default_rng(25).integers(0, 60000, (2, 4, 16, 24), np.uint16)
    real = tmp_path / "real"
    real.mkdir()
    _write_multifile_ome(real, data)
    linked = tmp_path / "linked"
    if link == "folder":
        linked.symlink_to(real, target_is_directory=True)
    else:
        linked.mkdir()
        for name in os.listdir(real):
            (linked / name).symlink_to(real / name)
    with TiffSequenceND(linked if entry == "folder" else linked / entry) as reader:
        assert reader.sizes == {"p": 2, "t": 4, "y": 16, "x": 24}
        with tifffile.TiffFile(real / "pos0_part0.ome.tif") as tif:
            expected = np.stack([series.asarray() for series in tif.series])
        np.testing.assert_array_equal(expected, data)
        for p in range(2):
            for t in range(4):
                np.testing.assert_array_equal(reader.get_plane(p=p, t=t), expected[p, t])


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_listed_file_through_a_link_then_up_is_not_taken_for_a_dataset_file(tmp_path):
    """``link/../d/x.ome.tif`` names the ``d`` beside the link's target: ``os.path.abspath``
    made it the dataset's ``d/x.ome.tif`` by the letters, so the dataset was read and the
    listed file silently ignored."""
    data = np.random.default_rng(27).integers(0, 60000, (2, 4, 16, 24), np.uint16)
    (tmp_path / "d").mkdir()
    _write_multifile_ome(tmp_path / "d", data)
    (tmp_path / "elsewhere" / "inner").mkdir(parents=True)
    (tmp_path / "elsewhere" / "d").mkdir()
    _write(tmp_path / "elsewhere" / "d" / "pos1_part1.ome.tif", data[0, :2])
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere" / "inner", target_is_directory=True)
    through = os.path.join(tmp_path, "link", os.pardir, "d", "pos1_part1.ome.tif")
    listed = [tmp_path / "d" / name for name in
              ("pos0_part0.ome.tif", "pos0_part1.ome.tif", "pos1_part0.ome.tif")] + [through]
    np.testing.assert_array_equal(tifffile.imread(through), data[0, :2])  # not the dataset's
    with pytest.raises(StackReadError, match=re.escape(
            "belongs to a dataset of 4 files, but the source also holds 1 other TIFF files "
            f"(e.g. {through})")):
        TiffSequenceND(listed)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_multifile_ome_file_of_another_acquisition_is_refused_through_a_linked_folder(tmp_path):
    """The UUID check compared the names the OME-XML gives (under the link) with tifffile's
    real paths: through a linked folder, it was skipped."""
    data = np.random.default_rng(26).integers(0, 60000, (2, 4, 16, 24), np.uint16)
    real, other = tmp_path / "real", tmp_path / "other"
    real.mkdir()
    other.mkdir()
    _write_multifile_ome(real, data)
    _write_multifile_ome(other, data[::-1], run=1)
    (other / "pos1_part1.ome.tif").replace(real / "pos1_part1.ome.tif")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    with pytest.raises(StackReadError, match=r"pos1_part1\.ome\.tif: its OME UUID .* is not"):
        TiffSequenceND(tmp_path / "linked" / "pos0_part0.ome.tif")


@pytest.mark.parametrize("how", ["rewritten", "renamed"])
@pytest.mark.parametrize("options", [{}, {"compression": "zlib"}], ids=["mapped", "decoded"])
def test_multifile_ome_file_replaced_after_opening_is_refused(tmp_path, how, options):
    # the planes were indexed at open: a file of another run put in its place after that
    # (same name, same size) must not be read at the old offsets as if it were the same file
    data = np.random.default_rng(25).integers(0, 60000, (2, 4, 16, 24), np.uint16)
    _write_multifile_ome(tmp_path, data, **options)
    other = tmp_path / "other"
    other.mkdir()
    _write_multifile_ome(other, data[::-1] // 2, run=1, **options)
    target, foreign = tmp_path / "pos1_part1.ome.tif", other / "pos1_part1.ome.tif"
    with TiffSequenceND(tmp_path / "pos0_part0.ome.tif") as reader:
        reader.iter_axes = "pt"
        np.testing.assert_array_equal(reader[5], data[1, 1])  # another file of position 1
        if not options:  # (compressed, the sizes differ)
            assert foreign.stat().st_size == target.stat().st_size
        if how == "rewritten":
            shutil.copyfile(foreign, target)
        else:
            foreign.replace(target)
        with pytest.raises(StackReadError, match=r"pos1_part1\.ome\.tif: .*changed since"):
            reader[7]
        np.testing.assert_array_equal(reader[4], data[1, 0])  # the unchanged files still read


def test_multifile_ome_compressed_file_overwritten_in_place_while_open_is_named(tmp_path):
    """A file of a compressed dataset, already open, overwritten in place with zeros (a copy
    cut short with ``rsync --inplace``): its IFDs now decode to no pixels, which failed with a
    bare ``ValueError: cannot reshape array of size 0`` naming no file."""
    data = np.random.default_rng(28).integers(0, 60000, (2, 4, 32, 48), np.uint16)
    _write_multifile_ome(tmp_path, data, compression="zlib")
    with TiffSequenceND(tmp_path) as reader:
        np.testing.assert_array_equal(reader.get_plane(p=1, t=2), data[1, 2])
        overwritten = tmp_path / "pos1_part1.ome.tif"
        with open(overwritten, "r+b") as file:
            file.write(bytes(overwritten.stat().st_size))
        for t in (2, 3):
            with pytest.raises(StackReadError, match=r"pos1_part1\.ome\.tif: .*decodes to"):
                reader.get_plane(p=1, t=t)
        np.testing.assert_array_equal(reader.get_plane(p=0, t=3), data[0, 3])


def test_multifile_ome_file_that_only_grew_after_opening_is_still_read(multifile_ome):
    # an acquisition still writing appends to its files: the planes indexed stay where they were
    folder, data = multifile_ome
    with TiffSequenceND(folder, max_open_files=1) as reader:
        reader.iter_axes = "pt"
        with open(folder / "pos1_part1.ome.tif", "ab") as file:
            file.write(bytes(1000))
        np.testing.assert_array_equal(reader[7], data[1, 3])


def test_multifile_ome_file_of_same_size_and_time_on_another_inode_is_still_read(multifile_ome):
    # network file systems may give a file another inode number: size and time are the same
    folder, data = multifile_ome
    with TiffSequenceND(folder) as reader:
        reader.iter_axes = "pt"
        target = folder / "pos1_part1.ome.tif"
        shutil.copy2(target, folder / "copy")
        (folder / "copy").replace(target)
        np.testing.assert_array_equal(reader[7], data[1, 3])


def test_multifile_ome_file_turned_into_a_folder_after_opening(multifile_ome):
    folder, _ = multifile_ome
    with TiffSequenceND(folder) as reader:
        reader.iter_axes = "pt"
        (folder / "pos1_part1.ome.tif").unlink()
        (folder / "pos1_part1.ome.tif").mkdir()
        with pytest.raises(StackReadError, match=r"pos1_part1\.ome\.tif: cannot open"):
            reader[7]


def test_single_file_ome_with_positions(tmp_path):
    data = np.random.default_rng(21).integers(0, 255, (3, 2, 8, 9), np.uint8)
    path = tmp_path / "positions.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:
        for position in data:
            writer.write(position, metadata={"axes": "ZYX"})
    with TiffSequenceND(path) as reader:
        assert reader.sizes == {"p": 3, "z": 2, "y": 8, "x": 9}
        reader.iter_axes = "pz"
        with tifffile.TiffFile(path) as tif:
            expected = np.stack([series.asarray() for series in tif.series])
        np.testing.assert_array_equal(expected, data)
        for i in range(6):
            np.testing.assert_array_equal(reader[i], data.reshape(-1, 8, 9)[i])


def test_standalone_ome_files_are_a_numbered_sequence(tmp_path):
    planes = _planes(22, 3)
    for t, plane in enumerate(planes):
        tifffile.imwrite(tmp_path / f"frame{t}.ome.tif", plane, ome=True)
    with TiffSequenceND(tmp_path) as reader:
        assert reader.sizes == {"t": 3, "y": 6, "x": 7}
        for t, plane in enumerate(planes):
            np.testing.assert_array_equal(reader[t], plane)


def test_ndtiff_dataset(real_data):
    folder = real_data / "ndtiff" / "ndtiff3.2_multichannel"
    expected = tifffile.imread(folder / "NDTiff3.2_multichannel_NDTiffStack.tif")
    assert expected.shape == (8, 2, 16, 64, 64)
    for source in (folder, folder / "NDTiff3.2_multichannel_NDTiffStack.tif"):
        with TiffSequenceND(source) as reader:
            assert reader.sizes == {"t": 8, "c": 2, "z": 16, "y": 64, "x": 64}
            reader.bundle_axes = "czyx"
            for t in (0, 3, 7):
                np.testing.assert_array_equal(reader[t], expected[t])


@pytest.mark.parametrize("iter_axes", ["t", "c", "tc", "ct"])
@pytest.mark.parametrize("bundle", ["yx", "xy"])
def test_every_iteration_reads_the_right_file(tmp_path, iter_axes, bundle):
    planes = {}
    for t in range(3):
        for c in range(2):
            if (t, c) != (2, 0):  # a gap, filled
                planes[t, c] = _write(tmp_path / f"x_t{t}_c{c}.tif", _planes(40 + 2 * t + c, 1)[0])
    with TiffSequenceND(tmp_path, fill_missing=7) as reader:
        reader.bundle_axes = bundle
        reader.iter_axes = iter_axes
        reader.default_coords.update(t=1, c=1)
        sizes = [reader.sizes[a] for a in iter_axes]
        for i in range(len(reader)):
            coords = {"t": 1, "c": 1}
            coords.update(zip(iter_axes, map(int, np.unravel_index(i, sizes)), strict=True))
            key = coords["t"], coords["c"]
            expected = tifffile.imread(planes[key]) if key in planes else np.full((6, 7), 7)
            frame = reader[i]
            np.testing.assert_array_equal(frame, expected if bundle == "yx" else expected.T)
            assert frame.metadata["coords"] == coords


def test_get_plane_defaults_and_bounds(tmp_path):
    for t in range(3):
        for c in range(2):
            _write(tmp_path / f"x_t{t}_c{c}.tif", _planes(30 + 2 * t + c, 1)[0])
    with TiffSequenceND(tmp_path) as reader:
        reader.default_coords["c"] = 1
        np.testing.assert_array_equal(
            reader.get_plane(t=2), tifffile.imread(tmp_path / "x_t2_c1.tif")
        )
        np.testing.assert_array_equal(
            reader.get_plane(t=1, c=0), tifffile.imread(tmp_path / "x_t1_c0.tif")
        )
        for bad in ({"t": 3}, {"t": -1}, {"c": 2}):
            with pytest.raises(IndexError):
                reader.get_plane(**bad)
        with pytest.raises(IndexError):
            reader[3]


def _write_ndtiff_index(path: Path, entries) -> None:
    """Write NDTiff.index entries in the format tifffile.read_ndtiff_index parses."""
    with open(path, "wb") as index:
        for axes, filename, *numbers in entries:
            text = json.dumps(axes).encode()
            name = filename.encode()
            index.write(struct.pack("<I", len(text)) + text + struct.pack("<I", len(name)) + name)
            index.write(struct.pack("<IiiiiIii", *numbers))


def _split_ndtiff_dataset(real_data, tmp_path):
    """Write the real NDTiff dataset as two files in ``tmp_path``, time points 4-7 (inverted)
    in the second; return its planes as tifffile reads them and the index entries."""
    source = real_data / "ndtiff" / "ndtiff3.2_multichannel"
    original = tifffile.imread(source / "NDTiff3.2_multichannel_NDTiffStack.tif")
    first, second = tmp_path / "ds_NDTiffStack.tif", tmp_path / "ds_NDTiffStack_1.tif"
    raw = (source / "NDTiff3.2_multichannel_NDTiffStack.tif").read_bytes()
    first.write_bytes(raw)
    second.write_bytes(raw)
    index = list(tifffile.read_ndtiff_index(source / "NDTiff.index"))
    entries = []
    moved = 0
    with open(first, "r+b") as one, open(second, "r+b") as two:
        for axes, _, offset, width, height, *rest in index:
            if axes["time"] < 4:
                entries.append((axes, first.name, offset, width, height, *rest))
                continue
            # move the plane to the second file, inverted, in the slot the first file's
            # plane number `moved` has there (so the second file starts with its first plane)
            size = width * height * 2
            plane = np.frombuffer(raw[offset : offset + size], "<u2")
            one.seek(offset)
            one.write(bytes(size))
            target = index[moved][2]
            two.seek(target)
            two.write((65535 - plane).astype("<u2").tobytes())
            entries.append((axes, second.name, target, width, height, *rest))
            moved += 1
    _write_ndtiff_index(tmp_path / "NDTiff.index", entries)
    expected = tifffile.imread(first)  # tifffile's own reading of the two-file dataset
    np.testing.assert_array_equal(expected[:4], original[:4])
    np.testing.assert_array_equal(expected[4:], 65535 - original[4:])
    return expected, entries


def test_ndtiff_dataset_split_over_two_files(real_data, tmp_path):
    expected, _ = _split_ndtiff_dataset(real_data, tmp_path)
    first, second = tmp_path / "ds_NDTiffStack.tif", tmp_path / "ds_NDTiffStack_1.tif"
    for entry in (tmp_path, first, second):
        with TiffSequenceND(entry) as reader:
            assert reader.sizes == {"t": 8, "c": 2, "z": 16, "y": 64, "x": 64}
            assert len(reader.files) == 2
            reader.bundle_axes = "czyx"
            for t in range(8):
                np.testing.assert_array_equal(reader[t], expected[t])


def test_ndtiff_index_is_read_once_per_open(real_data, tmp_path, ndtiff_index_reads):
    """Besides tifffile's reading of NDTiff.index (for its series), the channel names and the
    planes' times come from one reading of it, not one per use and per file of the dataset;
    they are still the channels and ElapsedTime-ms of each plane's own JSON."""
    _, entries = _split_ndtiff_dataset(real_data, tmp_path)
    expected_times, channels, intended = {}, [], set()
    for axes, name, *_, metaoffset, metalength, _ in entries:
        with open(tmp_path / name, "rb") as file:
            file.seek(metaoffset)
            image = json.loads(file.read(metalength))
        if axes["channel"] not in channels:
            channels.append(axes["channel"])
        key = axes["time"], channels.index(axes["channel"]), axes["z"]
        expected_times[key] = image["ElapsedTime-ms"] / 1000
        intended.add(image["ZPosition_um_Intended"])
    ndtiff_index_reads.clear()  # (the test's own reading above)
    with TiffSequenceND(tmp_path) as reader:
        assert len(ndtiff_index_reads) == 1
        assert len(reader.files) == 2
        assert reader.metadata["channel_names"] == channels == ["DAPI", "FITC"]
        assert reader.metadata["z_step"] == pytest.approx((max(intended) - min(intended)) / 15)
        for (t, c, z), seconds in expected_times.items():
            assert reader.get_plane(t=t, c=c, z=z).metadata["timestamp"] == pytest.approx(seconds)


@pytest.mark.parametrize("other", ["zz_other.tif", "MAX_projection.tif"])
def test_multifile_dataset_mixed_with_other_files(multifile_ome, other):
    # whatever the other file's name sorts as, the message says what is wrong
    folder, _ = multifile_ome
    _write(folder / other, np.zeros((16, 24), np.uint16))
    with pytest.raises(StackReadError, match=rf"also holds 1 other .*{other}.*open one file "
                       "of the dataset"):
        TiffSequenceND(folder)
    with TiffSequenceND(folder / "pos0_part1.ome.tif") as reader:
        assert reader.sizes["p"] == 2


def test_numbered_multiposition_ome_files_read_series_option(tmp_path):
    data = np.random.default_rng(23).integers(0, 255, (3, 2, 5, 6), np.uint8)  # T, P, Y, X
    for t, positions in enumerate(data):
        _write_ome_images(tmp_path / f"tp{t}.ome.tif", positions)
    for series in (0, 1):
        with TiffSequenceND(tmp_path, series=series) as reader:
            assert reader.sizes == {"t": 3, "y": 5, "x": 6}
            for t in range(3):
                np.testing.assert_array_equal(reader[t], data[t, series])


def test_position_folders_of_one_multiposition_ome_file_each_read_the_series_option(tmp_path):
    # one file per well folder, each holding several OME positions (series): files one by one
    data = np.random.default_rng(26).integers(0, 255, (2, 3, 5, 6), np.uint8)  # well, P, Y, X
    for well, positions in zip(("A1", "A2"), data, strict=True):
        (tmp_path / well).mkdir()
        _write_ome_images(tmp_path / well / "scan.ome.tif", positions)
    for series in (0, 2):
        with TiffSequenceND(tmp_path, series=series) as reader:
            assert reader.sizes == {"p": 2, "y": 5, "x": 6}
            for p in range(2):
                np.testing.assert_array_equal(reader.get_plane(p=p), data[p, series])


def test_float_files_filled_with_nan(tmp_path):
    for t in (0, 1, 3):
        _write(tmp_path / f"f_{t}.tif", np.full((3, 4), t, np.float32))
    with TiffSequenceND(tmp_path, fill_missing=np.nan) as reader:
        assert np.isnan(reader[2]).all()
        np.testing.assert_array_equal(reader[3], tifffile.imread(tmp_path / "f_3.tif"))


def test_pattern_is_not_silently_ignored_on_dataset_files(multifile_ome):
    folder, _ = multifile_ome
    # the names are used, so each file is read on its own: TiffStackND refuses a file whose
    # series continues in other files
    with pytest.raises(StackReadError, match="pos0_part0"):
        TiffSequenceND(folder, pattern=r"pos(?P<p>\d)_part(?P<t>\d)")


def test_pims_open_on_one_file_of_a_multifile_dataset(multifile_ome):
    folder, data = multifile_ome
    # TiffStackND (priority 20) refuses a series that continues in other files; pims then
    # tries TiffSequenceND (19), which reads the whole dataset
    with pims.open(str(folder / "pos1_part0.ome.tif")) as reader:
        assert isinstance(reader, TiffSequenceND)
        assert reader.sizes == {"p": 2, "t": 4, "y": 16, "x": 24}
        reader.iter_axes = "pt"
        np.testing.assert_array_equal(reader[6], data[1, 2])


def test_multifile_ome_decoded_pages_from_threads(tmp_path):
    data = np.random.default_rng(25).integers(0, 60000, (2, 4, 32, 48), np.uint16)
    _write_multifile_ome(tmp_path, data, compression="zlib")
    flat = data.reshape(-1, 32, 48)
    with TiffSequenceND(tmp_path / "pos1_part0.ome.tif", max_open_files=1) as reader:
        reader.iter_axes = "pt"
        errors = _read_from_threads(reader, flat, n_threads=3, reads=100)
    assert errors == []


def test_bundle_xy_is_transposed_like_pimsviewer_asks(numbered):
    with TiffSequenceND(numbered) as reader:
        reader.bundle_axes = "xy"
        frame = reader[4]
        assert frame.shape == (7, 6)
        assert frame.metadata["axes"] == ["x", "y"]
        np.testing.assert_array_equal(frame, tifffile.imread(numbered / "f5.tif").T)


def _read_from_threads(reader, expected, *, n_threads, reads):
    """Read random frames of ``reader`` from several threads; return what went wrong."""
    errors = []

    def work(seed):
        try:
            for i in random.Random(seed).choices(range(len(expected)), k=reads):
                if not np.array_equal(reader[i], expected[i]):
                    errors.append(f"frame {i} differs")
        except Exception as exc:  # reported by the main thread
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.slow
def test_hundred_thousand_files(tmp_path):
    count = 100_000
    plane = np.arange(16, dtype=np.uint16).reshape(4, 4)
    tifffile.imwrite(tmp_path / "img000000.tif", plane)
    template = (tmp_path / "img000000.tif").read_bytes()
    head = len(template) - plane.nbytes  # tifffile writes the pixels last
    for i in range(1, count):
        (tmp_path / f"img{i:06d}.tif").write_bytes(template[:head] + (plane + i % 1000).tobytes())
    with TiffSequenceND(tmp_path) as reader:
        assert len(reader) == count
        assert reader.metadata["files"] == count
        for i in (0, 1, 9_999, 65_535, 99_999):
            assert Path(reader.files[i]).name == f"img{i:06d}.tif"
            np.testing.assert_array_equal(reader[i], tifffile.imread(reader.files[i]))
            np.testing.assert_array_equal(reader[i], plane + i % 1000)
