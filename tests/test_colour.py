from __future__ import annotations

import numpy as np
import pytest

from pims_videoutils import ExportArgumentError
from pims_videoutils.colour import (
    Compositor,
    apply_lut,
    channel_lut,
    colormap_lut,
    default_channel_colors,
)

RAMP = np.arange(256, dtype=np.uint8)


def test_viridis_end_points_are_the_published_ones():
    lut = colormap_lut("viridis")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and lut.flags.c_contiguous
    # viridis starts at #440154 and ends at #FDE725
    np.testing.assert_array_equal(lut[0], [0x44, 0x01, 0x54])
    np.testing.assert_array_equal(lut[255], [0xFD, 0xE7, 0x25])


def test_gray_and_reversed_gray():
    np.testing.assert_array_equal(colormap_lut("gray"), np.stack([RAMP] * 3, axis=1))
    np.testing.assert_array_equal(colormap_lut("gray_r"), np.stack([RAMP[::-1]] * 3, axis=1))


def test_explicit_tables():
    table = np.zeros((256, 3), np.uint8)
    table[:, 2] = RAMP
    np.testing.assert_array_equal(colormap_lut(table), table)
    np.testing.assert_array_equal(colormap_lut(table / 255.0), table)
    with pytest.raises(ExportArgumentError):
        colormap_lut(np.zeros((10, 3)))
    with pytest.raises(ExportArgumentError):
        colormap_lut("no-such-colormap")


def test_channel_colours_are_ramps_from_black():
    green = channel_lut("green")
    np.testing.assert_array_equal(green[:, 1], RAMP)
    assert not green[:, [0, 2]].any()
    orange = channel_lut("#ff8800")
    expected = np.round(np.outer(np.linspace(0, 1, 256), [255, 0x88, 0])).astype(np.uint8)
    np.testing.assert_array_equal(orange, expected)
    np.testing.assert_array_equal(channel_lut((1.0, 0.0, 1.0)), channel_lut("magenta"))
    # not a colour: a colormap
    np.testing.assert_array_equal(channel_lut("viridis"), colormap_lut("viridis"))
    with pytest.raises(ExportArgumentError):
        channel_lut("not-a-colour-or-map")


def test_default_channel_colors():
    assert default_channel_colors(1) == ("gray",)
    assert default_channel_colors(2) == ("green", "magenta")
    assert default_channel_colors(3) == ("red", "green", "blue")
    assert default_channel_colors(5) == ("red", "green", "blue", "gray", "cyan")
    for bad in (0, 8):
        with pytest.raises(ExportArgumentError):
            default_channel_colors(bad)


def test_apply_lut_equals_fancy_indexing():
    lut = colormap_lut("magma")
    plane = np.random.default_rng(0).integers(0, 256, (17, 23), dtype=np.uint8)
    out = apply_lut(lut, plane)
    assert out.shape == (17, 23, 3)
    np.testing.assert_array_equal(out, lut[plane])


def planes(n, shape=(9, 11), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def test_rgb_composite_is_a_plain_stack():
    comp = Compositor(["red", "green", "blue"])
    assert comp.stack_order == (0, 1, 2)
    p = planes(3)
    np.testing.assert_array_equal(comp(p), np.stack(p, axis=-1))
    bgr = Compositor(["blue", "green", "red"])
    np.testing.assert_array_equal(bgr(p), np.stack(p[::-1], axis=-1))


def test_green_magenta_composite():
    comp = Compositor(default_channel_colors(2))
    assert comp.stack_order is None
    a, b = planes(2)
    out = comp([a, b])
    np.testing.assert_array_equal(out, np.stack([b, a, b], axis=-1))


def test_composite_adds_and_saturates():
    a, b = planes(2, seed=4)
    out = Compositor(["red", "yellow"])([a, b])
    red = np.minimum(a.astype(int) + b, 255)
    np.testing.assert_array_equal(out[..., 0], red)
    np.testing.assert_array_equal(out[..., 1], b)
    assert not out[..., 2].any()


@pytest.mark.parametrize("colors", [["red", "green", "blue"], ["viridis", "magenta", "gray_r"]])
def test_pixels_marked_black_add_nothing_to_a_composite(colors):
    p = planes(3, seed=5)
    black = [p[0] > 200, None, p[2] < 30]
    out = Compositor(colors)(p, black)
    expected = np.zeros(out.shape, np.int64)
    for plane, mask, color in zip(p, black, colors, strict=True):
        coloured = channel_lut(color)[plane].astype(np.int64)
        if mask is not None:
            coloured[mask] = 0
        expected += coloured
    np.testing.assert_array_equal(out, np.minimum(expected, 255))
    single = apply_lut(colormap_lut("viridis"), p[0], black[0])
    assert not single[black[0]].any() and (single[~black[0]] == colormap_lut("viridis")[
        p[0][~black[0]]]).all()


def test_single_channel_with_colormap_and_wrong_count():
    (a,) = planes(1)
    np.testing.assert_array_equal(Compositor(["viridis"])([a]), colormap_lut("viridis")[a])
    with pytest.raises(ExportArgumentError):
        Compositor(["red", "green"])([a])


def test_float_colormap_table_outside_0_1_is_refused_not_clipped():
    # an ImageJ/matplotlib table read as floats 0-255 would saturate to white silently
    ramp = np.linspace(0, 255, 256)[:, None].repeat(3, axis=1)
    with pytest.raises(ExportArgumentError, match="0-1"):
        colormap_lut(ramp)
    with pytest.raises(ExportArgumentError, match="0-1"):
        colormap_lut(ramp / 255 - 0.01)
    np.testing.assert_array_equal(colormap_lut(ramp / 255), ramp.astype(np.uint8))


def test_colour_tuples_of_integer_zeros_and_ones_are_full_intensity():
    # (1, 0, 0) meant red (matplotlib's convention), not 1/255 of red: a black channel
    np.testing.assert_array_equal(channel_lut((1, 0, 0))[255], [255, 0, 0])
    np.testing.assert_array_equal(channel_lut([0, 1, 1])[255], [0, 255, 255])
    assert Compositor([(1, 0, 0), (0, 1, 0)]).stack_order == (0, 1)
    np.testing.assert_array_equal(channel_lut((255, 128, 0))[255], [255, 128, 0])  # 0-255
    np.testing.assert_array_equal(channel_lut((1.0, 0.5, 0.0))[255], [255, 128, 0])
    # the same colours as integer arrays (np.array([1, 0, 0]) was a near-black 1/255 of red)
    np.testing.assert_array_equal(channel_lut(np.array([1, 0, 0]))[255], [255, 0, 0])
    np.testing.assert_array_equal(channel_lut(np.array([255, 128, 0]))[255], [255, 128, 0])


@pytest.mark.parametrize(
    "color", [(255.0, 128.0, 0.0), np.array([255.0, 128.0, 0.0]), (0.5, 1.5, 0.0)]
)
def test_colour_of_floats_outside_0_1_is_refused_not_clipped(color):
    # (255.0, 128.0, 0.0) became yellow (clipped to (1, 1, 0)), not orange
    with pytest.raises(ExportArgumentError, match="0-1"):
        channel_lut(color)


@pytest.mark.parametrize("color", [(300, 0, 0), np.array([0, 256, 10]), (-1, 128, 0)])
def test_colour_of_integers_outside_0_255_is_refused_not_clipped(color):
    # (300, 0, 0) drew full red (clipped), (0, 256, 10) full green
    with pytest.raises(ExportArgumentError, match="0-255"):
        channel_lut(color)


@pytest.mark.parametrize(
    "color", [None, 5, 0xFF0000, object(), {"r": 1}, (0.5, 0.5), [1, 2], [[1, 2], [3]]]
)
def test_what_is_neither_a_colour_nor_a_colormap_is_refused(color):
    """None and numbers made silently (nearly) black channels (cmap reads 5 as #000005);
    other objects and short tuples raised TypeError, ragged lists numpy's ValueError."""
    with pytest.raises(ExportArgumentError, match="colour"):
        channel_lut(color)


def test_a_cmap_color_is_a_colour():
    import cmap

    lut = channel_lut(cmap.Color("#ff8000"))
    np.testing.assert_array_equal(lut[255], [255, 128, 0])
    np.testing.assert_array_equal(lut[0], [0, 0, 0])
