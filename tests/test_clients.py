"""Real clients of pims use our reader through ``pims.open``, unchanged: trackpy, dask-image,
pimsviewer, and pims's own reader test mixin. Expected values come from tifffile's decoding and
from the synthetic data put into the files, never from our reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import unittest
from pathlib import Path

import numpy as np
import pims
import pytest
import tifffile
from pims.tests.test_common import _image_series
from test_registration import SWITCH, FakeSite

from pims_videoutils.readers import TiffStackND

# trackpy 0.7 calls DataFrame.drop(inplace=True), deprecated by pandas 3.1: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

DRIFT = np.array([0.7, -0.45])  # (dy, dx) per frame, pixels
DIAMETER = 7


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSite:
    """pims-videoutils 'installed' in a site; child processes of this test run the hook."""
    site = FakeSite(tmp_path)
    monkeypatch.setenv("PYTHONPATH", site.env()["PYTHONPATH"])
    monkeypatch.delenv(SWITCH, raising=False)
    # A spawned child replaces its sys.path by ours after start-up: it finds the entry points
    # on our sys.path, as it would for a real installation.
    monkeypatch.syspath_prepend(str(site.site))
    return site


@pytest.fixture(scope="module")
def spots_movie(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """20 gaussian spots on a grid, all moving by DRIFT per frame; 10 frames, uint16 TIFF."""
    rng = np.random.default_rng(1)
    frames, height, width = 10, 96, 112
    ys, xs = np.meshgrid(np.arange(20, 80, 16), np.arange(25, 95, 16), indexing="ij")
    start = np.stack([ys.ravel(), xs.ravel()], axis=1) + rng.uniform(-2, 2, (ys.size, 2))
    yy, xx = np.mgrid[:height, :width]
    movie = np.zeros((frames, height, width))
    for t in range(frames):
        for y, x in start + DRIFT * t:
            movie[t] += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2))
    movie = movie * 3000 + 200 + rng.normal(0, 5, movie.shape)
    path = tmp_path_factory.mktemp("trackpy") / "spots.tif"
    tifffile.imwrite(path, movie.clip(0).astype(np.uint16), imagej=True, metadata={"axes": "TYX"})
    return path, start


@pytest.fixture
def hyperstack(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An ImageJ TZCYX hyperstack with a frame interval of 0.25 s."""
    data = np.random.default_rng(2).integers(0, 4096, (3, 2, 2, 24, 32), dtype=np.uint16)
    path = tmp_path / "hyperstack.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX", "finterval": 0.25})
    return path, data


@pytest.fixture
def plain_stack(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A plain (non-ImageJ, non-shaped) multi-page TIFF of 7 planes."""
    data = np.random.default_rng(3).integers(0, 255, (7, 20, 18), dtype=np.uint8)
    path = tmp_path / "plain.tif"
    with tifffile.TiffWriter(path) as tif:
        for plane in data:
            tif.write(plane, metadata=None)
    return path, data


# ------------------------------------------------------------------------------ trackpy


def _drift_error(trajectories, frames: int) -> float:
    import trackpy as tp

    drift = tp.compute_drift(trajectories)[["y", "x"]].to_numpy()
    return float(np.abs(drift - np.outer(np.arange(1, frames), DRIFT)).max())


def test_trackpy_batch_link_drift(spots_movie: tuple[Path, np.ndarray]) -> None:
    import trackpy as tp

    path, start = spots_movie
    tp.quiet()
    with pims.open(str(path)) as frames:
        assert isinstance(frames, TiffStackND)
        features = tp.batch(frames, DIAMETER, minmass=5000, processes=2)
        # Iteration (pool feeder thread) and indexing (main thread) at once: same answer.
        for _ in range(9):
            assert tp.batch(frames, DIAMETER, minmass=5000, processes=2).equals(features)
        sliced = tp.batch(frames[3:8], DIAMETER, minmass=5000, processes=1)
    assert features.groupby("frame").size().to_dict() == {t: len(start) for t in range(10)}
    # frame_no survives slicing: the slice's features carry the file's frame numbers.
    assert sorted(sliced["frame"].unique()) == [3, 4, 5, 6, 7]
    # Spots found where they were put (first frame), then the drift that was put in.
    first = features[features["frame"] == 0][["y", "x"]].to_numpy()
    nearest = np.abs(first[:, None, :] - start[None, :, :]).sum(axis=2).min(axis=0)
    assert nearest.max() < 0.1
    trajectories = tp.link(features, search_range=3)
    assert trajectories["particle"].nunique() == len(start)
    assert _drift_error(trajectories, 10) < 0.05


def test_trackpy_find_link(spots_movie: tuple[Path, np.ndarray]) -> None:
    import trackpy as tp

    path, start = spots_movie
    tp.quiet()
    with pims.open(str(path)) as frames:
        # refine=True is broken in trackpy 0.7 (passes `separation` to refine_com_arr), so
        # positions are whole pixels and the drift is only as good as their rounding.
        tracks = tp.find_link(
            frames, search_range=3, separation=5, diameter=DIAMETER, minmass=5000
        )
    assert tracks.groupby("frame").size().to_dict() == {t: len(start) for t in range(10)}
    assert tracks["particle"].nunique() == len(start)
    assert _drift_error(tracks, 10) < 0.5


# --------------------------------------------------------------------------- dask-image


# Defined outside any importable module, so that dask pickles it by value: a worker that
# unpickles it imports nothing of ours (a function of this module would import
# pims_videoutils.readers in the worker and hide a missing registration).
_PROBE: dict = {"__name__": "pims_videoutils_worker_probe"}
exec(
    "def reader_in_worker(path):\n"
    "    import pims\n"
    "    with pims.open(path) as reader:\n"
    "        return type(reader).__name__\n",
    _PROBE,
)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_image_plain_stack(
    fake_site: FakeSite, plain_stack: tuple[Path, np.ndarray], scheduler: str
) -> None:
    import dask
    from dask_image.imread import imread

    path, data = plain_stack
    array = imread(str(path))
    assert array.shape == data.shape
    assert array.dtype == data.dtype
    np.testing.assert_array_equal(array.compute(scheduler=scheduler), tifffile.imread(path))
    # The processes scheduler starts workers with spawn: they must get our reader too.
    worker = dask.delayed(_PROBE["reader_in_worker"])(str(path)).compute(scheduler=scheduler)
    assert worker == "TiffStackND"


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_image_glob_of_numbered_tiffs(
    fake_site: FakeSite, tmp_path: Path, scheduler: str
) -> None:
    import dask
    from dask_image.imread import imread

    # numbered 1..12 without padding: natural order (dask-image's and ours) puts 10 after 9
    data = np.random.default_rng(4).integers(0, 4096, (12, 8, 6), dtype=np.uint16)
    for number, plane in enumerate(data, start=1):
        tifffile.imwrite(tmp_path / f"cell{number}.tif", plane)
    pattern = str(tmp_path / "cell*.tif")
    array = imread(pattern)
    assert (array.shape, array.dtype) == (data.shape, data.dtype)
    np.testing.assert_array_equal(array.compute(scheduler=scheduler), data)
    # pims.open itself, in a worker, reads the glob as one sequence (pims: ImageSequence)
    worker = dask.delayed(_PROBE["reader_in_worker"])(pattern).compute(scheduler=scheduler)
    assert worker == "TiffSequenceND"


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_image_glob_of_micromanager_images(
    fake_site: FakeSite, tmp_path: Path, scheduler: str
) -> None:
    # dask-image reads frame 0 of pims.open(file) for each file of a glob: an image of a
    # Micro-Manager acquisition must open alone there, not as its whole acquisition
    from dask_image.imread import imread

    data = np.random.default_rng(6).integers(0, 60000, (4, 5, 6), dtype=np.uint16)
    summary = {"Frames": 4, "Slices": 1, "Channels": 1, "Positions": 1, "Interval_ms": 250.0}
    (tmp_path / "metadata.txt").write_text(json.dumps({"Summary": summary}))
    for t, plane in enumerate(data):
        tifffile.imwrite(tmp_path / f"img_channel000_position000_time{t:09d}_z000.tif", plane)
    array = imread(str(tmp_path / "img_*.tif"))
    assert (array.shape, array.dtype) == (data.shape, data.dtype)
    np.testing.assert_array_equal(array.compute(scheduler=scheduler), data)


def test_dask_image_folder_of_tiffs(fake_site: FakeSite, tmp_path: Path) -> None:
    # dask-image hands each chunk its file name as a numpy.str_ (os.scandir lists bytes for it)
    from dask_image.imread import imread

    data = np.random.default_rng(5).integers(0, 4096, (5, 8, 6), dtype=np.uint16)
    folder = tmp_path / "frames"
    folder.mkdir()
    for number, plane in enumerate(data):
        tifffile.imwrite(folder / f"frame{number:02d}.tif", plane)
    array = imread(str(folder))
    assert (array.shape, array.dtype) == (data.shape, data.dtype)
    np.testing.assert_array_equal(array.compute(scheduler="threads"), data)
    with pims.open(np.array([str(folder)])[0]) as reader:  # what a chunk does
        last = tifffile.imread(folder / "frame04.tif")
        np.testing.assert_array_equal(np.asarray(reader[4]), last)


def _bundle(data: np.ndarray, axes: str, bundle_axes: str, coords: dict[str, int]) -> np.ndarray:
    """The frame a pims reader should return, cut from tifffile's ``data`` (axes ``axes``)."""
    plane = data[tuple(slice(None) if a in bundle_axes else coords[a] for a in axes)]
    kept = [a for a in axes if a in bundle_axes]
    return np.transpose(plane, [kept.index(a) for a in bundle_axes])


def _planes_by_default_axes(path: Path, data: np.ndarray, axes: str) -> np.ndarray:
    """What a reader with the file's default axes shows, built from tifffile's data."""
    with pims.open(str(path)) as reader:
        iter_axes, bundle_axes = "".join(reader.iter_axes), "".join(reader.bundle_axes)
        coords = dict(reader.default_coords)
        sizes = dict(reader.sizes)
    planes = []
    for index in np.ndindex(*(sizes[a] for a in iter_axes)):
        position = {**coords, **dict(zip(iter_axes, index, strict=True))}
        planes.append(_bundle(data, axes, bundle_axes, position))
    return np.stack(planes)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_image_imagej_hyperstack(
    fake_site: FakeSite, hyperstack: tuple[Path, np.ndarray], scheduler: str
) -> None:
    from dask_image.imread import imread

    path, data = hyperstack
    expected = _planes_by_default_axes(path, data, "tzcyx")
    array = imread(str(path))
    assert array.shape == expected.shape
    assert array.dtype == data.dtype
    # A worker falling back to pims's TiffStack_tifffile would return other (flat) planes.
    np.testing.assert_array_equal(array.compute(scheduler=scheduler), expected)


# --------------------------------------------------------------------------- pimsviewer


def test_pimsviewer_reader_protocol(hyperstack: tuple[Path, np.ndarray]) -> None:
    from pimsviewer.wrapped_reader import WrappedReader

    path, data = hyperstack
    reader = WrappedReader(pims.open(str(path)))
    try:
        assert isinstance(reader.reader, TiffStackND)
        assert dict(reader.sizes) == {"t": 3, "z": 2, "c": 2, "y": 24, "x": 32}
        # GUI.update_dimensions
        reader.iter_axes = ""
        reader.bundle_axes = "yx"
        assert reader.frame_rate == pytest.approx(4.0)
        # GUI.get_current_frame, with channel merging switched on
        reader.bundle_axes = "xy"
        reader.bundle_axes += "c"
        reader.default_coords = {"t": 2, "z": 1, "c": 0, "y": 0, "x": 0}
        assert len(reader) == 1
        frame = np.asarray(reader[0])
        np.testing.assert_array_equal(frame, data[2, 1].transpose(2, 1, 0))  # CYX -> XYC
        reader.bundle_axes = "xy"
        reader.default_coords = {"t": 1, "z": 0, "c": 1}
        np.testing.assert_array_equal(reader[0], data[1, 0, 1].T)
        # GUI.show_file_info
        assert isinstance(reader.metadata, dict)
        assert all(isinstance(key, str) for key in reader.metadata)
    finally:
        reader.close()


PIMSVIEWER_SCRIPT = """
import json, sys
import numpy as np
import pims
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QApplication, QMessageBox

app = QApplication(["pimsviewer"])


def refuse(parent, title, text, *args):
    raise SystemExit(f"pimsviewer showed an error box: {text}")


QMessageBox.critical = refuse
import PIL.ImageQt
import pimsviewer.pims_image
from pimsviewer.gui import GUI

if not PIL.ImageQt.qt_is_installed:
    # Pillow >= 10 dropped the PyQt5 support that pimsviewer 2.0 draws with (not ours): draw
    # the same RGB array with Qt directly; everything else in pimsviewer runs unchanged.
    from PyQt5.QtGui import QPixmap

    def pixmap_from_array(array):
        array = np.ascontiguousarray(array, dtype=np.uint8)
        height, width = array.shape[:2]
        image = QImage(array.data, width, height, 3 * width, QImage.Format_RGB888)
        return QPixmap.fromImage(image.copy())

    pimsviewer.pims_image.pixmap_from_array = pixmap_from_array


def state():
    # what pimsviewer asked of the reader, what it got, and the size of the picture
    pixmap = gui.imageView.image.pixmap()
    return {
        "bundle_axes": "".join(gui.reader.bundle_axes),
        "coords": {k: int(v) for k, v in gui.reader.default_coords.items()},
        "frame": np.asarray(gui.reader[0]).tolist(),
        "picture": sorted([pixmap.width(), pixmap.height()]),
    }


gui = GUI(extra_plugins=[])
gui.show()
gui.open(fileName=sys.argv[1])
app.processEvents()
first = state()
gui.dimensions["t"].position = 2
gui.dimensions["c"].merge = False
gui.showFrame()
app.processEvents()
later = state()
gui.show_file_info()
app.processEvents()
gui.grab().save(sys.argv[2])
print(json.dumps({
    "reader": type(gui.reader.reader).__name__,
    "fps": gui.dimensions["t"].fps,
    "sizes": dict(gui.reader.sizes),
    "shown": [first, later],
}))
gui.close_file()
app.quit()
"""


def test_pimsviewer_window_offscreen(
    fake_site: FakeSite, hyperstack: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    pytest.importorskip("PyQt5.QtWidgets", reason="pimsviewer needs PyQt5")
    path, data = hyperstack
    probe = subprocess.run(
        [sys.executable, "-c", "from PyQt5.QtWidgets import QApplication; QApplication([])"],
        env=fake_site.env(QT_QPA_PLATFORM="offscreen"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"Qt cannot start offscreen here: {probe.stderr.strip()[-300:]}")
    screenshot = tmp_path / "pimsviewer.png"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PIMSVIEWER_SCRIPT), str(path), str(screenshot)],
        cwd=tmp_path,
        env=fake_site.env(QT_QPA_PLATFORM="offscreen"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["reader"] == "TiffStackND"  # found by pims.open inside pimsviewer
    assert info["fps"] == pytest.approx(4.0)
    assert info["sizes"] == {"t": 3, "z": 2, "c": 2, "y": 24, "x": 32}
    first, later = info["shown"]
    # pimsviewer merges z and c by default (x first), then c unmerged at t = 2.
    assert (first["bundle_axes"], first["coords"]["t"]) == ("xyzc", 0)
    assert (later["bundle_axes"], later["coords"]["t"]) == ("xyz", 2)
    for shown in (first, later):
        expected = _bundle(data, "tzcyx", shown["bundle_axes"], shown["coords"])
        np.testing.assert_array_equal(np.array(shown["frame"]), expected)
        assert shown["picture"] == [24, 32]
    assert screenshot.stat().st_size > 0


# ----------------------------------------------------------- pims's reader test mixin


class TestImageSeriesThroughPimsOpen(_image_series, unittest.TestCase):
    """pims's 17 reader tests on its own file, with the reader that ``pims.open`` picks."""

    @pytest.fixture(autouse=True)
    def _reader(self, real_data: Path):
        folder = real_data / "pims"
        self.v = pims.open(str(folder / "tiff_stack.tif"))
        self.frame0 = np.load(folder / "stuck_frame0.npy")
        self.frame1 = np.load(folder / "stuck_frame1.npy")
        self.expected_shape = (512, 512)
        self.expected_len = 5
        yield
        self.v.close()

    def test_reader_is_ours(self) -> None:
        assert isinstance(self.v, TiffStackND)
        assert len(self.v) == self.expected_len
