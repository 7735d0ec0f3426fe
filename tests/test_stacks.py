"""The helpers behind the commands (:mod:`pims_videoutils.stacks`), in process.

Stacks are written by tifffile and read back with tifffile; videos are decoded by PyAV.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import tifffile

from pims_videoutils import to_video
from pims_videoutils.stacks import describe, open_stack, select_frames, summarize


def _write(path: Path, shape: tuple[int, ...], axes: str) -> Path:
    """A small stack: an ImageJ hyperstack, or an RGB image for axes YXS."""
    if axes == "YXS":
        tifffile.imwrite(path, np.zeros(shape, np.uint8), photometric="rgb")
    else:
        data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    return path


@pytest.mark.parametrize(
    ("shape", "axes", "expected_len", "expected_bundle", "expected_layout"),
    [
        # channels only: one composite frame, not one frame per channel
        ((3, 16, 20), "CYX", 1, ["c", "y", "x"], {"channel_axis": "c"}),
        # a z-stack animates z (nothing left to project)
        ((5, 16, 20), "ZYX", 5, ["y", "x"], {"channel_axis": None}),
        # time and z: z is max-projected
        (
            (4, 3, 16, 20),
            "TZYX",
            4,
            ["z", "y", "x"],
            {"channel_axis": None, "projection": "max", "projection_axis": "z"},
        ),
        # RGB samples are the colour
        ((16, 20, 3), "YXS", 1, ["y", "x", "s"], {"channel_axis": "s"}),
    ],
    ids=["CYX", "ZYX", "TZYX", "YXS"],
)
def test_select_frames_defaults(
    tmp_path, shape, axes, expected_len, expected_bundle, expected_layout
):
    reader = open_stack(str(_write(tmp_path / "s.tif", shape, axes)))
    try:
        frames, layout = select_frames(reader)
        assert frames is reader
        assert len(frames) == expected_len
        assert reader.bundle_axes == expected_bundle
        assert layout == expected_layout
        assert frames[0].shape == tuple(reader.sizes[a] for a in expected_bundle)
    finally:
        reader.close()


def test_a_slice_keeps_axis_names_and_the_frame_rate(tmp_path):
    # TZCYX, frame interval 0.5 s; frames 1, 3, 5 of one channel, max over z, bit-exact
    path = tmp_path / "s.tif"
    data = np.random.default_rng(0).integers(0, 60000, (6, 3, 2, 16, 20), dtype=np.uint16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX", "finterval": 0.5})
    reader = open_stack(str(path))
    try:
        frames, layout = select_frames(reader, channel=1, frame_range=slice(1, None, 2))
        assert frames is not reader and len(frames) == 3
        assert layout == {"channel_axis": None, "projection": "max", "projection_axis": "z"}
        result = to_video(frames, tmp_path / "part.mkv", lossless=True, progress=False, **layout)
    finally:
        reader.close()
    assert result.fps == pytest.approx(2.0)  # the reader's, though a slice does not carry it
    with av.open(str(result.path)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(2.0)
        video = np.stack([f.to_ndarray(format="gray16le") for f in container.decode(stream)])
    expected = tifffile.imread(path)[1::2, :, 1].max(axis=1)
    np.testing.assert_array_equal(video, expected)


def test_summarize_and_describe_follow_tifffile(tmp_path):
    path = tmp_path / "s.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 2, 16, 20), np.uint16),
        imagej=True,
        metadata={"axes": "TCYX", "finterval": 2.5},
    )
    reader = open_stack(str(path))
    try:
        record = summarize("s.tif", reader)
    finally:
        reader.close()
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        expected = {a.lower(): n for a, n in zip(series.axes, series.shape, strict=True)}
        interval = tif.imagej_metadata["finterval"]
    assert record["sizes"] == expected
    assert record["frame_interval"] == pytest.approx(interval)
    lines = describe(record)
    assert lines[0] == "s.tif"
    assert "  axes:           t=4 c=2 y=16 x=20" in lines
    assert f"  frame interval: {interval:.6g} s" in lines
    assert "  channels:       2 (no names in the file)" in lines


@pytest.mark.parametrize(
    "options",
    [{"coords": {"z": 10**400}}, {"channel": 10**400}, {"frame_range": slice(10**400, None)}],
)
def test_huge_numbers_are_shown_short_in_selection_messages(tmp_path, options):
    """pims-video --coords z=<400 digits> (also --channels, --start) printed every digit."""
    from pims_videoutils import ExportArgumentError

    path = _write(tmp_path / "s.tif", (2, 3, 2, 16, 20), "TZCYX")
    with open_stack(str(path)) as reader, pytest.raises(ExportArgumentError) as error:
        select_frames(reader, project="none", **options)
    assert "1e+400" in str(error.value) and len(str(error.value)) < 100
