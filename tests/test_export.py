from __future__ import annotations

import os
import warnings
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pims
import pytest
import tifffile

from pims_videoutils import ExportArgumentError, FFmpegError, VideoResult, to_video
from pims_videoutils import _ffmpeg as ffmpeg_module
from pims_videoutils.readers import TiffStackND

# ---- independent decoding -------------------------------------------------------------


def read_back(path, pix_fmt="gray"):
    """Decode a video with PyAV (ffmpeg's libraries): (frames array, stream facts)."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format=pix_fmt) for f in container.decode(stream)])
        meta = {
            "size": (stream.width, stream.height),
            "fps": float(stream.average_rate),
            "pix_fmt": stream.codec_context.pix_fmt,
        }
    return frames, meta


def count(path):
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def display(values, lo, hi):
    """The documented 8-bit mapping, computed independently."""
    t = np.clip((np.asarray(values, np.float64) - lo) / (hi - lo), 0, 1)
    return np.floor(255 * t + 0.5)


def gradient_movie(n=12, h=48, w=64, dtype=np.uint16, base=300, step=150, spread=2000):
    """A smooth diagonal gradient getting brighter frame by frame."""
    y, x = np.mgrid[0:h, 0:w]
    plane = (y / (h - 1) + x / (w - 1)) / 2 * spread
    return np.stack([plane + base + step * t for t in range(n)]).astype(dtype)


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture
def no_ffmpeg(monkeypatch):
    """Fail if ffmpeg would start (for errors that must come before it)."""

    def refuse(*args, **kwargs):
        raise AssertionError("ffmpeg was started")

    monkeypatch.setattr(ffmpeg_module, "FFmpegProcess", refuse)


# ---- arrays -----------------------------------------------------------------------------


def test_uint16_default_contrast_values(tmp_path):
    movie = gradient_movie()
    result = to_video(movie, tmp_path / "m.mp4", fps=12, crf=1, progress=False)
    assert isinstance(result, VideoResult)
    lo, hi = np.percentile(movie, (0.1, 99.9))  # <= 50 frames: all are sampled
    np.testing.assert_allclose(result.intensity_range, (lo, hi))
    frames, meta = read_back(result.path)
    assert frames.shape == movie.shape
    assert meta["fps"] == 12
    assert count(result.path) == len(movie) == result.n_frames
    assert (result.width, result.height, result.padding) == (64, 48, (0, 0))
    assert (result.codec, result.pixel_format) == ("libx264", "yuv420p")
    assert np.abs(frames.astype(int) - display(movie, lo, hi)).max() <= 2


def test_brightness_ramp_stays_a_ramp(tmp_path):
    rng = np.random.default_rng(0)
    movie = gradient_movie(n=20, spread=400, step=100)
    movie = (movie + rng.normal(0, 20, movie.shape)).astype(np.uint16)
    to_video(movie, tmp_path / "auto.mp4", progress=False)
    means = read_back(tmp_path / "auto.mp4")[0].mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0)
    assert means[-1] - means[0] > 150
    # per-frame contrast (opt-in) flattens the ramp: what the default avoids
    result = to_video(movie, tmp_path / "frame.mp4", contrast="frame", progress=False)
    assert result.intensity_range is None
    flat = read_back(tmp_path / "frame.mp4")[0].mean(axis=(1, 2))
    assert np.ptp(flat) < 10


def test_fixed_contrast_and_gamma(tmp_path):
    movie = gradient_movie(n=4)
    result = to_video(
        movie, tmp_path / "m.mkv", contrast=(500, 1500), lossless=True, gamma=0.5, progress=False
    )
    assert result.intensity_range == (500.0, 1500.0)
    frames, _ = read_back(result.path)
    t = np.clip((movie.astype(float) - 500) / 1000, 0, 1)
    np.testing.assert_array_equal(frames, np.floor(255 * np.sqrt(t) + 0.5))


@pytest.mark.parametrize("options", [{}, {"colormap": "gray"}, {"colormap": "Grey"}])
def test_uint16_ffv1_round_trip_is_bit_exact(tmp_path, options):
    """colormap='gray' (pims-video --colormap gray) was mapped to 8 bits and sent as RGB,
    whereas channel_colors=['gray'] keeps the gray path: gray is gray."""
    rng = np.random.default_rng(1)
    movie = rng.integers(0, 65536, (7, 33, 45), dtype=np.uint16)
    result = to_video(movie, tmp_path / "exact.mkv", lossless=True, progress=False, **options)
    assert (result.codec, result.pixel_format) == ("ffv1", "gray16le")
    assert result.intensity_range == (0.0, 65535.0)
    frames, _ = read_back(result.path, "gray16le")
    np.testing.assert_array_equal(frames, movie)


@pytest.mark.parametrize("options", [{}, {"contrast": None}, {"channel_colors": ["gray"]}])
def test_uint16_single_channel_ffv1_round_trip_is_bit_exact(tmp_path, options):
    """Frames (Y, X, 1), e.g. a reader bundling a channel axis of one channel, are gray
    too: stored unscaled like (Y, X) frames (they were mapped to 8 bits, and contrast=None
    refused)."""
    rng = np.random.default_rng(1)
    movie = rng.integers(0, 65536, (4, 33, 45, 1), dtype=np.uint16)
    result = to_video(movie, tmp_path / "exact.mkv", lossless=True, progress=False, **options)
    assert (result.codec, result.pixel_format) == ("ffv1", "gray16le")
    assert result.intensity_range == [(0.0, 65535.0)]
    frames, _ = read_back(result.path, "gray16le")
    np.testing.assert_array_equal(frames, movie[..., 0])


def test_uint16_single_channel_in_colour_is_mapped_to_8_bits(tmp_path):
    movie = np.random.default_rng(1).integers(0, 4000, (2, 16, 16, 1), dtype=np.uint16)
    result = to_video(movie, tmp_path / "green.mkv", lossless=True, channel_colors=["green"],
                      progress=False)
    assert result.pixel_format == "gbrp"
    rgb = read_back(result.path, "rgb24")[0]
    assert not rgb[..., [0, 2]].any() and rgb[..., 1].max() == 255


def test_uint8_ffv1_avi_round_trip_is_bit_exact(tmp_path):
    movie = np.random.default_rng(2).integers(0, 256, (5, 20, 30), dtype=np.uint8)
    result = to_video(movie, tmp_path / "exact.avi", lossless=True, progress=False)
    assert result.pixel_format == "gray"
    np.testing.assert_array_equal(read_back(result.path)[0], movie)


def test_odd_size_is_padded_not_scaled(tmp_path):
    movie = gradient_movie(n=3, h=31, w=41, dtype=np.uint8, base=20, step=30, spread=150)
    result = to_video(movie, tmp_path / "odd.mp4", crf=0, progress=False)
    assert (result.height, result.width, result.padding) == (32, 42, (1, 1))
    frames, meta = read_back(result.path)
    assert meta["size"] == (42, 32)
    assert np.abs(frames[:, :31, :41].astype(int) - movie).max() <= 2
    assert frames[:, 31, :].max() <= 2 and frames[:, :, 41].max() <= 2


@pytest.mark.parametrize(
    ("shape", "preset"),
    [((1, 1), None), ((9, 200), None), ((15, 3), None),
     # x265 aborted (heap corruption) on frames under 32 high and 34-48 wide, and its
     # placebo preset refused frames under 32 on either side
     ((17, 33), None), ((16, 48), "ultrafast"), ((30, 36), None), ((20, 20), "placebo")],
)
def test_frames_too_small_for_libx265_are_padded(tmp_path, shape, preset):
    # e.g. a kymograph 9 pixels high: ffmpeg's libx265 refuses frames under 16 x 16
    movie = np.full((2, *shape), 200, np.uint8)
    result = to_video(movie, tmp_path / "k.mp4", codec="libx265", crf=0, preset=preset,
                      progress=False)
    height, width = max(32, shape[0] + shape[0] % 2), max(32, shape[1] + shape[1] % 2)
    assert (result.height, result.width) == (height, width)
    assert result.padding == (height - shape[0], width - shape[1])
    frames, meta = read_back(result.path)
    assert meta["size"] == (width, height) and len(frames) == 2
    assert np.abs(frames[:, : shape[0], : shape[1]].astype(int) - 200).max() <= 3
    assert frames[:, shape[0] + 1 :].max(initial=0) <= 3  # black below (one row of chroma)


@pytest.mark.parametrize(("shape", "padded"), [((16, 8192), (32, 8192)), ((5000, 9), (5000, 32))])
def test_long_thin_frames_for_libx265_are_padded_to_32(tmp_path, shape, padded):
    # a kymograph: above 4096 pixels (HEVC level 5+) x265 needs 32 pixel CTUs and refused
    # frames under 32 pixels on their short side ("Cannot open libx265 encoder")
    movie = np.full((1, *shape), 200, np.uint8)
    result = to_video(movie, tmp_path / "k.mp4", codec="libx265", crf=0, progress=False)
    assert result.padding == (padded[0] - shape[0], padded[1] - shape[1])
    frames, meta = read_back(result.path)
    assert meta["size"] == padded[::-1]
    assert np.abs(frames[:, : shape[0], : shape[1]].astype(int) - 200).max() <= 3


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64, np.int32])
def test_other_dtypes_use_percentiles(tmp_path, dtype):
    movie = gradient_movie(n=5, spread=1000, base=0, step=0).astype(np.int32) - 500
    movie = movie.astype(dtype)
    result = to_video(movie, tmp_path / "m.mkv", lossless=True, progress=False)
    lo, hi = np.percentile(movie.astype(np.float64), (0.1, 99.9))
    np.testing.assert_allclose(result.intensity_range, (lo, hi), rtol=1e-6)
    frames, _ = read_back(result.path)
    assert np.abs(frames.astype(int) - display(movie, lo, hi)).max() <= 1


def test_float_nan_is_black(tmp_path):
    movie = np.linspace(0, 1, 4 * 8 * 10, dtype=np.float32).reshape(4, 8, 10)
    movie[:, 0, 0] = np.nan
    result = to_video(movie, tmp_path / "m.mkv", lossless=True, contrast=(0, 1), progress=False)
    frames, _ = read_back(result.path)
    assert (frames[:, 0, 0] == 0).all()
    np.testing.assert_array_equal(frames[:, 1:], display(movie[:, 1:], 0, 1))


def colour_table(tmp_path, **colour):
    """The 256 colours a movie shows for the 8-bit levels 0-255, read back from a movie."""
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    result = to_video(ramp, tmp_path / "table.mkv", lossless=True, progress=False, **colour)
    return read_back(result.path, "rgb24")[0][0].reshape(256, 3)


def special_values_movie(dtype):
    """Frames of values 0-1 with NaN, +inf and -inf pixels (NaN over a whole first row)."""
    movie = np.linspace(0, 1, 3 * 8 * 10).reshape(3, 8, 10).astype(dtype)
    movie[:, 0, :] = np.nan
    movie[:, 1, 0], movie[:, 1, 1] = np.inf, -np.inf
    return movie


@pytest.mark.parametrize(
    "dtype, contrast",
    [(np.float16, (0, 1)), (np.float32, (0, 1)), (np.float64, (0, 1)),
     (np.float32, "auto"), (np.float32, "frame"), (np.float64, (0.2, 0.2))],
)
@pytest.mark.parametrize(
    "colormap", ["viridis", "gray_r", "orange", np.full((256, 3), 200, np.uint8)]
)
def test_nan_is_black_whatever_the_colormap(tmp_path, dtype, contrast, colormap):
    """NaN was drawn in the colormap's first colour (viridis: 68, 1, 84; gray_r: white); the
    other values, infinities included, take the colour of their gray level."""
    movie = special_values_movie(dtype)
    options = {"lossless": True, "contrast": contrast, "progress": False}
    gray, _ = read_back(to_video(movie, tmp_path / "gray.mkv", **options).path)
    coloured, _ = read_back(
        to_video(movie, tmp_path / "c.mkv", colormap=colormap, **options).path, "rgb24"
    )
    expected = colour_table(tmp_path, colormap=colormap)[gray]
    expected[np.isnan(movie)] = 0
    np.testing.assert_array_equal(coloured, expected)
    assert (gray[:, 1, :2] == [255, 0]).all()  # +inf the highest level, -inf the lowest


def test_nan_adds_nothing_to_a_composite(tmp_path):
    """A channel whose value is NaN adds black to the composite, not its first colour."""
    movie = np.stack([special_values_movie(np.float32)] * 2, axis=-1)
    movie[:, 2, :, 1] = np.nan  # NaN in channel 1 only
    movie[:, 0, :5, 1] = 0.5  # NaN in channel 0 only
    colors = ["viridis", "magenta"]
    result = to_video(movie, tmp_path / "c.mkv", lossless=True, contrast=(0, 1),
                      channel_axis=-1, channel_colors=colors, progress=False)
    video, _ = read_back(result.path, "rgb24")
    expected = np.zeros(video.shape, np.int64)
    for c, color in enumerate(colors):
        levels = display(np.nan_to_num(movie[..., c]), 0, 1).astype(np.intp)
        coloured = colour_table(tmp_path, colormap=color)[levels].astype(np.int64)
        coloured[np.isnan(movie[..., c])] = 0
        expected += coloured
    np.testing.assert_array_equal(video, np.minimum(expected, 255))


def test_max_projection_ignores_nan_and_draws_all_nan_black_with_a_colormap(tmp_path):
    """A NaN in one z plane made the projected pixel NaN (black) whatever the other planes
    held (numpy's max); ImageJ's max projection ignores NaN."""
    movie = np.random.default_rng(5).random((3, 4, 8, 10)).astype(np.float32)  # T, Z, Y, X
    movie[:, 2, :3] = np.nan  # part of one plane masked out: the other planes' max shows
    movie[:, :, 5, :4] = np.nan  # no value in any plane: NaN, black
    result = to_video(movie, tmp_path / "p.mkv", lossless=True, contrast=(0, 1),
                      projection="max", projection_axis=1, colormap="viridis", progress=False)
    video, _ = read_back(result.path, "rgb24")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the all-NaN pixels)
        projected = np.nanmax(movie, axis=1)
    assert np.isnan(projected).sum() == 3 * 4 and not np.isnan(projected[:, :3]).any()
    levels = display(np.nan_to_num(projected), 0, 1).astype(np.intp)
    expected = colour_table(tmp_path, colormap="viridis")[levels]
    expected[np.isnan(projected)] = 0
    np.testing.assert_array_equal(video, expected)


def test_bool_is_0_or_255(tmp_path):
    movie = np.zeros((3, 10, 12), bool)
    movie[:, 2:5, 3:9] = True
    result = to_video(movie, tmp_path / "b.mkv", lossless=True, progress=False)
    np.testing.assert_array_equal(read_back(result.path)[0], movie * 255)


def test_bool_with_a_fixed_contrast_is_mapped_as_0_and_1(tmp_path):
    movie = np.zeros((2, 4, 6), bool)
    movie[:, 1:3, 2:5] = True
    result = to_video(movie, tmp_path / "b.mkv", lossless=True, contrast=(0, 2), progress=False)
    np.testing.assert_array_equal(read_back(result.path)[0], display(movie, 0, 2))
    assert result.intensity_range == (0, 2)


def test_every_frame_is_one_output_frame(tmp_path):
    movie = gradient_movie(n=37, h=16, w=16, dtype=np.uint8, spread=100, step=1)
    result = to_video(movie, tmp_path / "m.mp4", fps=7.5, progress=False)
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(result.path))
    assert n == 37 and result.fps == 7.5
    assert abs(secs - 37 / 7.5) < 0.2


@pytest.mark.parametrize("ext", [".webm", ".mov", ".gif", ".mkv"])
def test_other_formats(tmp_path, ext):
    movie = gradient_movie(n=6, h=30, w=40, dtype=np.uint8, base=10, step=20, spread=100)
    result = to_video(movie, tmp_path / f"m{ext}", fps=5, progress=False)
    assert count(result.path) == 6
    frames, meta = read_back(result.path)
    assert meta["size"] == (result.width, result.height)
    assert np.abs(frames[:, :30, :40].astype(int) - movie).mean() < 3


def test_rgb_frames(tmp_path):
    rgb = np.zeros((4, 24, 32, 3), np.uint8)
    rgb[:, :, :10] = (200, 30, 40)
    rgb[:, :, 10:20] = (20, 180, 60)
    rgb[:, :, 20:] = (40, 50, 220)
    result = to_video(rgb, tmp_path / "rgb.mp4", crf=1, progress=False)
    assert result.intensity_range == [(0.0, 255.0)] * 3
    frames, _ = read_back(result.path, "rgb24")
    centres = frames[:, 12, [4, 15, 27]].astype(int)
    assert np.abs(centres - rgb[:, 12, [4, 15, 27]]).max() <= 6


def test_two_channel_composite_is_green_and_magenta(tmp_path):
    movie = np.zeros((3, 16, 32, 2), np.uint16)
    movie[:, :, :16, 0] = 1000  # channel 0 bright on the left
    movie[:, :, 16:, 1] = 50  # channel 1 bright on the right
    result = to_video(movie, tmp_path / "c.mkv", lossless=True, progress=False)
    assert result.pixel_format == "gbrp"
    frames, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(frames[:, :, :16], np.broadcast_to([0, 255, 0], (3, 16, 16, 3)))
    np.testing.assert_array_equal(
        frames[:, :, 16:], np.broadcast_to([255, 0, 255], (3, 16, 16, 3))
    )
    assert result.intensity_range == [(0.0, 1000.0), (0.0, 50.0)]


@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mov"])
def test_colour_in_yuv_is_bt709_and_tagged_so(tmp_path, ext):
    # players decode an untagged HD file with BT.709: BT.601 data then shift every colour
    av = pytest.importorskip("av")
    movie = np.zeros((2, 16, 32, 2), np.uint16)
    movie[:, :, :16, 0] = 1000
    movie[:, :, 16:, 1] = 1000
    result = to_video(movie, tmp_path / f"c{ext}", crf=0 if ext != ".mov" else None,
                      progress=False)
    with av.open(str(result.path)) as container:
        frame = next(container.decode(video=0))
        assert (frame.colorspace, frame.color_range) == (1, 1)  # BT.709, limited (MPEG)
        rgb = frame.reformat(format="rgb24", src_colorspace="ITU709").to_ndarray().astype(int)
    assert np.abs(rgb[4:12, 4:12] - [0, 255, 0]).max() <= 3
    assert np.abs(rgb[4:12, 20:28] - [255, 0, 255]).max() <= 3


def test_yuv444p_in_extra_args_keeps_every_pixel_colour(tmp_path):
    av = pytest.importorskip("av")
    movie = np.zeros((2, 16, 16, 3), np.uint8)
    movie[:, ::2, ::2, 1] = 255  # green and black dots: 4:2:0 would smear them
    result = to_video(movie, tmp_path / "c.mkv", crf=0, contrast=None, progress=False,
                      extra_args=["-pix_fmt", "yuv444p"])
    with av.open(str(result.path)) as container:
        frame = next(container.decode(video=0))
        assert (frame.format.name, frame.colorspace) == ("yuv444p", 1)
        rgb = frame.reformat(format="rgb24", src_colorspace="ITU709").to_ndarray().astype(int)
    assert np.abs(rgb - movie[0]).max() <= 3


def test_channel_colors_and_per_channel_contrast(tmp_path):
    movie = np.full((2, 8, 8, 2), 100, np.uint16)
    result = to_video(
        movie,
        tmp_path / "c.mkv",
        lossless=True,
        channel_axis=-1,
        channel_colors=["red", "blue"],
        contrast=[(0, 200), (0, 100)],
        progress=False,
    )
    frames, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(frames[0, 0, 0], [128, 0, 255])


def test_colormap(tmp_path):
    movie = np.zeros((2, 8, 8), np.uint8)
    movie[:, :, 4:] = 255
    result = to_video(movie, tmp_path / "v.mkv", lossless=True, colormap="viridis", progress=False)
    frames, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(frames[0, 0, 0], [0x44, 0x01, 0x54])
    np.testing.assert_array_equal(frames[0, 0, 7], [0xFD, 0xE7, 0x25])


def test_max_and_mean_projection(tmp_path):
    rng = np.random.default_rng(3)
    movie = rng.integers(0, 256, (4, 5, 12, 14), dtype=np.uint8)  # T, Z, Y, X
    result = to_video(
        movie,
        tmp_path / "max.mkv",
        lossless=True,
        projection="max",
        projection_axis=1,
        progress=False,
    )
    np.testing.assert_array_equal(read_back(result.path)[0], movie.max(axis=1))
    result = to_video(
        movie,
        tmp_path / "mean.mkv",
        lossless=True,
        projection="mean",
        projection_axis=1,
        contrast=(0, 255),
        progress=False,
    )
    expected = display(movie.mean(axis=1), 0, 255)
    assert np.abs(read_back(result.path)[0] - expected).max() <= 1


@pytest.mark.parametrize(
    "movie",
    [
        1e9 + np.random.default_rng(8).random((2, 3, 8, 10)),  # a range of 1 over 1e9
        np.random.default_rng(8).random((2, 3, 8, 10)) * 1e39,  # beyond float32
        np.random.default_rng(8).integers(2**30, 2**30 + 300, (2, 3, 8, 10), dtype=np.int64),
    ],
    ids=["float64-offset", "float64-huge", "int64"],
)
def test_mean_projection_keeps_the_precision_of_wide_data(tmp_path, movie):
    """The mean was computed in float32: float64 data with a small range on a large offset
    came out flat (black), values beyond float32's range infinite."""
    result = to_video(movie, tmp_path / "m.mkv", lossless=True, projection="mean",
                      projection_axis=1, progress=False)
    projected = movie.mean(axis=1)  # numpy's float64 mean
    lo, hi = np.percentile(projected, (0.1, 99.9))
    assert result.intensity_range == pytest.approx((lo, hi), rel=1e-12)
    assert np.abs(read_back(result.path)[0] - display(projected, lo, hi)).max() <= 1


def test_scaling(tmp_path):
    movie = np.random.default_rng(4).integers(0, 256, (2, 6, 8), dtype=np.uint8)
    up = to_video(movie, tmp_path / "up.mkv", lossless=True, scale=3, progress=False)
    assert (up.height, up.width) == (18, 24)
    np.testing.assert_array_equal(read_back(up.path)[0], movie.repeat(3, 1).repeat(3, 2))
    odd = np.random.default_rng(5).integers(0, 256, (2, 7, 9), dtype=np.uint8)
    down = to_video(odd, tmp_path / "down.mkv", lossless=True, scale=0.5, progress=False)
    assert (down.height, down.width) == (3, 4)
    blocks = odd[:, :6, :8].reshape(2, 3, 2, 4, 2).mean(axis=(2, 4))
    assert np.abs(read_back(down.path)[0] - blocks).max() <= 1


def test_dask_array(tmp_path):
    da = pytest.importorskip("dask.array")
    movie = np.random.default_rng(6).integers(0, 65536, (9, 10, 12), dtype=np.uint16)
    lazy = da.from_array(movie, chunks=(4, 5, 12))
    result = to_video(lazy, tmp_path / "d.mkv", lossless=True, progress=False)
    np.testing.assert_array_equal(read_back(result.path, "gray16le")[0], movie)


def test_big_endian_array(tmp_path):
    movie = np.arange(2 * 4 * 6, dtype=">u2").reshape(2, 4, 6) * 1000
    result = to_video(movie, tmp_path / "be.mkv", lossless=True, progress=False)
    np.testing.assert_array_equal(read_back(result.path, "gray16le")[0], movie)


# ---- generators and progress ------------------------------------------------------------


def test_generator_of_unknown_length(tmp_path, capsys):
    movie = gradient_movie(n=60, h=16, w=20)

    def frames():
        yield from movie

    result = to_video(frames(), tmp_path / "g.mp4", progress=True)
    assert result.n_frames == 60 == count(result.path)
    # contrast from the first 50 frames of a generator
    np.testing.assert_allclose(result.intensity_range, np.percentile(movie[:50], (0.1, 99.9)))
    assert "to_video" not in capsys.readouterr().err  # no bar without a length


def test_progress_bar_when_length_known(tmp_path, capsys):
    to_video(gradient_movie(n=5, h=8, w=8), tmp_path / "p.mp4", progress=True)
    assert "5/5" in capsys.readouterr().err
    to_video(gradient_movie(n=5, h=8, w=8), tmp_path / "q.mp4", progress=False)
    assert capsys.readouterr().err == ""


def test_list_of_frames(tmp_path):
    frames = [np.full((6, 8), v, np.uint8) for v in (0, 100, 200)]
    result = to_video(frames, tmp_path / "l.mkv", lossless=True, progress=False)
    np.testing.assert_array_equal(read_back(result.path)[0], np.stack(frames))


# ---- pims readers -----------------------------------------------------------------------


def write_hyperstack(path, shape=(6, 3, 2, 20, 24), interval=0.25):
    """An ImageJ TZCYX hyperstack whose pixels encode t, z, c."""
    t, z, c, y, x = np.indices(shape)
    data = (1000 * t + 100 * z + 10 * c + (y + x) % 7).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX", "finterval": interval})
    return data


def test_tiffstacknd_round_trip(tmp_path):
    data = write_hyperstack(tmp_path / "h.tif")
    reader = TiffStackND(str(tmp_path / "h.tif"))
    try:
        reader.iter_axes = "t"
        reader.bundle_axes = "yx"
        reader.default_coords["z"] = 1
        reader.default_coords["c"] = 1
        result = to_video(reader, tmp_path / "h.mkv", lossless=True, progress=False)
    finally:
        reader.close()
    assert result.fps == 4.0  # from the ImageJ frame interval
    assert result.n_frames == 6
    expected = tifffile.imread(tmp_path / "h.tif")[:, 1, 1]
    np.testing.assert_array_equal(read_back(result.path, "gray16le")[0], expected)
    np.testing.assert_array_equal(expected, data[:, 1, 1])


def test_tiffstacknd_projection_and_channels(tmp_path):
    data = write_hyperstack(tmp_path / "h.tif")
    reader = TiffStackND(str(tmp_path / "h.tif"))
    try:
        reader.iter_axes = "t"
        reader.bundle_axes = "czyx"
        with pytest.raises(ExportArgumentError, match="projection"):
            to_video(reader, tmp_path / "no.mp4", progress=False)
        result = to_video(
            reader,
            tmp_path / "h.mkv",
            lossless=True,
            projection="max",
            contrast=[(0, 6000), (0, 6000)],
            progress=False,
        )
    finally:
        reader.close()
    assert result.n_frames == 6 and result.pixel_format == "gbrp"
    frames, _ = read_back(result.path, "rgb24")
    mip = data.max(axis=1)  # T, C, Y, X
    green = display(mip[:, 0], 0, 6000)
    magenta = display(mip[:, 1], 0, 6000)
    np.testing.assert_array_equal(frames[..., 1], green)
    np.testing.assert_array_equal(frames[..., 0], magenta)


def test_pims_video_reader(tmp_path, real_data):
    pytest.importorskip("av")
    reader = pims.PyAVReaderIndexed(str(real_data / "pims" / "bulk-water.mov"))
    try:
        part = reader[:24]
        result = to_video(part, tmp_path / "water.mp4", fps=24, crf=4, progress=False)
    finally:
        reader.close()
    assert result.n_frames == 24 == count(result.path)
    assert (result.width, result.height) == (640, 424)
    frames, _ = read_back(result.path, "rgb24")
    frame0 = np.load(real_data / "pims" / "bulk-water_frame0.npy")
    assert frames[0].shape == frame0.shape
    assert np.abs(frames[0].astype(int) - frame0).mean() < 3


def test_fps_from_metadata_interval(tmp_path):
    class Frames(list):
        @property
        def metadata(self):
            return {"frame_interval": 0.5}

    result = to_video(Frames([np.zeros((4, 4), np.uint8)] * 3), tmp_path / "f.mp4", progress=False)
    assert result.fps == 2.0
    result = to_video([np.zeros((4, 4), np.uint8)], tmp_path / "d.mp4", progress=False)
    assert result.fps == 10.0

    class Unknown(list):
        frame_rate = 0.0  # a reader that does not know: the default applies

    result = to_video(Unknown([np.zeros((4, 4), np.uint8)]), tmp_path / "u.mp4", progress=False)
    assert result.fps == 10.0
    result = to_video(
        Unknown([np.zeros((4, 4), np.uint8)]), tmp_path / "u.mp4", fps=29.97, progress=False
    )
    assert result.fps == pytest.approx(29.97)
    assert read_back(result.path)[1]["fps"] == pytest.approx(29.97)


def test_a_reader_whose_frame_rate_fails_gets_the_default_rate(tmp_path):
    """pims's ImageIOReader.frame_rate raises KeyError for images without 'fps' in their
    metadata (TypeError for TIFF files); that ended the export. An unknown rate is the
    default."""

    class NoFps(list):
        @property
        def frame_rate(self):  # as pims.ImageIOReader's
            return self.get_metadata()["fps"]

        def get_metadata(self):
            return {}

    class Broken(list):
        @property
        def metadata(self):
            raise TypeError("list indices must be integers or slices, not NoneType")

    for kind in (NoFps, Broken):
        frames = kind([np.zeros((4, 4), np.uint8)] * 2)
        result = to_video(frames, tmp_path / "m.mp4", progress=False)
        assert result.fps == 10.0 and count(result.path) == 2


# ---- failures leave nothing behind ------------------------------------------------------


def test_bad_shape_mid_stream(tmp_path):
    def frames():
        for _ in range(5):
            yield np.zeros((8, 8), np.uint8)
        yield np.zeros((8, 9), np.uint8)

    with pytest.raises(ExportArgumentError, match="frame 5"):
        to_video(frames(), tmp_path / "bad.mp4", progress=False)
    assert leftovers(tmp_path) == []


def test_existing_target_survives_a_failure(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"precious")

    def frames():
        yield np.zeros((8, 8), np.uint8)
        yield np.zeros((8, 8), np.uint16)

    with pytest.raises(ExportArgumentError):
        to_video(frames(), target, progress=False)
    assert target.read_bytes() == b"precious"
    assert leftovers(tmp_path) == ["keep.mp4"]


def test_ffmpeg_failure(tmp_path):
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(FFmpegError) as info:
        to_video(
            gradient_movie(n=30), target, extra_args=["-profile:v", "nonsense"], progress=False
        )
    assert "nonsense" in info.value.stderr_tail
    assert info.value.command[0] == imageio_ffmpeg.get_ffmpeg_exe()
    assert target.read_bytes() == b"precious"
    assert leftovers(tmp_path) == ["keep.mp4"]


def test_keyboard_interrupt_from_generator(tmp_path):
    def frames():
        for i in range(100):
            if i == 60:
                raise KeyboardInterrupt
            yield np.zeros((16, 16), np.uint8)

    with pytest.raises(KeyboardInterrupt):
        to_video(frames(), tmp_path / "ctrl-c.mp4", progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("frames", "kwargs", "match"),
    [
        (np.zeros((0, 4, 4), np.uint8), {}, "empty"),
        (iter([]), {}, "empty"),
        (np.zeros((2, 4, 4), np.uint8), {"fps": 0}, "fps"),
        (np.zeros((2, 4, 4), np.uint8), {"fps": -3}, "fps"),
        (np.zeros((2, 4, 4), np.uint8), {"fps": float("nan")}, "fps"),
        (np.zeros((2, 4, 4), np.uint8), {"fps": "25"}, "fps"),
        (np.zeros((2, 4, 4), np.complex64), {}, "complex"),
        (np.zeros((2, 4, 4), object), {}, "object"),
        (np.zeros((4, 4), np.uint8), {}, "3 or more axes"),
        (np.zeros((2, 4, 4, 5), np.uint8), {}, "channel_axis"),
        (np.zeros((2, 3, 4, 3), np.uint8), {}, "channel_axis"),
        (np.zeros((2, 4, 4), np.uint8), {"codec": "h264_nope"}, "codec"),
        (np.zeros((2, 4, 4), np.uint8), {"lossless": True}, "lossless"),
        (np.zeros((2, 4, 4), np.uint8), {"contrast": "max"}, "contrast"),
        (np.zeros((2, 4, 4), np.uint16), {"contrast": None}, "contrast=None"),
        (np.zeros((2, 4, 4), np.uint8), {"scale": 1.5}, "scale"),
        (np.zeros((2, 4, 4), np.uint8), {"projection": "median"}, "projection"),
        (np.zeros((2, 4, 4), np.uint8), {"projection": "max"}, "no axis to project"),
        (np.zeros((2, 4, 4), np.uint8), {"projection_axis": 1}, "projection_axis needs"),
        (np.zeros((2, 4, 4), np.uint8), {"channel_axis": 1}, "different non-image axes"),
        (
            np.zeros((2, 3, 8, 8), np.uint8),
            {"channel_axis": 1, "projection": "max", "projection_axis": 1},
            "different",
        ),
        (np.zeros((2, 3, 2, 8, 8), np.uint8), {"channel_axis": 1}, "besides y, x"),
        (np.zeros((2, 3, 8, 8), np.uint8), {"channel_axis": 0}, "axis 0"),
        (np.zeros((2, 3, 8, 8), np.uint8), {"channel_axis": "c"}, "integer"),
        # the axis as given, counted in the array (it said "axis 3 ... frames of 3 axes")
        (np.zeros((2, 3, 8, 8), np.uint8), {"channel_axis": 4},
         r"axis 4 is out of range for arrays of 4 axes"),
        (np.zeros((2, 3, 8, 8), np.uint8), {"channel_axis": -5},
         r"axis -5 is out of range for arrays of 4 axes"),
        ([np.zeros((3, 8, 8), np.uint8)], {"channel_axis": 3},
         r"axis 3 is out of range for frames of 3 axes"),
        (np.zeros((2, 4, 4), np.uint8), {"channel_colors": ["red"]}, "channel"),
        (np.zeros((2, 8, 8, 2), np.uint8), {"colormap": "viridis"}, "colormap"),
        (np.zeros((2, 4, 4), np.uint8), {"colormap": "no-such-map"}, "colormap"),
        (42, {}, "frames must be"),
        # integers too large for a float: were a bare OverflowError or TypeError
        (np.zeros((2, 4, 4), np.uint8), {"fps": 10**400}, "fps"),
        (np.zeros((2, 4, 4), np.uint8), {"scale": 10**400}, "scale"),
        (np.zeros((2, 4, 4), np.uint8), {"gamma": 10**400}, "gamma"),
        (np.zeros((2, 4, 4), np.uint8), {"contrast": (0, 10**400)}, "contrast"),
        (np.zeros((2, 4, 4), np.uint8), {"contrast": [(-10**400, 0)]}, "contrast"),
        (np.zeros((2, 4, 4), np.uint8), {"percentiles": (0, 10**400)}, "percentiles"),
    ],
)
def test_bad_arguments_fail_before_ffmpeg(tmp_path, no_ffmpeg, frames, kwargs, match):
    with pytest.raises(ExportArgumentError, match=match):
        to_video(frames, tmp_path / "x.mp4", progress=False, **kwargs)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"fps": 10**400}, "1e+400"),
        ({"fps": -(10**400)}, "-1e+400"),
        ({"scale": 10**400}, "1e+400"),
        ({"gamma": 10**400}, "1e+400"),
        ({"percentiles": (0, 10**400)}, "(0, 1e+400)"),
        ({"contrast": [(0, 1, 10**5000)]}, "[(0, 1, 1e+5000)]"),  # repr would fail
        ({"crf": 10**400}, "1e+400"),
        ({"colormap": (10**400, 0, 0)}, "(1e+400, 0, 0)"),  # was a bare OverflowError
        ({"channel_axis": 10**400}, "1e+400"),
    ],
)
def test_huge_numbers_are_shown_short_in_messages(tmp_path, no_ffmpeg, kwargs, shown):
    """A 400-digit argument was printed in full in its message."""
    with pytest.raises(ExportArgumentError) as error:
        to_video(np.zeros((2, 4, 4), np.uint8), tmp_path / "x.mp4", progress=False, **kwargs)
    assert shown in str(error.value)
    assert len(str(error.value)) < 150


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [({"gamma": np.float64(-2)}, "got -2.0"), ({"percentiles": (np.int64(5), 200)}, "(5, 200)")],
)
def test_numpy_numbers_read_as_written_in_messages(tmp_path, no_ffmpeg, kwargs, shown):
    with pytest.raises(ExportArgumentError) as error:
        to_video(np.zeros((2, 4, 4), np.uint8), tmp_path / "x.mp4", progress=False, **kwargs)
    assert shown in str(error.value) and "np." not in str(error.value)


def test_bad_targets_fail_before_ffmpeg(tmp_path, no_ffmpeg):
    movie = np.zeros((2, 4, 4), np.uint8)
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "exists.mp4").write_bytes(b"old")
    for target, match in [
        (tmp_path / "missing" / "x.mp4", "does not exist"),
        (tmp_path / "file" / "x.mp4", "does not exist"),
        (tmp_path / "x.png", "extension"),
        (tmp_path / "exists.mp4", "overwrite"),
    ]:
        with pytest.raises(ExportArgumentError, match=match):
            to_video(movie, target, overwrite=False, progress=False)
    assert (tmp_path / "exists.mp4").read_bytes() == b"old"
    assert leftovers(tmp_path) == ["exists.mp4", "file"]


@pytest.mark.parametrize("suffix", ["/", "/.", os.sep])
def test_target_ending_in_a_separator_names_a_folder_and_is_refused(tmp_path, no_ffmpeg, suffix):
    """to_video(frames, "out.mp4/") wrote out.mp4: Path drops the trailing separator."""
    target = f"{tmp_path / 'out.mp4'}{suffix}"
    with pytest.raises(ExportArgumentError, match="names a folder") as error:
        to_video(np.zeros((2, 4, 4), np.uint8), target, progress=False)
    assert target in str(error.value)
    assert leftovers(tmp_path) == []


def frames_creating(path, content, n=4):
    """Yield ``n`` small frames, writing ``content`` to ``path`` after the second."""
    for i in range(n):
        if i == 2:
            path.write_bytes(content)
        yield np.full((8, 8), 40 * i, np.uint8)


@pytest.mark.parametrize("hard_links", [True, False])
def test_no_overwrite_keeps_a_file_created_while_encoding(tmp_path, monkeypatch, hard_links):
    if not hard_links:  # e.g. FAT: a last check before the rename instead
        def refuse(*args):
            raise PermissionError("hard links not supported")

        monkeypatch.setattr(os, "link", refuse)
    target = tmp_path / "x.mkv"
    with pytest.raises(ExportArgumentError, match="created while the video was encoded"):
        to_video(frames_creating(target, b"theirs"), target, overwrite=False, progress=False)
    assert target.read_bytes() == b"theirs"
    assert leftovers(tmp_path) == ["x.mkv"]
    result = to_video(frames_creating(tmp_path / "other", b""), tmp_path / "y.mkv",
                      overwrite=False, lossless=True, progress=False)
    frames, _ = read_back(result.path, "gray")
    assert [int(f[0, 0]) for f in frames] == [0, 40, 80, 120]
    assert leftovers(tmp_path) == ["other", "x.mkv", "y.mkv"]


@pytest.mark.parametrize("stem", ["L" * 250, "顕微鏡" * 27])  # 250 and 243 bytes
def test_longest_file_names_can_be_written(tmp_path, stem):
    # the hidden temporary file beside the target must fit the 255-byte limit too
    result = to_video(np.zeros((2, 4, 4), np.uint8), tmp_path / f"{stem}.mkv", progress=False)
    assert leftovers(tmp_path) == [f"{stem}.mkv"] and count(result.path) == 2


def test_unwritable_folder(tmp_path, no_ffmpeg):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(ExportArgumentError, match="cannot write"):
            to_video(np.zeros((2, 4, 4), np.uint8), folder / "x.mp4", progress=False)
    finally:
        folder.chmod(0o700)


# ---- notebook display -------------------------------------------------------------------


def test_repr_html(tmp_path):
    movie = gradient_movie(n=3, h=8, w=8, dtype=np.uint8, spread=100)
    mp4 = to_video(movie, tmp_path / "a.mp4", progress=False)._repr_html_()
    assert mp4.startswith("<video controls") and "data:video/mp4;base64," in mp4
    gif = to_video(movie, tmp_path / "a.gif", progress=False)._repr_html_()
    assert gif.startswith("<img") and "data:image/gif;base64," in gif
    mkv = to_video(movie, tmp_path / "a.mkv", lossless=True, progress=False)._repr_html_()
    assert "<video" not in mkv and "a.mkv: 3 frames," in mkv
    one = to_video(movie[:1], tmp_path / "b.mkv", lossless=True, progress=False)._repr_html_()
    assert "b.mkv: 1 frame," in one


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_folder_refusing_files(no_ffmpeg):
    # /proc refuses new files even for root
    with pytest.raises(ExportArgumentError, match="cannot write"):
        to_video(np.zeros((2, 4, 4), np.uint8), "/proc/pims-videoutils-test.mp4", progress=False)


def test_channel_axis_in_the_middle_and_single_channel(tmp_path):
    movie = np.zeros((2, 2, 8, 10), np.uint8)  # T, C, Y, X
    movie[:, 0, :, :5] = 255
    movie[:, 1, :, 5:] = 255
    result = to_video(movie, tmp_path / "c.mkv", lossless=True, channel_axis=1, progress=False)
    frames, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(frames[0, 0, 0], [0, 255, 0])
    np.testing.assert_array_equal(frames[0, 0, 9], [255, 0, 255])
    one = movie[:, :1].transpose(0, 2, 3, 1)  # T, Y, X, 1
    gray = to_video(one, tmp_path / "g.mkv", lossless=True, channel_axis=-1, progress=False)
    assert gray.pixel_format == "gray"
    np.testing.assert_array_equal(read_back(gray.path)[0], one[..., 0])
    coloured = to_video(
        one,
        tmp_path / "v.mkv",
        lossless=True,
        channel_axis=-1,
        colormap="viridis",
        progress=False,
    )
    np.testing.assert_array_equal(read_back(coloured.path, "rgb24")[0][0, 0, 0], [253, 231, 37])


def test_uint8_unscaled_and_gamma(tmp_path):
    movie = np.random.default_rng(7).integers(0, 256, (3, 8, 10), dtype=np.uint8)
    exact = to_video(movie, tmp_path / "a.mkv", lossless=True, contrast=None, progress=False)
    np.testing.assert_array_equal(read_back(exact.path)[0], movie)
    assert exact.intensity_range == (0.0, 255.0)
    bright = to_video(movie, tmp_path / "b.mkv", lossless=True, gamma=0.5, progress=False)
    expected = np.floor(255 * np.sqrt(movie / 255.0) + 0.5)
    np.testing.assert_array_equal(read_back(bright.path)[0], expected)


def test_tiffstacknd_bundle_xy_is_shown_upright(tmp_path):
    data = np.random.default_rng(8).integers(0, 256, (4, 10, 14), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", data, imagej=True, metadata={"axes": "TYX"})
    reader = TiffStackND(str(tmp_path / "s.tif"))
    try:
        reader.bundle_axes = "xy"  # as pimsviewer sets it
        result = to_video(reader, tmp_path / "s.mkv", lossless=True, progress=False)
    finally:
        reader.close()
    np.testing.assert_array_equal(read_back(result.path)[0], tifffile.imread(tmp_path / "s.tif"))


def test_repr_html_links_large_files(tmp_path, monkeypatch):
    from pims_videoutils import export

    movie = gradient_movie(n=3, h=8, w=8, dtype=np.uint8, spread=100)
    result = to_video(movie, tmp_path / "big.mp4", progress=False)
    monkeypatch.setattr(export, "EMBED_LIMIT_BYTES", 10)
    monkeypatch.chdir(tmp_path)
    assert 'src="big.mp4"' in result._repr_html_()


def test_repr_html_links_a_file_name_that_is_not_a_url(tmp_path, monkeypatch):
    import re
    import urllib.parse

    from pims_videoutils import export

    movie = gradient_movie(n=3, h=8, w=8, dtype=np.uint8, spread=100)
    (tmp_path / "run 2").mkdir()
    result = to_video(movie, tmp_path / "run 2" / "cell #1 50%.mp4", progress=False)
    monkeypatch.setattr(export, "EMBED_LIMIT_BYTES", 10)
    monkeypatch.chdir(tmp_path)
    src = re.search(r'src="([^"]*)"', result._repr_html_()).group(1)
    assert "#" not in src and " " not in src  # "#" would start a fragment
    assert urllib.parse.unquote(src) == "run 2/cell #1 50%.mp4"


def test_real_imagej_stack_bit_exact(tmp_path, real_data):
    path = real_data / "pims" / "tiff_stack.tif"  # ImageJ 1.46a, big-endian uint16 ZYX
    reader = TiffStackND(str(path))
    try:
        reader.iter_axes = "z"
        result = to_video(reader, tmp_path / "stack.mkv", lossless=True, progress=False)
    finally:
        reader.close()
    expected = tifffile.imread(path)
    assert result.n_frames == len(expected) == 5
    np.testing.assert_array_equal(read_back(result.path, "gray16le")[0], expected)


def test_real_composite_three_channels(tmp_path, real_data):
    path = real_data / "imagej" / "IXMtest_A02_s9.tif"  # ImageJ composite, 3 x 395 x 695
    reader = TiffStackND(str(path))
    try:
        reader.iter_axes = ""
        reader.bundle_axes = "cyx"
        result = to_video(reader, tmp_path / "cells.mp4", progress=False)
    finally:
        reader.close()
    data = tifffile.imread(path).astype(np.float64)
    assert (result.width, result.height, result.padding) == (696, 396, (1, 1))
    frames, _ = read_back(result.path, "rgb24")
    assert frames.shape == (1, 396, 696, 3)
    for c in range(3):  # red, green, blue: each channel with its own percentiles
        lo, hi = np.percentile(data[c], (0.1, 99.9))
        assert result.intensity_range[c] == pytest.approx((lo, hi))
        expected = display(data[c], lo, hi)
        assert np.abs(frames[0, :395, :695, c] - expected).mean() < 4


def test_video_gets_the_usual_file_permissions(tmp_path):
    reference = tmp_path / "reference"
    reference.touch()
    result = to_video(np.zeros((2, 4, 4), np.uint8), tmp_path / "m.mp4", progress=False)
    assert result.path.stat().st_mode == reference.stat().st_mode


def test_named_axes_errors(tmp_path, no_ffmpeg):
    write_hyperstack(tmp_path / "h.tif")
    reader = TiffStackND(str(tmp_path / "h.tif"))
    try:
        reader.iter_axes = "t"
        reader.bundle_axes = "cyx"
        for kwargs, match in [
            ({"channel_axis": "y"}, "different non-image axes"),
            ({"channel_axis": "z"}, "not a bundled axis"),
            ({"projection": "max", "projection_axis": "q"}, "not a bundled axis"),
            ({"projection": "max"}, "no axis to project"),
        ]:
            with pytest.raises(ExportArgumentError, match=match):
                to_video(reader, tmp_path / "x.mp4", progress=False, **kwargs)
    finally:
        reader.close()
    assert leftovers(tmp_path) == ["h.tif"]


def test_single_plane_reader_is_a_reader_not_an_array(tmp_path, real_data):
    # TiffStackND has ndim/shape/dtype like an array; a one-plane file must still be 1 frame
    path = real_data / "pillow" / "16bit.MM.deflate.tif"
    reader = TiffStackND(str(path))
    try:
        result = to_video(reader, tmp_path / "plane.mkv", lossless=True, progress=False)
    finally:
        reader.close()
    video, _ = read_back(result.path, "gray16le")
    np.testing.assert_array_equal(video, tifffile.imread(path)[np.newaxis])


def test_slice_of_a_reader_keeps_names_and_frame_rate(tmp_path):
    data = write_hyperstack(tmp_path / "h.tif", interval=0.25)
    reader = TiffStackND(str(tmp_path / "h.tif"))
    try:
        reader.iter_axes = "t"
        reader.bundle_axes = "czyx"
        part = reader[1:5:2]
        assert not hasattr(part, "bundle_axes") and not hasattr(part, "frame_rate")
        result = to_video(part, tmp_path / "part.mkv", lossless=True, projection="max",
                          projection_axis="z", channel_axis="c",
                          contrast=[(0, 6000), (0, 6000)], progress=False)
    finally:
        reader.close()
    assert result.fps == 4.0  # the reader's frame interval, 0.25 s
    frames, meta = read_back(result.path, "rgb24")
    assert meta["fps"] == pytest.approx(4.0)
    mip = data[1:5:2].max(axis=1)  # T, C, Y, X
    np.testing.assert_array_equal(frames[..., 1], display(mip[:, 0], 0, 6000))
    np.testing.assert_array_equal(frames[..., 0], display(mip[:, 1], 0, 6000))


@pytest.mark.parametrize("iter_axes", ["z", "c", "tz", "zt"])
def test_frames_not_along_time_alone_do_not_take_the_frame_interval(tmp_path, iter_axes):
    # frame interval 60 s: a z-stack movie would play one plane per minute
    write_hyperstack(tmp_path / "h.tif", interval=60.0)
    reader = TiffStackND(str(tmp_path / "h.tif"))
    try:
        reader.iter_axes = iter_axes
        result = to_video(reader, tmp_path / "z.mp4", progress=False)
        sliced = to_video(reader[::2], tmp_path / "s.mp4", progress=False)
    finally:
        reader.close()
    assert result.fps == sliced.fps == 10.0
    assert read_back(result.path)[1]["fps"] == pytest.approx(10.0)


def test_bad_quality_option_leaves_no_temporary_file(tmp_path):
    with pytest.raises(ExportArgumentError, match="crf"):
        to_video(gradient_movie(n=2), tmp_path / "x.mkv", lossless=True, crf=3, progress=False)
    assert leftovers(tmp_path) == []


def test_ctrl_c_while_ffmpeg_starts_leaves_no_process_and_no_file(tmp_path, monkeypatch):
    import subprocess
    import threading

    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(ffmpeg_module.subprocess, "Popen", popen)
    monkeypatch.setattr(threading.Thread, "start", interrupt)  # the stderr thread's start
    with pytest.raises(KeyboardInterrupt):
        to_video(gradient_movie(n=3), tmp_path / "x.mp4", progress=False)
    monkeypatch.undo()
    assert len(started) == 1
    try:
        assert started[0].returncode is not None  # ffmpeg was killed and reaped
    finally:
        if started[0].poll() is None:  # without the fix: do not leak the orphan
            started[0].kill()
            started[0].wait()
    assert leftovers(tmp_path) == []
