"""The ``pims-video`` command line, run through its real entry point in subprocesses.

Videos are read back independently (frame counts by imageio-ffmpeg, pixels decoded by PyAV),
stacks with tifffile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import imageio_ffmpeg
import numpy as np
import pytest
import tifffile

from pims_videoutils.sample import write_sample

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SIZES = {"n_frames": 8, "n_z": 3, "n_channels": 2, "height": 64, "width": 96, "n_spots": 12}


def run(
    *args: str, cwd: Path, timeout: float = 120, **env_vars: str
) -> subprocess.CompletedProcess:
    """Run ``python -m pims_videoutils ARGS`` with this checkout first on the path (and env)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path]),
           **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "pims_videoutils", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def read_video(path: Path, pix_fmt: str = "rgb24") -> tuple[dict, np.ndarray]:
    """Decode a video with PyAV: ({'fps', 'size'}, frames as (T, Y, X[, 3]) array)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        meta = {"fps": float(stream.average_rate), "size": (stream.width, stream.height)}
        frames = [frame.to_ndarray(format=pix_fmt) for frame in container.decode(stream)]
    return meta, np.stack(frames)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    return write_sample(tmp_path_factory.mktemp("stack") / "sample.tif", seed=1, **SIZES)


@pytest.fixture(scope="module")
def pixels(stack) -> np.ndarray:
    return tifffile.imread(stack)  # TZCYX, tifffile's own decoding


# ---- help, version, sample ------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["info"], ["convert"], ["batch"], ["sample"]])
def test_help_has_examples(tmp_path, command):
    result = run(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Examples:" in result.stdout
    assert "pims-video " + (command[0] if command else "") in result.stdout


def test_help_gives_the_exit_codes(tmp_path):
    """The exit codes (SIGTERM's 143 among them) were in the README and the module
    docstring only; a batch system's user reads --help."""
    result = run("--help", cwd=tmp_path)
    text = " ".join(result.stdout.split())
    for code in ("0 success", "1 ", "2 a usage error", "130 interrupted (Ctrl-C)",
                 "143 terminated (SIGTERM"):
        assert code in text


def test_console_script_is_registered():
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    if "pims-video" not in scripts or shutil.which("pims-video") is None:
        pytest.skip("package not installed (pip install -e . --no-deps)")
    assert scripts["pims-video"] == "pims_videoutils.cli:main"
    result = subprocess.run([shutil.which("pims-video"), "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "pims-video" in result.stdout


def test_sample_command_writes_the_python_sample(tmp_path):
    result = run("sample", "s.tif", "--seed", "5", "--frames", "4", "--z", "2", "--channels", "2",
                 "--size", "48", "64", "--spots", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = write_sample(tmp_path / "py.tif", seed=5, n_frames=4, n_z=2, n_channels=2,
                            height=48, width=64, n_spots=5)
    written = tifffile.imread(tmp_path / "s.tif")
    assert written.shape == (4, 2, 2, 48, 64)
    assert np.array_equal(written, tifffile.imread(expected))


@pytest.mark.parametrize("name", ["x.mp4", "x", "x.tif.mp4"])
def test_sample_command_refuses_a_name_that_is_not_a_tiff(tmp_path, name):
    result = run("sample", name, "--frames", "1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Usage:" in result.stderr and ".tif" in result.stderr
    assert not (tmp_path / name).exists()
    assert run("sample", "X.TIFF", "--frames", "1", "--z", "1", cwd=tmp_path).returncode == 0


# ---- info -----------------------------------------------------------------------------------


def test_info_reports_what_tifffile_sees(stack, tmp_path):
    result = run("info", str(stack), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with tifffile.TiffFile(stack) as tif:
        shape, axes = tif.series[0].shape, tif.series[0].axes
        meta = tif.imagej_metadata
        x_resolution = tif.pages[0].tags["XResolution"].value
    out = result.stdout
    sizes = " ".join(f"{a.lower()}={n}" for a, n in zip(axes, shape, strict=True))
    assert f"axes:           {sizes}" in out
    assert "dtype:          uint16" in out
    assert "storage:        mapped" in out
    pixel = x_resolution[1] / x_resolution[0]
    assert f"pixel size:     {pixel:.6g} x {pixel:.6g}" in out
    assert f"z step:         {meta['spacing']:.6g}" in out
    assert f"frame interval: {meta['finterval']:.6g} s" in out
    assert "software:       tifffile.py" in out


def test_info_json_for_a_file_and_a_folder(stack, plane_files, tmp_path):
    result = run("info", "--json", str(stack), str(plane_files), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    file_record, folder_record = json.loads(result.stdout)
    with tifffile.TiffFile(stack) as tif:
        series = tif.series[0]
        meta = tif.imagej_metadata
        expected_sizes = {a.lower(): n for a, n in zip(series.axes, series.shape, strict=True)}
    assert file_record["sizes"] == expected_sizes
    assert file_record["dtype"] == "uint16"
    assert file_record["z_step"] == pytest.approx(meta["spacing"])
    assert file_record["frame_interval"] == pytest.approx(meta["finterval"])
    assert file_record["series"][0]["axes"] == series.axes
    plane = tifffile.imread(next(plane_files.iterdir()))
    assert folder_record["files"] == 5
    assert folder_record["frames"] == 5
    assert folder_record["frame_shape"] == list(plane.shape)


def test_info_several_paths_one_bad(stack, tmp_path):
    """Each PATH is shown: a bad one is reported and the later ones still shown (info
    stopped at the first bad path, and --json then printed nothing for the good ones)."""
    missing = str(tmp_path / "missing.tif")
    result = run("info", str(stack), missing, str(stack), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.count(str(stack)) == 2
    assert result.stderr.startswith("pims-video: error: ")
    assert "missing.tif" in result.stderr

    result = run("info", "--json", missing, str(stack), cwd=tmp_path)
    assert result.returncode == 1
    bad, good = json.loads(result.stdout)
    assert bad["path"] == missing and "no such file" in bad["error"]
    assert good["path"] == str(stack) and good["dtype"] == "uint16"
    assert "missing.tif" in result.stderr


# ---- convert --------------------------------------------------------------------------------


def test_convert_default_is_composite_max_projection_over_time(stack, pixels, tmp_path):
    result = run("convert", str(stack), "out.mp4", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "out.mp4"))
    assert n_frames == SIZES["n_frames"]
    meta, video = read_video(tmp_path / "out.mp4")
    assert meta["size"] == (SIZES["width"], SIZES["height"])
    assert meta["fps"] == pytest.approx(10.0)  # ImageJ finterval 0.1 s
    projection = pixels.max(axis=1)  # T C Y X: max over z
    # Default colours: channel 0 green, channel 1 magenta (red + blue).
    for t in (0, SIZES["n_frames"] - 1):
        assert correlation(video[t, ..., 1], projection[t, 0]) > 0.8
        assert correlation(video[t, ..., 0], projection[t, 1]) > 0.8
        assert correlation(video[t, ..., 2], projection[t, 1]) > 0.8


def test_convert_one_channel_one_plane(stack, pixels, tmp_path):
    result = run("convert", str(stack), "c1z2.mp4", "--channels", "1", "--project", "none",
                 "--coords", "z=2", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, video = read_video(tmp_path / "c1z2.mp4", pix_fmt="gray")
    t = 3
    scores = {(z, c): correlation(video[t], pixels[t, z, c])
              for z in range(SIZES["n_z"]) for c in range(SIZES["n_channels"])}
    assert max(scores, key=scores.get) == (2, 1)


def test_convert_animates_z_and_takes_a_frame_range(stack, pixels, tmp_path):
    result = run("convert", str(stack), "z.mp4", "--axis", "z", "--coords", "t=5",
                 "--channels", "0", "--fps", "4", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta, video = read_video(tmp_path / "z.mp4", pix_fmt="gray")
    assert len(video) == SIZES["n_z"] and meta["fps"] == pytest.approx(4)
    for z in range(SIZES["n_z"]):
        assert correlation(video[z], pixels[5, z, 0]) > 0.9

    result = run("convert", str(stack), "range.mp4", "--start", "1", "--stop", "7", "--step", "3",
                 "--channels", "0", "--coords", "z=0", "--project", "none", "--no-progress",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta, video = read_video(tmp_path / "range.mp4", pix_fmt="gray")
    assert len(video) == 2 and meta["fps"] == pytest.approx(10.0)
    for frame, t in zip(video, (1, 4), strict=True):
        scores = [correlation(frame, pixels[u, 0, 0]) for u in range(SIZES["n_frames"])]
        assert int(np.argmax(scores)) == t


def test_convert_lossless_round_trip(stack, pixels, tmp_path):
    result = run("convert", str(stack), "exact.mkv", "--lossless", "--channels", "0",
                 "--project", "none", "--coords", "z=1", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, video = read_video(tmp_path / "exact.mkv", pix_fmt="gray16le")
    assert np.array_equal(video, pixels[:, 1, 0])


def test_convert_single_plane_file(tmp_path, pixels):
    tifffile.imwrite(tmp_path / "plane.tif", pixels[0, 0, 0])
    result = run("convert", "plane.tif", "plane.mp4", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, video = read_video(tmp_path / "plane.mp4", pix_fmt="gray")
    assert len(video) == 1 and correlation(video[0], pixels[0, 0, 0]) > 0.9
    assert "plane.mp4: 1 frame, 96x64, " in result.stdout  # not "1 frames"
    result = run("batch", "plane.tif", "--out", "movies", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok plane.tif -> movies/plane.mp4 (1 frame, 96x64, " in result.stdout
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "movies/plane.mp4"))[0] == 1


@pytest.fixture
def plane_files(pixels, tmp_path) -> Path:
    folder = tmp_path / "planes"
    folder.mkdir()
    for t in range(5):
        tifffile.imwrite(folder / f"img_t{t:03d}.tif", pixels[t, 0, 0])
    return folder


@pytest.mark.parametrize("pattern", ["{folder}", "{folder}/img_t*.tif"], ids=["folder", "glob"])
def test_convert_folder_and_glob(plane_files, pixels, tmp_path, pattern):
    source = pattern.format(folder=plane_files)
    result = run("convert", source, "seq.mp4", "--fps", "5", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta, video = read_video(tmp_path / "seq.mp4", pix_fmt="gray")
    assert len(video) == 5 and meta["fps"] == pytest.approx(5)
    for t in range(5):
        assert correlation(video[t], pixels[t, 0, 0]) > 0.9


# ---- batch ----------------------------------------------------------------------------------


def test_convert_glob_of_png_images(tmp_path):
    # a glob of other images than TIFF is read by pims (ImageSequence), as pims.open does
    import imageio.v3 as iio

    images = np.random.default_rng(3).integers(0, 256, (3, 12, 16), dtype=np.uint8)
    (tmp_path / "png").mkdir()
    for i, image in enumerate(images):
        iio.imwrite(tmp_path / "png" / f"img_{i}.png", image)
    result = run("convert", "png/img_*.png", "png.mkv", "--lossless", "--no-progress",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, frames = read_video(tmp_path / "png.mkv", "gray")
    np.testing.assert_array_equal(frames, images)


def test_batch_reports_a_bad_input_and_converts_the_others(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, frames in (("a", 3), ("b", 5)):
        write_sample(inputs / f"{name}.tif", seed=2, n_frames=frames, n_z=1, n_channels=1,
                     height=32, width=48, n_spots=3)
    (inputs / "bad.tif").write_text("not a tiff")
    result = run("batch", str(inputs / "a.tif"), str(inputs / "bad.tif"), str(inputs / "b.tif"),
                 "--out", "movies", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "bad.tif" in result.stderr
    assert "2 of 3 converted" in result.stdout and "1 failed" in result.stdout
    movies = tmp_path / "movies"
    assert sorted(p.name for p in movies.iterdir()) == ["a.mp4", "b.mp4"]
    for name, frames in (("a", 3), ("b", 5)):
        assert imageio_ffmpeg.count_frames_and_secs(str(movies / f"{name}.mp4"))[0] == frames


def test_batch_of_the_files_of_each_position_makes_one_movie_per_position(tmp_path):
    """Each file of a Micro-Manager dataset opens the whole dataset: the movies of
    acq_MMStack_Pos0 and acq_MMStack_Pos1 both showed position 0."""
    from mmwriter import write_mmstack

    data = np.random.default_rng(3).integers(0, 4000, (2, 3, 1, 1, 16, 20), np.uint16)
    files = write_mmstack(tmp_path, data)  # P, T, Z, C, Y, X
    result = run("batch", *map(str, files), "--out", "movies", "--ext", "mkv", "--lossless",
                 "--contrast", "none", "--no-progress", "--jobs", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for position, path in enumerate(files):
        _, frames = read_video(tmp_path / "movies" / f"{path.name[:-8]}.mkv", "gray16le")
        np.testing.assert_array_equal(frames, data[position, :, 0, 0])


def test_batch_skips_the_continuation_files_of_a_position_given_with_its_first(tmp_path):
    """Each file of a position split over several files opens the whole position: batch of
    acq_MMStack_Pos*.ome.tif made one more movie per continuation file, the same as its
    position's (twice the work on an acquisition of files over 4 GB)."""
    from mmwriter import write_mmstack

    data = np.random.default_rng(4).integers(0, 4000, (2, 5, 1, 1, 16, 20), np.uint16)
    files = write_mmstack(tmp_path, data, max_images_per_file=2)  # P, T, Z, C, Y, X
    names = sorted(p.name for p in files)
    assert names == [f"acq_MMStack_Pos{p}{part}.ome.tif" for p in (0, 1)
                     for part in ("", "_1", "_2")]
    (tmp_path / "alone").mkdir()  # a continuation without its first file: its own movie
    for name in ("acq_MMStack_Pos0.ome.tif", "acq_MMStack_Pos0_1.ome.tif",
                 "acq_MMStack_Pos0_2.ome.tif"):
        shutil.copy(tmp_path / name, tmp_path / "alone" / name)
    inputs = [*names, "alone/acq_MMStack_Pos0_2.ome.tif"]
    result = run("batch", *inputs, "--out", "movies", "--ext", "mkv", "--lossless",
                 "--contrast", "none", "--no-progress", "--jobs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    skipped = re.findall(r"skipped (\S+): it continues (\S+), whose movie holds it",
                         result.stdout)
    assert sorted(skipped) == [(f"acq_MMStack_Pos{p}_{k}.ome.tif", f"acq_MMStack_Pos{p}.ome.tif")
                               for p in (0, 1) for k in (1, 2)]
    assert "3 of 3 converted into movies (4 continuation files skipped)" in result.stdout
    movies = tmp_path / "movies"
    assert sorted(p.name for p in movies.iterdir()) == [
        "acq_MMStack_Pos0.mkv", "acq_MMStack_Pos0_2.mkv", "acq_MMStack_Pos1.mkv"]
    for movie, position in (("acq_MMStack_Pos0", 0), ("acq_MMStack_Pos0_2", 0),
                            ("acq_MMStack_Pos1", 1)):
        _, frames = read_video(movies / f"{movie}.mkv", "gray16le")
        np.testing.assert_array_equal(frames, data[position, :, 0, 0])


def test_batch_skips_an_ndtiff_continuation_file_given_with_its_first(real_data, tmp_path):
    from test_sequence import _split_ndtiff_dataset

    _split_ndtiff_dataset(real_data, tmp_path)  # ds_NDTiffStack.tif, ds_NDTiffStack_1.tif
    result = run("batch", "ds_NDTiffStack_1.tif", "ds_NDTiffStack.tif", "--out", "movies",
                 "--ext", "mkv", "--no-progress", "--jobs", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("skipped ds_NDTiffStack_1.tif: it continues ds_NDTiffStack.tif, whose movie holds "
            "it") in result.stdout
    assert "1 of 1 converted into movies (1 continuation file skipped)" in result.stdout
    movies = tmp_path / "movies"
    assert [p.name for p in movies.iterdir()] == ["ds_NDTiffStack.mkv"]
    # every time point, half of them in the skipped file
    assert imageio_ffmpeg.count_frames_and_secs(str(movies / "ds_NDTiffStack.mkv"))[0] == 8


def test_fill_missing_reads_an_imagej_file_cut_in_its_pixels(tmp_path):
    """A cut ImageJ stack: without --fill-missing the error says how to read it (pims's own
    reader then shows one plane, with a warning); with it, info counts the missing planes and
    convert writes every time point, those the file lacks as the value."""
    data = np.random.default_rng(6).integers(1, 200, (10, 32, 40), np.uint8)
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX"})
    with tifffile.TiffFile(path) as tif:
        start = tif.pages.first.dataoffsets[0]
    os.truncate(path, start + 4 * data[0].nbytes + 100)  # 4 images whole
    result = run("info", "cut.tif", cwd=tmp_path)
    assert "pims-video: warning: " in result.stderr  # pims's own reader shows one plane
    assert "--fill-missing 0 reads the images it holds" in result.stderr
    result = run("info", "cut.tif", "--fill-missing", "0", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert record["sizes"] == {"t": 10, "y": 32, "x": 40} and record["missing_planes"] == 6
    result = run("convert", "cut.tif", "cut.mkv", "--fill-missing", "0", "--lossless",
                 "--contrast", "none", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, frames = read_video(tmp_path / "cut.mkv", "gray")
    np.testing.assert_array_equal(frames[:4], data[:4])
    assert not frames[4:].any()


def test_batch_refuses_an_unknown_extension_before_any_work(tmp_path, stack):
    result = run("batch", str(stack), "--out", "movies", "--ext", "xyz", cwd=tmp_path)
    _assert_one_line_error(result, "unknown video extension '.xyz'")
    assert not (tmp_path / "movies").exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--ext", "mkv", "--fps", "2000"], "--fps 2000 is more"),
        (["--crf", "99"], "0 to 51"),
        (["--preset", "nope"], "invalid preset 'nope'"),
        (["--ext", "gif", "--crf", "20"], "crf does not apply"),
        (["--scale", "0.3"], "scale"),
        (["--percentiles", "99,1"], "percentiles must be two increasing values"),
        (["--percentiles", "-5,99"], "percentiles must lie in [0, 100]"),
        (["--gamma", "inf"], "gamma must be a finite number"),
        (["--contrast", "10,5"], "lo <= hi"),
        (["--colormap", "nosuchmap"], "unknown colormap 'nosuchmap'"),
        (["--channel-colors", "green,nosuchcolour"], "nosuchcolour"),
    ],
)
def test_batch_refuses_bad_options_once_before_any_work(tmp_path, stack, options, fragment):
    result = run("batch", str(stack), str(stack.parent), "--out", "movies", *options,
                 cwd=tmp_path)
    _assert_one_line_error(result, fragment)  # once, not one FAILED line per input
    assert not (tmp_path / "movies").exists()


def test_batch_out_folder_under_a_file_is_a_usage_error(tmp_path, stack):
    """batch --out short.tif/m failed with a bare "[Errno 20] Not a directory"."""
    (tmp_path / "short.tif").write_bytes(b"")
    result = run("batch", str(stack), "--out", "short.tif/m", "--no-progress", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--out'" in result.stderr
    assert "cannot make the folder 'short.tif/m': 'short.tif' is a file" in result.stderr
    assert "Errno" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.tif"]


def test_batch_refuses_two_inputs_with_one_output_name(tmp_path, stack):
    other = tmp_path / "x"
    other.mkdir()
    shutil.copy(stack, other / stack.name)
    result = run("batch", str(stack), str(other / stack.name), "--out", "movies", cwd=tmp_path)
    assert result.returncode == 1
    assert "would both write" in result.stderr
    assert not (tmp_path / "movies").exists()


def test_batch_refuses_output_names_that_differ_only_in_case(tmp_path, stack):
    # one file on macOS and Windows (case-insensitive file systems): one movie would be lost
    shutil.copy(stack, tmp_path / "Cells.tif")
    shutil.copy(stack, tmp_path / "cells.TIF")
    result = run("batch", "Cells.tif", "cells.TIF", "--out", "movies", cwd=tmp_path)
    _assert_one_line_error(result, "Cells.tif and cells.TIF would both write", "cells.mp4")
    assert not (tmp_path / "movies").exists()


# ---- errors ---------------------------------------------------------------------------------


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pims-video: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_a_movie_is_never_written_over_its_input(tmp_path):
    """convert a.mp4 a.mp4, or a batch writing into the folder of its input movies, replaced
    the input with its re-encoding."""
    movie = tmp_path / "a.mp4"
    write_sample(tmp_path / "s.tif", n_frames=3, n_z=1, n_channels=1, height=32, width=32)
    assert run("convert", "s.tif", "a.mp4", "--no-progress", cwd=tmp_path).returncode == 0
    original = movie.read_bytes()
    (tmp_path / "link.mp4").symlink_to(movie)
    for args in (["convert", "a.mp4", "a.mp4"], ["convert", "link.mp4", "a.mp4"],
                 ["batch", "a.mp4", "--out", "."]):
        result = run(*args, "--no-progress", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert "is the input" in result.stderr
        assert movie.read_bytes() == original


def test_missing_input_is_one_line_error(tmp_path):
    result = run("convert", "missing.tif", "out.mp4", cwd=tmp_path)
    _assert_one_line_error(result, "missing.tif")
    assert not (tmp_path / "out.mp4").exists()


def test_convert_to_a_path_ending_in_a_separator_is_refused(stack, tmp_path):
    """convert x.tif out.mp4/ wrote out.mp4: a trailing separator names a folder."""
    result = run("convert", str(stack), "out.mp4/", "--no-progress", cwd=tmp_path)
    _assert_one_line_error(result, "out.mp4/", "names a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_not_a_tiff_is_one_line_error(tmp_path):
    (tmp_path / "bad.tif").write_text("hello")
    _assert_one_line_error(run("info", "bad.tif", cwd=tmp_path), "bad.tif")


def test_one_line_error_keeps_the_reasons_listed_below_it(tmp_path):
    # pims_videoutils.open lists why each reader failed on the lines after "...open it:"
    (tmp_path / "bad.tif").write_text("hello")
    result = run("convert", "bad.tif", "out.mp4", cwd=tmp_path)
    _assert_one_line_error(result, "could open it: ", "TiffStackND", "not a TIFF file")


def _convert_with_fake_ffmpeg(tmp_path, script: str, width: int = 16):
    """Run ``convert k.tif k.mp4`` (2 frames of 16 x ``width``) with ``script`` as ffmpeg."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    tifffile.imwrite(tmp_path / "k.tif", np.zeros((2, 16, width), np.uint8))
    return run("convert", "k.tif", "k.mp4", "--no-progress", cwd=tmp_path,
               IMAGEIO_FFMPEG_EXE=str(fake))


def test_ffmpeg_failure_is_one_line_naming_its_cause(tmp_path):
    # ffmpeg's first error says why, later ones do not (lines as the bundled ffmpeg writes
    # them when x265 refuses a frame size; what fails for real is refused before ffmpeg)
    result = _convert_with_fake_ffmpeg(
        tmp_path,
        "echo 'x265 [warning]: level 6 detected, but CTU size 16 is non-compliant' >&2\n"
        "echo '[libx265 @ 0x1] [error] Cannot open libx265 encoder.' >&2\n"
        "echo '[vost#0:0/libx265 @ 0x2] [error] Error while opening encoder' >&2\n"
        "exit 1\n",
        width=64,
    )
    _assert_one_line_error(result, "ffmpeg", "Cannot open libx265 encoder")
    assert "opening encoder" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffmpeg", "k.tif"]


def test_ffmpeg_killed_by_a_signal_says_so(tmp_path):
    """An ffmpeg killed (out of memory...) showed "(ffmpeg exit code -9)"."""
    result = _convert_with_fake_ffmpeg(tmp_path, "kill -9 $$\n")
    _assert_one_line_error(result, "(ffmpeg killed by signal 9 (SIGKILL))")
    assert "exit code" not in result.stderr


def test_ffmpeg_that_ended_well_is_not_said_to_exit_with_code_0(tmp_path):
    """An error found after ffmpeg exited 0 (here: it reported no frames) ended with
    "(ffmpeg exit code 0)", as if ffmpeg had failed."""
    result = _convert_with_fake_ffmpeg(tmp_path, "cat >/dev/null\nexit 0\n")
    _assert_one_line_error(result, "ffmpeg did not report how many frames it encoded")
    assert "exit code" not in result.stderr


def test_convert_rgba_tiff_shows_its_colours(tmp_path):
    data = np.random.default_rng(2).integers(0, 256, (3, 16, 20, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", data, photometric="rgb", extrasamples=[2])
    result = run("convert", "rgba.tif", "rgba.mkv", "--lossless", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, frames = read_video(tmp_path / "rgba.mkv")
    np.testing.assert_array_equal(frames, tifffile.imread(tmp_path / "rgba.tif")[..., :3])


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--coords", "q=0"], "no axis 'q'"),
        (["--coords", "z=7"], "out of range"),
        (["--channels", "5"], "out of range"),
        (["--axis", "y"], "image axis"),
        (["--axis", "tt"], "given twice"),
        (["--start", "50"], "frames 50: select no frame of 8"),
        (["--start", "5", "--stop", "2"], "frames 5:2 select no frame of 8"),
        (["--scale", "0.3"], "scale"),
        (["--codec", "nonsense"], "nonsense"),
        (["--preset", "nope"], "invalid preset 'nope'"),  # refused before ffmpeg starts
    ],
)
def test_bad_arguments_for_this_stack_exit_1(stack, tmp_path, options, fragment):
    result = run("convert", str(stack), "out.mp4", "--no-progress", *options, cwd=tmp_path)
    _assert_one_line_error(result, fragment)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--contrast", "none"], ["--contrast none", "--lossless", "--contrast auto or LO,HI"]),
        (["--lossless"], ["--lossless writes ffv1"]),
        (["--scale", "0.0078125"], ["--scale 0.0078125 leaves no pixel"]),
        (["--channel-colors", "red"], ["1 colour given by --channel-colors for 2 channels"]),
    ],
)
def test_errors_name_the_command_line_options(stack, tmp_path, options, fragments):
    result = run("convert", str(stack), "out.mp4", "--no-progress", *options, cwd=tmp_path)
    _assert_one_line_error(result, *fragments)
    assert not re.search(r"\w=(None|True|')|\(lo, hi\)|channel_colors", result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["convert", "a.tif"],
        ["convert", "a.tif", "b.mp4", "--bogus"],
        ["convert", "a.tif", "b.mp4", "--coords", "z1"],
        ["convert", "a.tif", "b.mp4", "--contrast", "bright"],
        ["convert", "a.tif", "b.mp4", "--fps", "-3"],
        ["batch", "a.tif"],
        ["sample", "s.tif", "--seed", "-1"],
        ["nocommand"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Usage:" in result.stderr and "Error:" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "info", "missing.tif", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "StackNotFoundError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("pims-video: error: ")


def test_debug_shows_the_traceback_of_a_failed_batch_input(tmp_path):
    (tmp_path / "bad.tif").write_text("not a tiff")
    result = run("--debug", "batch", "bad.tif", "--out", "movies", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "StackReadError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("pims-video: FAILED bad.tif: ")


def _processes_naming(text: str) -> list[int]:
    """Process ids of the processes whose command line contains ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"),  # Ctrl-C
     (signal.SIGTERM, 143, "terminated")],  # kill, timeout, a batch system's time limit
)
def test_ctrl_c_or_sigterm_stops_ffmpeg_and_leaves_no_file(tmp_path, signum, code, word):
    # SIGTERM killed the process on the spot: ffmpeg went on encoding into a hidden file
    write_sample(tmp_path / "long.tif", n_frames=400, n_z=1, n_channels=1, height=256,
                 width=256, n_spots=5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    process = subprocess.Popen(
        [sys.executable, "-m", "pims_videoutils", "convert", "long.tif", "long.mp4",
         "--preset", "veryslow"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        seen = ""  # wait until frames flow to ffmpeg (the progress bar counts some)
        while not re.search(r" [1-9]\d*/400 ", seen) and process.poll() is None:
            seen += process.stderr.read(1)
        process.send_signal(signum)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for orphan in _processes_naming(str(tmp_path)):  # do not leave an ffmpeg running
            os.kill(orphan, signal.SIGKILL)
    assert process.returncode == code, seen + rest
    assert f"pims-video: {word}" in rest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.tif"]
    assert _processes_naming(str(tmp_path)) == []


def _start_batch_of_three(folder: Path, n_frames: int, *options: str,
                          **popen: Any) -> subprocess.Popen:
    """Write three samples s0-s2.tif in ``folder`` and start ``pims-video batch`` on them."""
    for i in range(3):
        write_sample(folder / f"s{i}.tif", seed=i, n_frames=n_frames, n_z=1, n_channels=1,
                     height=128, width=128, n_spots=5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    return subprocess.Popen(
        [sys.executable, "-m", "pims_videoutils", "batch", "s0.tif", "s1.tif", "s2.tif",
         "--out", "movies", *options],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def _wait_until_both_workers_encode(process: subprocess.Popen, movies: Path) -> None:
    """Wait (up to a minute) until two temporary movies in ``movies`` hold data."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if len([p for p in movies.glob(".*") if p.stat().st_size > 0]) == 2:
            return
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_a_batch_and_starts_no_queued_input(tmp_path, signum, code):
    # Like Ctrl-C in a terminal, or a batch system cancelling a job: the signal goes to the
    # whole process group (workers, ffmpeg too). SIGTERM left the workers' hidden files.
    process = _start_batch_of_three(tmp_path, 300, "--jobs", "2", "--preset", "veryslow",
                                    start_new_session=True)
    try:
        movies = tmp_path / "movies"
        _wait_until_both_workers_encode(process, movies)
        os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == code, stderr
    assert list(movies.iterdir()) == []  # no movie, no partial file, s2 never started


def _workers(pid: int) -> list[int]:
    """Process ids of the multiprocessing workers (spawned children) of process ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            continue
    return workers


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_batch_goes_on_when_a_worker_is_killed(tmp_path, lock_holder):
    # e.g. the out-of-memory killer: that input fails, the others are converted; the
    # temporary file of another live export to the same movie (e.g. a "convert" in another
    # terminal), which that process holds locked, is left to it
    movies = tmp_path / "movies"
    movies.mkdir()
    held = movies / ".s0.tmp-0000abcd.mp4"
    lock_holder(held)
    process = _start_batch_of_three(tmp_path, 200, "--jobs", "1", "--preset", "ultrafast")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if [p for p in movies.glob(".s0.*") if p.stat().st_size > 0]:  # s0 is encoding
                break
            time.sleep(0.02)
        for worker in _workers(process.pid):
            os.kill(worker, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    assert "FAILED s0.tif: a worker process died" in stderr
    assert "2 of 3 converted" in stdout and "1 failed: s0.tif" in stdout
    # the dead worker's temporary file is gone, the live holder's kept
    assert sorted(p.name for p in movies.iterdir()) == [held.name, "s1.mp4", "s2.mp4"]
    for name in ("s1", "s2"):
        assert imageio_ffmpeg.count_frames_and_secs(str(movies / f"{name}.mp4"))[0] == 200


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_batch_retries_the_inputs_of_the_workers_stopped_with_a_killed_one(tmp_path):
    # one worker of two is killed: the pool stops the other one too. Only the killed
    # worker's input fails; the stopped one is converted in a new pool; no temporary file
    process = _start_batch_of_three(tmp_path, 300, "--jobs", "2", "--preset", "veryslow")
    try:
        movies = tmp_path / "movies"
        _wait_until_both_workers_encode(process, movies)
        os.kill(_workers(process.pid)[0], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    [killed] = re.findall(r"FAILED (s[01]\.tif): a worker process died", stderr)
    assert "2 of 3 converted" in stdout and f"1 failed: {killed}" in stdout
    converted = sorted({"s0", "s1", "s2"} - {killed[:2]})
    assert sorted(p.name for p in movies.iterdir()) == [f"{n}.mp4" for n in converted]
    for name in converted:
        assert imageio_ffmpeg.count_frames_and_secs(str(movies / f"{name}.mp4"))[0] == 300


#: pims-video, with the batch job of s0.tif holding its worker once its movie is written
#: (as a job whose result is on its way when another worker is killed)
_S0_HOLDS_AFTER_WRITING = """
import os
import sys
import time
from pathlib import Path

from pims_videoutils import cli

job = cli._batch_job


def _batch_job(number, source, *args):
    result = job(number, source, *args)
    if source == "s0.tif":
        Path("s0.pid").write_text(str(os.getpid()))
        os.rename("s0.pid", "s0.written")  # (whole)
        time.sleep(600)  # until the broken pool ends this worker
    return result


_batch_job.__module__, _batch_job.__qualname__ = cli.__name__, "_batch_job"
cli._batch_job = _batch_job  # in the workers too: they run this file first (spawn)
if __name__ == "__main__":
    sys.exit(cli.main())
"""


def _state(pid: int) -> str | None:
    """State letter of process ``pid`` in ``/proc`` (R, S, T stopped, Z zombie), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _has_exited(pid: int) -> bool:
    return _state(pid) in (None, "Z", "X")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_batch_keeps_a_movie_finished_just_before_another_worker_is_killed(tmp_path):
    # s0's movie is written and its result on its way when s1's worker is killed: the
    # broken pool lost s0's result, and s0 was reported as a second dead worker
    for name, n_frames in [("s0", 4), ("s1", 300), ("s2", 4)]:
        write_sample(tmp_path / f"{name}.tif", seed=1, n_frames=n_frames, n_z=1, n_channels=1,
                     height=128, width=128, n_spots=5)
    (tmp_path / "batch.py").write_text(_S0_HOLDS_AFTER_WRITING)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    process = subprocess.Popen(
        [sys.executable, "batch.py", "batch", "s0.tif", "s1.tif", "s2.tif", "--out", "movies",
         "--jobs", "2", "--preset", "veryslow"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    s1_ffmpeg = None
    try:
        # s1 cannot finish: its ffmpeg, writing its movie, is stopped (its worker then waits
        # to write frames, or for ffmpeg to end)
        movies = tmp_path / "movies"
        deadline = time.monotonic() + 60
        while s1_ffmpeg is None and time.monotonic() < deadline and process.poll() is None:
            if [p for p in movies.glob(".s1.*") if p.stat().st_size > 0]:
                s1_ffmpeg = next(iter(_processes_naming(".s1.tmp-")), None)
            time.sleep(0.01)
        assert s1_ffmpeg is not None, "s1's ffmpeg did not write"
        os.kill(s1_ffmpeg, signal.SIGSTOP)
        while _state(s1_ffmpeg) not in ("T", None, "Z"):
            time.sleep(0.01)
        assert _state(s1_ffmpeg) == "T", "s1's ffmpeg ended before it could be stopped"
        s1_worker = _parent(s1_ffmpeg)
        written = tmp_path / "s0.written"
        while not written.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        s0_worker = int(written.read_text())
        assert sorted(_workers(process.pid)) == sorted([s0_worker, s1_worker])
        os.kill(s1_worker, signal.SIGKILL)
        os.kill(s1_ffmpeg, signal.SIGCONT)  # it ends on its own, as after an out-of-memory kill
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if s1_ffmpeg is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(s1_ffmpeg, signal.SIGCONT)
        if process.poll() is None:
            for worker in _workers(process.pid):
                os.kill(worker, signal.SIGKILL)
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    assert re.findall(r"FAILED (\S+):", stderr) == ["s1.tif"]
    assert "ok s0.tif -> movies/s0.mp4 (4 frames, 128x128" in stdout
    assert "2 of 3 converted" in stdout and "1 failed: s1.tif" in stdout
    # no process left behind: the broken pool ended s0's worker, s1's ffmpeg ended on its own
    # (the workers of the pool that converted s2 held stdout: communicate() saw them end)
    assert _has_exited(s0_worker) and _has_exited(s1_worker)
    deadline = time.monotonic() + 60
    while not _has_exited(s1_ffmpeg) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _has_exited(s1_ffmpeg)
    assert sorted(p.name for p in movies.iterdir()) == ["s0.mp4", "s2.mp4"]
    for name in ("s0", "s2"):
        assert imageio_ffmpeg.count_frames_and_secs(str(movies / f"{name}.mp4"))[0] == 4


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"),  # kill <pid of pims-video>
     (signal.SIGINT, 130, "interrupted")],  # kill -INT <pid>: a job scheduler, timeout -s INT
)
def test_a_signal_to_the_batch_process_alone_stops_its_workers(tmp_path, signum, code, word):
    # the workers and their ffmpeg stop at once, as with convert, instead of finishing their
    # movies (SIGINT waited for them); no partial file is left
    process = _start_batch_of_three(tmp_path, 300, "--jobs", "2", "--preset", "veryslow")
    try:
        movies = tmp_path / "movies"
        _wait_until_both_workers_encode(process, movies)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for orphan in _processes_naming(str(tmp_path)):  # do not leave an ffmpeg running
            os.kill(orphan, signal.SIGKILL)
    assert process.returncode == code, stderr
    assert f"pims-video: {word}" in stderr
    assert list(movies.iterdir()) == []  # no movie finished, no partial file
    assert _processes_naming(str(tmp_path)) == []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_batch_process_alone_with_an_idle_worker_ends_it(tmp_path, signum, code):
    # s0's worker has no job left when the signal comes: ended while it waited for one, it
    # left the pool's job queue locked, and s1's worker, back from its stopped job, waited
    # for that lock forever (and the batch process for it)
    for name, n_frames, size in [("s0", 2, 32), ("s1", 300, 256)]:
        write_sample(tmp_path / f"{name}.tif", seed=1, n_frames=n_frames, n_z=1, n_channels=1,
                     height=size, width=size, n_spots=5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}
    process = subprocess.Popen(
        [sys.executable, "-m", "pims_videoutils", "batch", "s0.tif", "s1.tif", "--out",
         "movies", "--jobs", "2", "--preset", "veryslow"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = process.stdout.readline()  # s0 is done
        movies = tmp_path / "movies"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if [p for p in movies.glob(".s1.*") if p.stat().st_size > 0]:  # s1 is encoding
                break
            time.sleep(0.02)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
            for child in map(int, children.split()):
                os.kill(child, signal.SIGKILL)
            process.kill()
            process.wait()
    assert first.startswith("ok s0.tif")
    assert process.returncode == code, stderr
    assert sorted(p.name for p in movies.iterdir()) == ["s0.mp4"]  # no partial s1


# ---- helpers of the commands -----------------------------------------------------------


def test_batch_movie_names(tmp_path):
    from pims_videoutils.cli import _output_name

    (tmp_path / "run1").mkdir()
    assert _output_name(str(tmp_path / "cells.ome.tif")) == "cells"
    assert _output_name(str(tmp_path / "cells.TIFF")) == "cells"
    assert _output_name(str(tmp_path / "run1")) == "run1"
    assert _output_name(str(tmp_path / "run1" / "img_*.tif")) == "run1"
    assert _output_name(str(tmp_path / "run*" / "a.tif")) == tmp_path.name


def test_cli_spelling_leaves_paths_alone():
    from pims_videoutils.cli import _cli_spelling

    message = "/data/run fps=3 scale=2.mp4 exists (pass overwrite=True to replace it)"
    assert _cli_spelling(message) == message
    assert _cli_spelling("fps=2000 is more") == "--fps 2000 is more"
    assert _cli_spelling("colormap is for one channel: use channel_colors") == (
        "--colormap is for one channel: use --channel-colors"
    )
    assert _cli_spelling("no default colours for 9 channels: pass channel_colors=[...] (one") == (
        "no default colours for 9 channels: pass --channel-colors COLOR,... (one"
    )
    assert _cli_spelling("lossless=True needs codec ffv1, not 'gif'") == (
        "--lossless needs --codec ffv1, not 'gif'"
    )
