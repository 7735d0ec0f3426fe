"""Edge cases of ``to_video``: thin and huge frames, RGB(A) samples, frame rates at the
limits of the containers, odd frames in iterables, colour arguments.

Videos are decoded independently with PyAV (``read_back``); stacks are written and read
with tifffile.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_export import leftovers, no_ffmpeg, read_back  # noqa: F401 (no_ffmpeg: a fixture)

from pims_videoutils import ExportArgumentError, FFmpegError, export, to_video
from pims_videoutils.export import temporaries_of
from pims_videoutils.readers import TiffStackND

no_ffmpeg_start = pytest.mark.usefixtures("no_ffmpeg")  # the error comes before ffmpeg


def frame_times(path):
    """The presentation time (s) of every decoded frame, in decoding order."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return np.array([float(frame.time) for frame in container.decode(stream)])


# ---- ffv1 and frame sizes -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (300, 1), (1, 400), (2, 2)])
def test_lossless_thin_and_tiny_frames_are_bit_exact(tmp_path, shape):
    # ffv1 refused 2 x 2 slices for frames one pixel wide or high
    movie = np.random.default_rng(1).integers(0, 65536, (3, *shape), dtype=np.uint16)
    result = to_video(movie, tmp_path / "line.mkv", lossless=True, progress=False)
    video, _ = read_back(result.path, "gray16le")
    np.testing.assert_array_equal(video, movie)


@pytest.mark.slow
def test_lossless_frame_too_large_for_four_slices_is_bit_exact(tmp_path):
    # 16-bit gray above ~5620 x 5620: ffv1 refuses 2 x 2 slices (each over 2**27 / 17 samples)
    movie = np.random.default_rng(2).integers(0, 65536, (2, 5700, 5700), dtype=np.uint16)
    result = to_video(movie, tmp_path / "big.mkv", lossless=True, progress=False)
    video, _ = read_back(result.path, "gray16le")
    np.testing.assert_array_equal(video, movie)


# ---- RGB samples and alpha ------------------------------------------------------------------


def test_rgb_tiff_reader_is_shown_in_colour(tmp_path):
    # TiffStackND bundles RGB samples as axis "s": they are the colours, not an extra axis
    data = np.random.default_rng(3).integers(0, 256, (4, 8, 10, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb")
    with TiffStackND(str(tmp_path / "rgb.tif")) as reader:
        result = to_video(reader, tmp_path / "rgb.mkv", lossless=True, progress=False)
    video, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(video, tifffile.imread(tmp_path / "rgb.tif"))


def test_rgba_tiff_reader_drops_the_alpha(tmp_path):
    data = np.random.default_rng(4).integers(0, 256, (3, 8, 10, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", data, photometric="rgb", extrasamples=[2])
    with TiffStackND(str(tmp_path / "rgba.tif")) as reader:
        result = to_video(reader, tmp_path / "rgba.mkv", lossless=True, progress=False)
    video, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(video, tifffile.imread(tmp_path / "rgba.tif")[..., :3])


def test_rgba_array_drops_the_alpha_unless_channels_are_asked_for(tmp_path):
    movie = np.random.default_rng(5).integers(0, 256, (3, 8, 10, 4), dtype=np.uint8)
    rgba = to_video(movie, tmp_path / "rgba.mkv", lossless=True, progress=False)
    np.testing.assert_array_equal(read_back(rgba.path, "rgb24")[0], movie[..., :3])
    # channel_axis given: four channels, red, green, blue and gray, added (ImageJ composite)
    four = to_video(movie, tmp_path / "four.mkv", lossless=True, channel_axis=-1, progress=False)
    expected = np.minimum(movie[..., :3].astype(int) + movie[..., 3:], 255)
    np.testing.assert_array_equal(read_back(four.path, "rgb24")[0], expected)


# ---- frame rates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "fps"),
    [
        (".mkv", 1500),
        (".webm", 2000),
        (".avi", 1001),
        (".gif", 101),
        (".gif", 0.001),
        (".gif", 1 / 655.36),  # a GIF delay of 65536 hundredths of a second
        (".gif", 1 / 655.355),  # (rounds to 65536)
        (".gif", 0.0015258),
        (".mp4", 2e6),
        (".mp4", 1e-5),
        (".mp4", 6e-5),  # was rounded up to 1e-4 before the check: played 1.7x too fast
        (".mov", 10**30),
    ],
)
@no_ffmpeg_start
def test_frame_rate_the_container_cannot_time_fails_before_ffmpeg(tmp_path, ext, fps):
    with pytest.raises(ExportArgumentError, match="files can time"):
        to_video(np.zeros((2, 4, 4), np.uint8), tmp_path / f"x{ext}", fps=fps, progress=False)
    assert leftovers(tmp_path) == []


# a 10,000 fps camera; one frame per 10 h; per 4 h 10 min (a rate that rounded to 1e-4)
@pytest.mark.parametrize("interval", [1e-4, 36_000.0, 15_000.0])
@no_ffmpeg_start
def test_frame_rate_of_the_input_out_of_range_says_so(tmp_path, interval):
    data = np.zeros((3, 8, 8), np.uint16)
    tifffile.imwrite(
        tmp_path / "s.tif", data, imagej=True, metadata={"axes": "TYX", "finterval": interval}
    )
    with TiffStackND(str(tmp_path / "s.tif")) as reader:
        with pytest.raises(ExportArgumentError, match="frame rate of the input"):
            to_video(reader, tmp_path / "s.mkv", progress=False)
    assert leftovers(tmp_path) == ["s.tif"]


@pytest.mark.parametrize(
    ("ext", "fps"),
    [(".mkv", 1000), (".gif", 50), (".mp4", 1e-4),
     # the documented slowest GIF: one frame per 655.35 s, 0.0015259 fps (1/655.35 as a float
     # is a little under 100/65535, and was refused)
     (".gif", 1 / 655.35), (".gif", 0.0015259), (".gif", 100 / 65535), (".gif", 0.00152591)]
)
def test_frame_rates_at_the_limits_keep_every_frame_apart(tmp_path, ext, fps):
    movie = np.random.default_rng(6).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    result = to_video(movie, tmp_path / f"x{ext}", fps=fps, progress=False)
    times = frame_times(result.path)
    assert len(times) == 6
    np.testing.assert_allclose(np.diff(times), 1 / fps, rtol=1e-3)


# ---- odd frames in iterables ----------------------------------------------------------------


def test_contrast_sample_of_large_frames_is_capped_and_not_kept(tmp_path, monkeypatch):
    """The frames of an indexable input read for the contrast: at most 256 MiB of them
    (50 frames of 2048 x 2048 float32 took 800 MiB), and none kept while the movie is
    encoded."""
    import weakref

    from pims_videoutils import _frames

    monkeypatch.setattr(_frames, "SAMPLE_BUFFER_BYTES", 10 * 64 * 64 * 8)  # 10 frames
    encoding, sampled, kept_while_encoding = [], [], []
    real_encode = export._encode

    def encode(*args, **kwargs):
        encoding.append(True)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(export, "_encode", encode)

    class Frames:  # a reader-like input: frames made on request
        def __init__(self):
            self.first_read = False

        def __len__(self):
            return 60

        def __getitem__(self, i):
            if not 0 <= i < 60:
                raise IndexError(i)
            if encoding and i == 59:  # the last frame is written
                kept_while_encoding.extend(ref() for ref in sampled if ref() is not None)
            frame = np.full((64, 64), float(i))
            if self.first_read and not encoding:
                sampled.append(weakref.ref(frame))  # read for the contrast
            self.first_read = True
            return frame

    result = to_video(Frames(), tmp_path / "m.mkv", lossless=True, progress=False)
    assert result.n_frames == 60 and result.intensity_range == (0.0, 59.0)
    assert len(sampled) == 10
    assert kept_while_encoding == []
    frames = read_back(result.path)[0]
    np.testing.assert_allclose(frames.mean(axis=(1, 2)), np.arange(60) * 255 / 59, atol=0.51)


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((2, 0, 16), {}),
        ((2, 0, 16, 16), {"projection": "max"}),  # a z-stack sliced to no plane
        ((2, 0, 16, 16), {"projection": "mean"}),  # was a black movie
        ((2, 16, 16, 0), {"channel_colors": []}),
        ((2, 16, 16, 0), {"projection": "max", "projection_axis": 3}),
    ],
)
@no_ffmpeg_start
def test_frames_with_an_axis_of_length_0_are_refused(tmp_path, shape, options):
    """Raised ValueError (max of nothing), IndexError, or blamed scale=1, or made a movie."""
    with pytest.raises(ExportArgumentError, match=r"hold no pixel.*axis of length 0"):
        to_video(np.zeros(shape, np.uint8), tmp_path / "x.mp4", progress=False, **options)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("frames", ["stack.tif", b"stack.tif", {"t0": np.zeros((4, 4))}])
@no_ffmpeg_start
def test_a_path_or_a_dict_as_frames_is_refused_as_such(tmp_path, frames):
    """A file name given instead of a reader was read as frames of one character each
    ('cannot make a video of <U1 data'); a dict as its keys."""
    with pytest.raises(ExportArgumentError, match=f"not {type(frames).__name__}"):
        to_video(frames, tmp_path / "x.mp4", progress=False)
    assert leftovers(tmp_path) == []


def test_none_frame_is_an_error_not_the_end(tmp_path):
    def frames():  # 16-bit: the first frames are buffered for the contrast
        yield np.zeros((8, 8), np.uint16)
        yield np.ones((8, 8), np.uint16)
        yield None
        yield np.ones((8, 8), np.uint16)

    with pytest.raises(ExportArgumentError):
        to_video(frames(), tmp_path / "x.mp4", progress=False)
    with pytest.raises(ExportArgumentError, match="object"):  # not "empty input"
        to_video([None, np.zeros((8, 8), np.uint8)], tmp_path / "x.mp4", progress=False)
    assert leftovers(tmp_path) == []


def test_generator_filling_one_array_for_every_frame(tmp_path):
    # a camera loop or a reader reusing its buffer; the first frames are held for the contrast
    def frames():
        buffer = np.zeros((6, 8), np.uint16)
        for t in range(60):
            buffer[:] = 100 * t
            yield buffer

    # a ramp to white: mapped to 8 bits by the contrast (a gray colormap keeps 16 bits)
    result = to_video(frames(), tmp_path / "r.mkv", lossless=True, colormap="white",
                      progress=False)
    expected = 100 * np.arange(60.0)
    first_50 = np.broadcast_to(expected[:50, None, None], (50, 6, 8))  # sampled frames
    lo, hi = np.percentile(first_50, (0.1, 99.9))
    assert result.intensity_range == pytest.approx((lo, hi))
    video, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(
        video[:, 0, 0, 0], np.floor(255 * np.clip((expected - lo) / (hi - lo), 0, 1) + 0.5)
    )


def test_per_frame_contrast_with_a_frame_of_nan_only(tmp_path):
    movie = np.random.default_rng(10).random((4, 6, 8)).astype(np.float32)
    movie[2] = np.nan  # e.g. a frame masked out entirely
    result = to_video(movie, tmp_path / "f.mkv", lossless=True, contrast="frame", progress=False)
    video, _ = read_back(result.path)
    assert not video[2].any()  # NaN is black
    lo, hi = np.percentile(movie[3], (0.1, 99.9))
    expected = np.floor(255 * np.clip((movie[3].astype(np.float64) - lo) / (hi - lo), 0, 1) + 0.5)
    assert np.abs(video[3] - expected).max() <= 1  # float32 arithmetic


def test_ragged_frame_is_an_export_argument_error(tmp_path):
    with pytest.raises(ExportArgumentError, match="not an array"):
        to_video([[[1, 2], [3]]] * 2, tmp_path / "x.mp4", progress=False)
    ragged_later = [np.zeros((2, 2), np.uint8), [[1, 2], [3]]]
    with pytest.raises(ExportArgumentError, match="not an array"):
        to_video(ragged_later, tmp_path / "x.mp4", progress=False)
    assert leftovers(tmp_path) == []


# ---- colour arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channel_colors": "red"}, "list of one colour per channel"),
        ({"channel_colors": 5}, "list of one colour per channel"),
        ({"colormap": np.full((256, 3), 1000, np.uint16)}, "0 to 255"),
        ({"colormap": np.full((256, 3), np.nan)}, "finite"),
    ],
)
@no_ffmpeg_start
def test_bad_colour_arguments(tmp_path, kwargs, match):
    two_channels = np.zeros((2, 6, 8, 2), np.uint8)
    movie = two_channels if "channel_colors" in kwargs else two_channels[..., 0]
    with pytest.raises(ExportArgumentError, match=match):
        to_video(movie, tmp_path / "x.mp4", progress=False, **kwargs)
    assert leftovers(tmp_path) == []


def test_colormap_table_of_any_integer_type(tmp_path):
    movie = np.random.default_rng(7).integers(0, 256, (2, 6, 8), dtype=np.uint8)
    table = np.stack([np.arange(256), 255 - np.arange(256), np.full(256, 7)], axis=1)  # int64
    result = to_video(movie, tmp_path / "t.mkv", lossless=True, colormap=table, progress=False)
    np.testing.assert_array_equal(read_back(result.path, "rgb24")[0], table[movie])


def test_one_channel_with_a_colour_given_as_an_array(tmp_path):
    movie = np.random.default_rng(8).integers(0, 256, (2, 6, 8, 1), dtype=np.uint8)
    result = to_video(
        movie,
        tmp_path / "red.mkv",
        lossless=True,
        channel_colors=[np.array([1.0, 0.0, 0.0])],
        progress=False,
    )
    video, _ = read_back(result.path, "rgb24")
    np.testing.assert_array_equal(video[..., 0], movie[..., 0])
    assert not video[..., 1:].any()


@pytest.mark.parametrize(
    ("colormap", "rgb"),
    [("#ff8800", (255, 136, 0)), ((1.0, 0.5, 0.0), (255, 127.5, 0)), ("orange", (255, 165, 0))],
)
def test_colormap_of_a_colour_is_a_ramp_from_black_as_in_channel_colors(tmp_path, colormap, rgb):
    """Frames of one channel, refused channel_colors and told to use colormap, could not be
    coloured with a colour: '#ff8800' and (1, 0.5, 0) were unknown colormaps, and 'orange'
    was vispy's white-to-orange map (white background), not channel_colors' black-to-orange."""
    movie = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(2, axis=0)
    result = to_video(movie, tmp_path / "c.mkv", lossless=True, colormap=colormap,
                      progress=False)
    expected = np.round(movie[..., None] / 255 * np.array(rgb))
    np.testing.assert_allclose(read_back(result.path, "rgb24")[0], expected, atol=1)
    as_channel = to_video(movie[..., None], tmp_path / "a.mkv", lossless=True,
                          channel_colors=[colormap], progress=False)
    np.testing.assert_array_equal(read_back(result.path, "rgb24")[0],
                                  read_back(as_channel.path, "rgb24")[0])


# ---- arguments of other types -------------------------------------------------------------


@pytest.mark.parametrize("scale", [np.int64(2), np.float32(0.5)])
def test_numpy_scale(tmp_path, scale):
    movie = np.random.default_rng(9).integers(0, 256, (2, 6, 8), dtype=np.uint8)
    result = to_video(movie, tmp_path / "s.mkv", lossless=True, scale=scale, progress=False)
    assert read_back(result.path)[0].shape == (2, int(6 * scale), int(8 * scale))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": None}, "gamma"),
        ({"gamma": "2"}, "gamma"),
        ({"contrast": ("a", "b")}, "numbers"),
        ({"contrast": "frame", "percentiles": None}, "percentiles"),
        ({"percentiles": "ab"}, "percentiles"),
        ({"crf": 52}, "0 to 51"),
        ({"crf": -1}, "0 to 51"),
        ({"crf": 99, "codec": "libvpx-vp9"}, "0 to 63"),  # ffmpeg refused it after starting
        ({"preset": "nope"}, "invalid preset 'nope'"),
        ({"preset": 5}, "invalid preset"),
        ({"extra_args": "-an"}, "extra_args"),
        ({"extra_args": None}, "extra_args"),
    ],
)
@no_ffmpeg_start
def test_bad_option_values_fail_before_ffmpeg(tmp_path, kwargs, match):
    ext = ".webm" if kwargs.get("codec") == "libvpx-vp9" else ".mp4"
    movie = np.zeros((2, 6, 8), np.uint16)
    with pytest.raises(ExportArgumentError, match=match):
        to_video(movie, tmp_path / f"x{ext}", progress=False, **kwargs)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contrast": 5}, "contrast must be"),
        ({"contrast": True}, "contrast must be"),
        ({"contrast": (10, 5)}, "lo <= hi"),
        ({"contrast": (0, float("inf"))}, "finite"),
        ({"contrast": [(0, 1), (float("nan"), 2)]}, "finite"),
        ({"contrast": [(0, 1), (2,)]}, "contrast must be"),
        ({"extra_args": None}, "extra_args"),
        ({"extra_args": "-an"}, "extra_args"),
        ({"channel_colors": "red"}, "channel_colors must be a list"),
        ({"channel_colors": 5}, "channel_colors must be a list"),
    ],
)
def test_bad_options_fail_before_any_frame_is_read(tmp_path, kwargs, match):
    """Options that no frame can make right are refused before the input is read (and
    once, by pims-video batch, before any input is read)."""
    read = []

    def frames():
        for _ in range(60):
            read.append("a frame")
            yield np.zeros((6, 8), np.uint16)

    with pytest.raises(ExportArgumentError, match=match):
        to_video(frames(), tmp_path / "x.mp4", progress=False, **kwargs)
    with pytest.raises(ExportArgumentError, match=match):
        export.check_arguments(".mp4", **kwargs)
    assert read == [] and leftovers(tmp_path) == []


# Limits seen with the bundled ffmpeg: libx264 refuses a side over 16384 ("invalid width x
# height"), libvpx-vp9 over 65536 ("g_h out of range"), gif over 65535, mp4/mov over 65535
# ("too large for mov/mp4").
@pytest.mark.parametrize(
    ("name", "codec", "shape", "match"),
    [
        ("x.mp4", None, (2, 16386), "libx264.*16384"),
        ("x.mkv", "libx264", (16385, 2), "libx264.*16384"),  # padded to 16386 rows
        ("x.webm", None, (65538, 2), "libvpx-vp9.*65536"),
        ("x.gif", None, (2, 65536), "gif.*65535"),
        ("x.mov", "libx265", (70000, 32), r"\.mov.*65535"),
        ("x.mp4", "libx265", (65536, 64), r"\.mp4.*65535"),
        # ProRes stores 16-bit sizes: 70000 rows became a file of 4464 that cannot be decoded
        ("x.mkv", "prores_ks", (70000, 2), "prores_ks.*65535"),
        ("x.avi", "ffv1", (2, 65536), r"\.avi.*65535"),  # "dimensions are too big"
    ],
)
@no_ffmpeg_start
def test_frames_over_the_codec_size_limit_fail_before_ffmpeg(tmp_path, name, codec, shape, match):
    movie = np.zeros((1, *shape), np.uint8)
    with pytest.raises(ExportArgumentError, match=match):
        to_video(movie, tmp_path / name, codec=codec, progress=False)
    assert leftovers(tmp_path) == []


# The bundled ffmpeg refuses 16256 x 16256 frames, read or encoded ("Picture size ... is
# invalid"), and takes 16255 x 16255 (seen piping /dev/zero to it).
@pytest.mark.parametrize(
    ("shape", "scale", "match"),
    [
        ((16256, 16256), 1, r"frames of 16256x16256 pixels are larger than ffmpeg reads"),
        ((8, 8), 2032, r"frames of 16256x16256 pixels \(as encoded\) are larger than ffmpeg"),
        # was a silent 8 x 8 movie, its VideoResult saying a width of 301 digits
        pytest.param((8, 8), 10**300, r"frames of 8e\+300x8e\+300 pixels \(as encoded\)",
                     id="scale-10**300"),
    ],
)
@no_ffmpeg_start
def test_frames_larger_than_ffmpeg_takes_fail_before_ffmpeg(tmp_path, shape, scale, match):
    movie = np.zeros((1, *shape), np.uint8)  # (not written to: no memory taken)
    with pytest.raises(ExportArgumentError, match=match):
        to_video(movie, tmp_path / "x.mkv", lossless=True, scale=scale, progress=False)
    assert leftovers(tmp_path) == []


def test_ffmpeg_picture_size_limit():
    export._ffmpeg.check_picture_size(16255, 16255, encoded=False)
    export._ffmpeg.check_picture_size(100_000, 2000, encoded=True)
    with pytest.raises(ExportArgumentError, match="16256x16256"):
        export._ffmpeg.check_picture_size(16256, 16256, encoded=False)


@pytest.mark.parametrize(
    ("name", "codec", "shape", "scale"),
    [
        ("x.mp4", None, (2, 16384), 1),
        ("x.mp4", None, (4, 32768), 0.5),
        ("x.gif", None, (65535, 2), 1),
        ("x.mkv", "prores_ks", (65535, 2), 1),
        ("x.mkv", "ffv1", (70000, 2), 1),
        ("x.avi", "ffv1", (65535, 2), 1),
    ],
)
def test_frames_at_the_codec_size_limit_are_written(tmp_path, name, codec, shape, scale):
    movie = np.zeros((1, *shape), np.uint8)
    result = to_video(movie, tmp_path / name, codec=codec, scale=scale, progress=False)
    _, meta = read_back(result.path)
    assert meta["size"] == (int(shape[1] * scale), int(shape[0] * scale))


@pytest.mark.parametrize("contrast", ["auto", "frame"])
def test_movie_without_a_finite_value_is_black_with_auto_as_with_frame(tmp_path, contrast):
    movie = np.full((3, 4, 6), np.nan, np.float32)
    movie[1, 0, 0], movie[1, 0, 1] = np.inf, -np.inf
    result = to_video(movie, tmp_path / "n.mkv", lossless=True, contrast=contrast,
                      progress=False)
    video, _ = read_back(result.path)
    expected = np.zeros(movie.shape, np.uint8)
    expected[1, 0, 0] = 255  # NaN and -inf black, +inf white (the module's rule)
    np.testing.assert_array_equal(video, expected)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_float_range_wider_than_float64_keeps_its_levels(tmp_path):
    movie = np.array([[[-1e308, 1e308, 0, 1, -5e307, 5e307]]] * 2)
    result = to_video(movie, tmp_path / "x.mkv", lossless=True, progress=False)
    video, _ = read_back(result.path)
    lo, hi = result.intensity_range
    assert (lo, hi) == tuple(np.percentile(movie, (0.1, 99.9)))
    half = movie / 2  # the same proportions, computed without overflow
    expected = np.floor(255 * np.clip((half - lo / 2) / (hi / 2 - lo / 2), 0, 1) + 0.5)
    np.testing.assert_array_equal(video, expected)
    assert video[0, 0].tolist() == [0, 255, 128, 128, 64, 191]


@no_ffmpeg_start
def test_masked_values_are_refused_not_drawn(tmp_path):
    data = np.arange(3 * 4 * 6, dtype=np.float32).reshape(3, 4, 6)
    movie = np.ma.masked_greater(data % 24, 20)  # the mask would be silently ignored
    for frames in (movie, list(movie), iter(movie)):
        with pytest.raises(ExportArgumentError, match=r"masked.*filled"):
            to_video(frames, tmp_path / "m.mp4", progress=False)
    assert leftovers(tmp_path) == []


def test_masked_array_without_masked_values_is_written(tmp_path):
    data = np.arange(3 * 4 * 6, dtype=np.uint8).reshape(3, 4, 6)
    result = to_video(np.ma.masked_array(data), tmp_path / "m.mkv", lossless=True,
                      progress=False)
    np.testing.assert_array_equal(read_back(result.path)[0], data)


@no_ffmpeg_start
@pytest.mark.parametrize("overwrite", [False, True])
def test_dangling_symlink_target_is_refused_before_encoding(tmp_path, overwrite):
    link = tmp_path / "m.mp4"
    link.symlink_to(tmp_path / "gone" / "real.mp4")
    with pytest.raises(ExportArgumentError, match=r"m\.mp4 is a symbolic link to .*real\.mp4"):
        to_video(np.zeros((2, 4, 4), np.uint8), link, overwrite=overwrite, progress=False)
    assert leftovers(tmp_path) == ["m.mp4"] and link.is_symlink()


@pytest.fixture
def linked_video(tmp_path):
    """A link m.mp4 to an existing store/real.mp4 in tmp_path: (the file, the link)."""
    real = tmp_path / "store" / "real.mp4"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "m.mp4"
    link.symlink_to(real)
    return real, link


def test_symlink_target_is_written_through(tmp_path, linked_video):
    real, link = linked_video
    result = to_video(np.zeros((3, 4, 4), np.uint8), link, progress=False)
    assert link.is_symlink() and link.resolve() == real  # the link is kept
    assert read_back(real)[0].shape == (3, 4, 4)  # its file holds the video
    assert leftovers(real.parent) == ["real.mp4"] and leftovers(tmp_path) == ["m.mp4", "store"]
    assert result.path == link  # the name the user gave (Jupyter serves it below the notebook)


def test_temporaries_of_a_symlink_are_those_beside_its_file(linked_video):
    from pims_videoutils.export import temporaries_of

    real, link = linked_video
    left = real.parent / ".real.tmp-0123abcd.mp4"  # the documented name, where it is written
    left.write_bytes(b"")
    assert temporaries_of(link) == [left]


# --- temporary files of exports killed outright -------------------------------------------

fcntl = pytest.importorskip("fcntl") if sys.platform != "win32" else None
needs_flock = pytest.mark.skipif(fcntl is None, reason="no flock on Windows")


def _age(path, seconds=120):
    then = time.time() - seconds
    os.utime(path, (then, then))


def _locked_by_another(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _wait_until_no_process_has_open(path, timeout=60):
    """Wait until no process holds ``path`` open (Linux's /proc; elsewhere, return at once).

    ffmpeg outlives an export killed outright: it reads the end of its input and finishes
    the file, touching it after the test aged it.
    """
    path, deadline = Path(path).resolve(), time.monotonic() + timeout
    while os.path.isdir("/proc/self/fd") and time.monotonic() < deadline:
        holders = []
        for fd_folder in Path("/proc").glob("[0-9]*/fd"):
            try:
                holders += [fd for fd in fd_folder.iterdir() if fd.resolve() == path]
            except OSError:  # a process that ended, or not ours to look at
                continue
        if not holders:
            return
        time.sleep(0.05)


@needs_flock
def test_a_killed_exports_temporary_file_is_removed_by_the_next_export(tmp_path):
    """A running export's file is locked, so never removed; once its process is killed
    (kill -9, a restarted kernel), the next export to the same file removes it."""
    target = tmp_path / "movie.mp4"
    slow_export = (
        "import time, numpy as np\n"
        "from pims_videoutils import to_video\n"
        "def frames():\n"
        "    for k in range(10000):\n"
        "        yield np.full((16, 16), k % 256, np.uint8)\n"
        "        time.sleep(0.01)\n"
        f"to_video(frames(), {str(target)!r}, contrast=(0, 255), progress=False)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", slow_export])
    try:
        deadline = time.monotonic() + 60
        while not temporaries_of(target) and time.monotonic() < deadline:
            time.sleep(0.05)
        [left] = temporaries_of(target)
        # locked microseconds after it is created: probing the lock before could take it
        # first (the export then runs unlocked); ffmpeg writes only once it was taken
        while left.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _locked_by_another(left)
        _age(left)
        to_video(np.zeros((3, 16, 16), np.uint8), tmp_path / "other.mp4", progress=False)
        to_video(np.zeros((3, 16, 16), np.uint8), target, progress=False)
        assert left.exists()  # the running export's: kept
    finally:
        process.kill()
        process.wait()
    _wait_until_no_process_has_open(left)
    assert left.exists() and not _locked_by_another(left)
    _age(left)
    levels = np.array([10, 80, 150, 220], np.uint8)
    to_video(np.repeat(levels, 16 * 16).reshape(4, 16, 16), target, contrast=(0, 255),
             progress=False)
    assert not left.exists()
    assert leftovers(tmp_path) == ["movie.mp4", "other.mp4"]
    written = read_back(target)[0]
    np.testing.assert_allclose(written.mean(axis=(1, 2)), levels, atol=3)


@needs_flock
def test_recent_or_locked_temporary_files_are_kept(tmp_path):
    """Only files no export holds and untouched for a minute are removed: one just created
    is about to be locked by its export."""
    target = tmp_path / "movie.mp4"
    recent = tmp_path / ".movie.tmp-0123abcd.mp4"
    held = tmp_path / ".movie.tmp-89abcdef.mp4"
    abandoned = tmp_path / ".movie.tmp-00000000.mp4"
    other = tmp_path / ".other.tmp-00000001.mp4"  # another target's
    for path in (recent, held, abandoned, other):
        path.write_bytes(b"partial video")
    for path in (held, abandoned, other):
        _age(path)
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        to_video(np.zeros((3, 16, 16), np.uint8), target, progress=False)
    finally:
        os.close(fd)
    assert leftovers(tmp_path) == sorted(p.name for p in (recent, held, other, target))


@needs_flock
def test_a_file_system_without_locks_still_exports(tmp_path, monkeypatch):
    """flock fails on some network or FUSE mounts: the export runs unlocked, and removes
    nothing it cannot lock."""

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr(export.fcntl, "flock", no_locks)
    abandoned = tmp_path / ".movie.tmp-00000000.mp4"
    abandoned.write_bytes(b"partial video")
    _age(abandoned)
    levels = np.array([30, 200], np.uint8)
    to_video(np.repeat(levels, 16 * 16).reshape(2, 16, 16), tmp_path / "movie.mp4",
             contrast=(0, 255), progress=False)
    assert leftovers(tmp_path) == [abandoned.name, "movie.mp4"]
    written = read_back(tmp_path / "movie.mp4")[0]
    np.testing.assert_allclose(written.mean(axis=(1, 2)), levels, atol=3)


@needs_flock
def test_a_dead_exports_temporary_file_is_removed_at_once_a_held_one_kept(tmp_path, lock_holder):
    """pims-video batch after a worker died: the worker's file (unlocked, however recent)
    goes, the file that another live export to the same movie holds locked stays."""
    from pims_videoutils.export import remove_unheld_temporaries

    target = tmp_path / "movie.mp4"
    held = tmp_path / ".movie.tmp-0123abcd.mp4"
    dead = tmp_path / ".movie.tmp-89abcdef.mp4"
    other = tmp_path / ".other.tmp-00000001.mp4"  # another target's
    lock_holder(held)
    for path in (dead, other):
        path.write_bytes(b"partial video")
    remove_unheld_temporaries(target)
    assert leftovers(tmp_path) == sorted([held.name, other.name])
    assert _locked_by_another(held)


@needs_flock
def test_without_locks_a_dead_exports_temporary_files_are_all_removed(
    tmp_path, lock_holder, monkeypatch
):
    """Where flock fails (some network or FUSE mounts) the lock cannot tell whose a file
    is: every temporary file of the movie is removed, the dead worker's too."""
    from pims_videoutils.export import remove_unheld_temporaries

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "no locks available")

    held = tmp_path / ".movie.tmp-0123abcd.mp4"
    dead = tmp_path / ".movie.tmp-89abcdef.mp4"
    lock_holder(held)
    dead.write_bytes(b"partial video")
    monkeypatch.setattr(export.fcntl, "flock", no_locks)
    remove_unheld_temporaries(tmp_path / "movie.mp4")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "extra_args",
    [["-frames:v", "1"], ["-frames", "1"], ["-vframes", "1"], ["-t", "1"], ["-to", "1"],
     ["-ss", "1"], ["-r", "5"], ["-r:v", "5"], ["-vf", r"select=eq(n\,0)"],
     ["-filter:v", "crop=8:8,fps=5"], ["-vf", "[in]framestep=2[out]"],
     ["-crf", "20", "-vf", "trim=end_frame=2"]],
)
@no_ffmpeg_start
def test_extra_args_known_to_change_the_frame_count_fail_before_any_frame(tmp_path, extra_args):
    """They were found only after the whole encode (FFmpegError from the frame count)."""
    target = tmp_path / "x.mp4"
    target.write_bytes(b"the previous movie")
    read = []

    def frames():
        for i in range(30):
            read.append(i)
            yield np.full((16, 16), i, np.uint8)

    with pytest.raises(ExportArgumentError, match="can change the number of frames"):
        to_video(frames(), target, progress=False, extra_args=extra_args)
    assert read == []
    assert target.read_bytes() == b"the previous movie"
    assert leftovers(tmp_path) == ["x.mp4"]


@pytest.mark.parametrize(
    "extra_args",
    [["-vf", "tpad=stop=3"],  # adds frames: not in the list refused before encoding
     ["-f", "null"],
     ["-progress", "pipe:1"]],  # (ffmpeg's report of the frames it encoded goes elsewhere)
)
def test_extra_args_that_drop_frames_or_the_file_fail_and_keep_the_target(tmp_path, extra_args):
    """Every input frame is one movie frame: ffmpeg options in extra_args that add frames,
    or write no file, are an FFmpegError and the existing target stays."""
    target = tmp_path / "x.mp4"
    target.write_bytes(b"the previous movie")
    movie = np.random.default_rng(0).integers(0, 255, (30, 16, 16), np.uint8)
    with pytest.raises(FFmpegError, match="extra_args"):
        to_video(movie, target, progress=False, extra_args=extra_args)
    assert target.read_bytes() == b"the previous movie"
    assert leftovers(tmp_path) == ["x.mp4"]


@pytest.mark.parametrize(
    "extra_args",
    [["-tune", "film"], ["-vf", "scale=16:16,setsar=1"], ["-frames:a", "1"],
     ["-metadata", "title=-t"]],
)
def test_extra_args_that_keep_every_frame_are_written(tmp_path, extra_args):
    movie = np.random.default_rng(0).integers(0, 255, (30, 16, 16), np.uint8)
    result = to_video(movie, tmp_path / "x.mp4", progress=False, extra_args=extra_args)
    assert result.n_frames == 30 == len(read_back(tmp_path / "x.mp4")[0])


def test_frames_dropped_by_extra_args_are_counted_in_words(tmp_path):
    """ffmpeg ended well but wrote fewer frames: the message said "(ffmpeg exit code 0)",
    which read as if ffmpeg had failed."""
    movie = np.zeros((2, 16, 16), np.uint8)
    with pytest.raises(FFmpegError) as caught:
        to_video(movie, tmp_path / "x.mp4", progress=False,
                 extra_args=["-vf", "shuffleframes=0 -1"])  # drops the second frame
    assert str(caught.value).splitlines()[0] == (
        "ffmpeg wrote 1 frame of the 2 sent: extra_args must not cut, drop or add frames"
    )
    assert caught.value.returncode == 0
    assert leftovers(tmp_path) == []


def test_extra_args_may_be_a_generator(tmp_path):
    import av

    movie = np.zeros((3, 16, 16), np.uint8)
    arguments = (a for a in ["-metadata", "title=from a generator"])
    to_video(movie, tmp_path / "x.mkv", progress=False, extra_args=arguments)
    with av.open(str(tmp_path / "x.mkv")) as container:
        assert container.metadata.get("title") == "from a generator"


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("/proc", marks=pytest.mark.skipif(
            not os.path.isdir("/proc/self"), reason="needs Linux /proc (refuses new files)")),
        "long name",
        "long folder name",
    ],
)
def test_a_target_that_cannot_be_written_fails_before_any_frame_is_read(tmp_path, where):
    """A folder refusing new files (refused once 50 frames were read for the contrast), or
    a file or folder name over 255 bytes (a plain OSError, ENAMETOOLONG), is an
    ExportArgumentError before the input is read."""
    target = {"/proc": Path("/proc") / "pims-videoutils-test.mp4",
              "long name": tmp_path / ("L" * 252 + ".mp4"),
              "long folder name": tmp_path / ("L" * 256) / "movie.mp4"}[where]
    read = []

    def frames():
        for _ in range(60):
            read.append("a frame")
            yield np.zeros((6, 8), np.uint16)

    with pytest.raises(ExportArgumentError, match=r"cannot write|too long"):
        to_video(frames(), target, progress=False)
    assert read == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("contrast", ["auto", "frame"])
def test_percentiles_given_as_a_generator_are_read_once(tmp_path, contrast):
    movie = np.random.default_rng(1).normal(100, 20, (4, 16, 16)).astype(np.float32)
    as_tuple = to_video(movie, tmp_path / "a.mkv", lossless=True, contrast=contrast,
                        percentiles=(5, 95), progress=False)
    as_generator = to_video(movie, tmp_path / "b.mkv", lossless=True, contrast=contrast,
                            percentiles=(p for p in (5, 95)), progress=False)
    assert as_generator.intensity_range == as_tuple.intensity_range
    np.testing.assert_array_equal(read_back(tmp_path / "b.mkv")[0],
                                  read_back(tmp_path / "a.mkv")[0])


@needs_flock
@pytest.mark.parametrize("probe", ["before the lock", "holding the lock"])
def test_an_export_whose_new_temporary_file_is_probed_still_holds_it(
    tmp_path, monkeypatch, probe
):
    """pims-video batch, after a worker died, removes the unlocked temporary files of its
    movie at once (remove_unheld_temporaries). Probing a file that another export has just
    created, before that export locks it, made the export run unlocked (the probe held the
    lock), or lock a removed file: its file, written anew by ffmpeg, was unlocked."""
    from pims_videoutils.export import remove_unheld_temporaries

    target = tmp_path / "movie.mp4"
    real_take_lock = export._take_lock
    probed = []

    def take_lock_after_a_probe(fd):
        if not probed:
            probed.append(True)
            [new] = temporaries_of(target)
            if probe == "before the lock":
                remove_unheld_temporaries(target)
            else:  # the probe holds the lock as the export tries it, then removes the file
                held = os.open(new, os.O_RDONLY)
                fcntl.flock(held, fcntl.LOCK_EX)
                try:
                    return real_take_lock(fd)
                finally:
                    new.unlink()
                    os.close(held)
        return real_take_lock(fd)

    monkeypatch.setattr(export, "_take_lock", take_lock_after_a_probe)
    locked_while_encoding = []

    def frames():
        for k in range(40):
            if k == 20:  # ffmpeg runs: its file is the export's, locked
                deadline = time.monotonic() + 30
                while not temporaries_of(target) and time.monotonic() < deadline:
                    time.sleep(0.01)
                locked_while_encoding.append(
                    [_locked_by_another(path) for path in temporaries_of(target)]
                )
            yield np.full((16, 16), 6 * k, np.uint8)

    result = to_video(frames(), target, contrast=(0, 255), progress=False)
    assert probed and locked_while_encoding == [[True]]
    assert result.n_frames == 40 and leftovers(tmp_path) == ["movie.mp4"]
    np.testing.assert_allclose(read_back(target)[0].mean(axis=(1, 2)), 6 * np.arange(40),
                               atol=3)


@pytest.mark.parametrize("fps", [33.3, 30, 7])
def test_gif_plays_at_the_reported_rate_on_average(tmp_path, fps):
    """GIF delays are whole hundredths of a second: they alternate (30 fps: 0.03, 0.04,
    0.03 s) so that the movie keeps the reported rate."""
    av = pytest.importorskip("av")
    movie = np.random.default_rng(0).integers(0, 255, (200, 8, 8), np.uint8)
    result = to_video(movie, tmp_path / "x.gif", fps=fps, progress=False)
    with av.open(str(tmp_path / "x.gif")) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
    assert len(times) == result.n_frames == 200
    assert result.fps == pytest.approx(fps)
    # every frame shows within half a hundredth of a second of its time at that rate
    expected = np.arange(200) / result.fps
    assert np.abs(np.array(times) - expected).max() <= 0.005 + 1e-9


@pytest.mark.parametrize("fps", [51, 60, 100])
@no_ffmpeg_start
def test_gif_faster_than_browsers_play_is_refused(tmp_path, fps):
    """Browsers and most viewers show a GIF frame of 0 or 1 hundredth of a second for 10
    hundredths: over 50 fps (some delays of 1 hundredth) a GIF played up to 10x too slow."""
    with pytest.raises(ExportArgumentError, match=r"(?s)50 fps.*browsers.*\.mp4"):
        to_video(np.zeros((4, 8, 8), np.uint8), tmp_path / "x.gif", fps=fps, progress=False)
    assert leftovers(tmp_path) == []


def test_gif_at_50_fps_has_delays_of_two_hundredths(tmp_path):
    from PIL import Image

    movie = np.random.default_rng(1).integers(0, 256, (30, 8, 8), np.uint8)
    to_video(movie, tmp_path / "x.gif", fps=50, progress=False)
    with Image.open(tmp_path / "x.gif") as gif:
        delays = []
        for index in range(gif.n_frames):
            gif.seek(index)
            delays.append(gif.info["duration"])
    assert delays == [20] * 30  # milliseconds
