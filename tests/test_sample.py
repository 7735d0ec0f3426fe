"""The built-in sample: deterministic, a valid ImageJ hyperstack, spots where they should be."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile

import pims_videoutils
from pims_videoutils.sample import spot_positions, write_sample

SMALL = {"n_frames": 6, "n_z": 3, "n_channels": 2, "height": 64, "width": 80, "n_spots": 8}


def _read(path):
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.axes, tif.asarray(), tif.imagej_metadata, tif.pages[0]


def _page_tags(page):
    return {name: page.tags[name].value for name in ("XResolution", "YResolution")}


def test_write_sample_is_an_imagej_hyperstack(tmp_path):
    path = pims_videoutils.write_sample(
        tmp_path / "s.tif", **SMALL, pixel_size=0.25, z_step=0.5, frame_interval=2.0
    )
    assert path == tmp_path / "s.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        series = tif.series[0]
        assert series.axes == "TZCYX"
        assert series.shape == (6, 3, 2, 64, 80)
        assert series.dtype == np.uint16
        meta = tif.imagej_metadata
        tags = _page_tags(tif.pages[0])
    assert meta["spacing"] == pytest.approx(0.5)
    assert meta["finterval"] == pytest.approx(2.0)
    assert meta["unit"] == "um"
    assert (meta["frames"], meta["slices"], meta["channels"]) == (6, 3, 2)
    assert meta["mode"] == "composite"
    luts = np.asarray(meta["LUTs"])  # channel 0 green, channel 1 magenta
    assert luts.shape == (2, 3, 256)
    assert np.array_equal(luts[0, 1], np.arange(256)) and not luts[0, [0, 2]].any()
    assert np.array_equal(luts[1, 0], luts[1, 2]) and not luts[1, 1].any()
    for numerator, denominator in tags.values():
        assert numerator / denominator == pytest.approx(1 / 0.25)  # pixels per µm
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]  # no temporary file left


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path):
    a = write_sample(tmp_path / "a.tif", seed=7, **SMALL)
    b = write_sample(tmp_path / "b.tif", seed=7, **SMALL)
    c = write_sample(tmp_path / "c.tif", seed=8, **SMALL)
    pixels_a, pixels_b, pixels_c = (tifffile.imread(p) for p in (a, b, c))
    assert pixels_a.tobytes() == pixels_b.tobytes()
    assert not np.array_equal(pixels_a, pixels_c)


def test_spots_are_sharp_at_their_position_in_their_own_plane(tmp_path):
    sizes = {"n_frames": 4, "n_z": 3, "n_channels": 2, "height": 96, "width": 96, "n_spots": 10}
    path = write_sample(tmp_path / "s.tif", seed=3, **sizes, read_noise=2.0)
    data = tifffile.imread(path).astype(float)
    truth = spot_positions(seed=3, **sizes)
    assert truth.yx.shape == (4, 10, 2)
    checked = 0
    for t in range(sizes["n_frames"]):
        for i in range(sizes["n_spots"]):
            y, x = truth.yx[t, i]
            others = np.delete(truth.yx[t], i, axis=0)
            if np.min(np.hypot(*(others - (y, x)).T)) < 8:
                continue  # a neighbour would move the maximum
            iy, ix = round(y), round(x)
            for c in np.flatnonzero(truth.channels[:, i]):
                window = data[t, :, c, iy - 3 : iy + 4, ix - 3 : ix + 4]
                in_focus = window[truth.z[i]]
                peak = np.unravel_index(np.argmax(in_focus), in_focus.shape)
                assert np.hypot(peak[0] - 3 - (y - iy), peak[1] - 3 - (x - ix)) <= 1.5
                # The in-focus plane has the highest peak of all planes.
                assert np.argmax(window.max(axis=(1, 2))) == truth.z[i]
                checked += 1
    assert checked >= 10


def test_noise_is_shot_noise_plus_offset_plus_read_noise(tmp_path):
    # One dim spot: almost every pixel is background. For two frames of the same expected
    # image, var(a - b) / 2 = photons + read_noise ** 2, and mean = offset + photons.
    path = write_sample(
        tmp_path / "s.tif", n_frames=2, n_z=1, n_channels=1, height=128, width=128,
        n_spots=1, offset=300, read_noise=3.0,
    )
    frames = tifffile.imread(path).astype(float).reshape(2, 128, 128)
    photons = frames.mean() - 300
    variance = np.var(frames[0] - frames[1]) / 2
    assert 5 < photons < 50
    assert variance == pytest.approx(photons + 9.0, rel=0.1)


@pytest.mark.parametrize(
    "options",
    [
        {"n_frames": 0}, {"height": 10}, {"n_spots": 1.5}, {"pixel_size": 0}, {"read_noise": -1},
        # not finite, or an offset beyond uint16: nonsense metadata or a saturated movie
        {"pixel_size": float("inf")}, {"frame_interval": float("inf")}, {"z_step": float("nan")},
        {"spot_sigma": float("inf")}, {"read_noise": float("inf")}, {"offset": 70000},
    ],
)
def test_bad_options_raise_before_writing(tmp_path, options):
    with pytest.raises(ValueError):
        write_sample(tmp_path / "s.tif", **options)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "size", [{"n_frames": 3.0}, {"height": 32.0}, {"n_z": True}, {"n_spots": np.float64(5)}]
)
def test_sizes_that_are_not_integers_raise_value_error(tmp_path, size):
    """Whole floats and bools passed the check, then failed deep inside with a TypeError."""
    [name] = size
    match = f"{name} must be a positive integer"
    with pytest.raises(ValueError, match=match):
        write_sample(tmp_path / "s.tif", **size)
    with pytest.raises(ValueError, match=match):
        spot_positions(**size)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", None])
def test_seeds_that_are_not_non_negative_integers_raise_value_error(tmp_path, seed):
    """numpy's own errors (ValueError 'expected non-negative integer', TypeError about
    SeedSequence) did not say which argument was wrong; None drew unseeded pixels."""
    match = "seed must be a non-negative integer"
    with pytest.raises(ValueError, match=match):
        write_sample(tmp_path / "s.tif", seed=seed, **SMALL)
    with pytest.raises(ValueError, match=match):
        spot_positions(seed=seed)
    assert not any(tmp_path.iterdir())


def test_numpy_integer_seed_is_the_same_seed(tmp_path):
    assert np.array_equal(spot_positions(seed=np.int64(3)).yx, spot_positions(seed=3).yx)


def test_missing_folder_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        write_sample(tmp_path / "missing" / "s.tif", n_frames=1)
    assert not any(tmp_path.iterdir())


def test_existing_file_is_replaced(tmp_path):
    target = tmp_path / "s.tif"
    target.write_bytes(b"old")
    write_sample(target, **SMALL)
    assert tifffile.imread(target).shape == (6, 3, 2, 64, 80)


@pytest.mark.parametrize("stem", ["a" * 251, "é" * 125])  # 255 bytes with ".tif"
def test_longest_file_name_can_be_written(tmp_path, stem):
    tiny = {"n_frames": 1, "n_z": 1, "n_channels": 1, "height": 24, "width": 24, "n_spots": 1}
    path = write_sample(tmp_path / f"{stem}.tif", **tiny)
    assert tifffile.imread(path).shape == (24, 24)
    assert [p.name for p in tmp_path.iterdir()] == [f"{stem}.tif"]


def test_symbolic_link_is_written_through(tmp_path):
    tiny = {"n_frames": 1, "n_z": 1, "n_channels": 1, "height": 24, "width": 24, "n_spots": 1}
    real = tmp_path / "store" / "real.tif"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "s.tif"
    link.symlink_to(real)
    assert write_sample(link, **tiny) == link
    assert link.is_symlink() and tifffile.imread(real).shape == (24, 24)
    assert [p.name for p in real.parent.iterdir()] == ["real.tif"]
    dangling = tmp_path / "d.tif"
    dangling.symlink_to(tmp_path / "store" / "gone.tif")
    with pytest.raises(FileNotFoundError, match="symbolic link"):
        write_sample(dangling, **tiny)
    assert dangling.is_symlink() and [p.name for p in real.parent.iterdir()] == ["real.tif"]


def test_threads_writing_one_path_each_write_a_whole_file(tmp_path):
    """Each call writes its own temporary file: threads of one process used to share one
    (its name held only the process id) and lose it to each other."""
    path = tmp_path / "sample.tif"
    options = [{"seed": seed, "n_frames": 20, "height": 64, "width": 64} for seed in range(8)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kwargs: write_sample(path, **kwargs), options * 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.tif"]
    written = tifffile.imread(path)
    candidates = []
    for kwargs in options:
        write_sample(tmp_path / "one.tif", **kwargs)
        candidates.append(tifffile.imread(tmp_path / "one.tif"))
    assert any(np.array_equal(written, c) for c in candidates)
