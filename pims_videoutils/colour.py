"""Colour: colormaps and multi-channel composites as 256 x 3 look-up tables (pure numpy).

Colormaps come from the `cmap <https://cmap-docs.readthedocs.io>`_ package (matplotlib,
colorcet, cmocean, ImageJ LUTs... without their dependencies). A table is applied to an 8-bit
plane with ``np.take(lut, plane, axis=0)``, giving an ``(H, W, 3)`` uint8 RGB frame.

Composites follow ImageJ's "composite" display mode: every channel is mapped to 8 bits with
its own contrast, coloured with its own table (black to the channel colour) and the coloured
channels are added, saturating at 255. Default channel colours (:func:`default_channel_colors`):

======== ==============================================
channels colours
======== ==============================================
1        gray
2        green, magenta (readable by colour-blind viewers)
3        red, green, blue
4 to 7   red, green, blue, gray, cyan, magenta, yellow (ImageJ's order)
======== ==============================================

More than 7 channels need explicit colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import ExportArgumentError
from ._wording import shown

__all__ = [
    "Compositor",
    "apply_lut",
    "channel_lut",
    "colormap_lut",
    "default_channel_colors",
]

_IMAGEJ_ORDER = ("red", "green", "blue", "gray", "cyan", "magenta", "yellow")
# ImageJ's channel colours are full-intensity primaries (CSS "green" would be #008000)
_IMAGEJ_COLORS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "gray": (1.0, 1.0, 1.0),
    "grey": (1.0, 1.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}


def default_channel_colors(n_channels: int) -> tuple[str, ...]:
    """Return the default colour names of ``n_channels`` channels (table in module docstring).

    Raises
    ------
    ExportArgumentError
        If ``n_channels`` is < 1 or > 7.
    """
    if n_channels == 1:
        return ("gray",)
    if n_channels == 2:
        return ("green", "magenta")
    if 3 <= n_channels <= len(_IMAGEJ_ORDER):
        return _IMAGEJ_ORDER[:n_channels]
    raise ExportArgumentError(
        f"no default colours for {n_channels} channels: pass channel_colors=[...] "
        f"(one colour or colormap name per channel)"
    )


def _to_uint8_table(rgb: np.ndarray) -> np.ndarray:
    """Convert a (256, 3+) float table in [0, 1] to a C-contiguous (256, 3) uint8 table."""
    return np.ascontiguousarray(np.round(np.clip(rgb[:, :3], 0.0, 1.0) * 255.0), np.uint8)


def colormap_lut(colormap: Any) -> np.ndarray:
    """Return the (256, 3) uint8 table of a colormap.

    Parameters
    ----------
    colormap : str, cmap.Colormap or array_like
        A name known to ``cmap`` (``"viridis"``, ``"magma"``, ``"gray_r"``, ``"imagej:fire"``,
        ``"green"``...), a ``cmap.Colormap``, or an explicit (256, 3) table (integers in
        0-255, or floats in [0, 1]).

    Returns
    -------
    ndarray of shape (256, 3), uint8

    Raises
    ------
    ExportArgumentError
        For an unknown name, or a table of the wrong shape, type or values.
    """
    import cmap

    if isinstance(colormap, str | cmap.Colormap):
        try:
            cm = cmap.Colormap(colormap)
        except ValueError as exc:
            raise ExportArgumentError(f"unknown colormap {colormap!r}: {exc}") from None
        return _to_uint8_table(np.asarray(cm.lut(256)))
    table = np.asarray(colormap)
    if table.shape not in ((256, 3), (256, 4)):
        raise ExportArgumentError(f"a colormap table must have shape (256, 3), got {table.shape}")
    if table.dtype.kind in "iu":
        if table.min() < 0 or table.max() > 255:
            raise ExportArgumentError("a colormap table of integers must hold values 0 to 255")
        return np.ascontiguousarray(table[:, :3], np.uint8)
    if table.dtype.kind != "f" or not np.isfinite(table).all():
        raise ExportArgumentError(
            f"a colormap table must hold integers 0-255 or finite floats 0-1, not {table.dtype}"
        )
    rgb = table[:, :3]
    if rgb.min() < 0 or rgb.max() > 1:
        raise ExportArgumentError(
            f"a colormap table of floats must hold values 0-1, not {rgb.min():g} to "
            f"{rgb.max():g} (a table of 0-255 values: pass it as integers)"
        )
    return _to_uint8_table(table.astype(np.float64))


def channel_lut(color: Any) -> np.ndarray:
    """Return the (256, 3) uint8 table of one channel of a composite.

    Parameters
    ----------
    color : str, tuple or array_like
        A colour (``"red"``, ``"#ff8800"``, ``(1.0, 0.5, 0.0)``: a ramp from black to that
        colour), else anything :func:`colormap_lut` accepts (``"viridis"``). The names red,
        green, blue, gray/grey, cyan, magenta and yellow are ImageJ's full-intensity
        colours (``"green"`` is #00FF00, not CSS's #008000); other names follow CSS. A
        tuple, list or array of floats is 0-1, of integers 0-255, except integers that are
        all 0 or 1: ``(1, 0, 0)`` is red, as in matplotlib.

    Raises
    ------
    ExportArgumentError
        If ``color`` is neither a colour nor a colormap (None and bare numbers are
        neither), or a colour of floats outside 0-1 or of integers outside 0-255.
    """
    import cmap

    rgb = _color_rgb(color)
    if rgb is not None:
        return _to_uint8_table(np.linspace(0.0, 1.0, 256)[:, None] * rgb[None, :])
    if isinstance(color, str | cmap.Colormap) or (
        isinstance(color, tuple | list | np.ndarray) and _ndim(color) == 2
    ):
        return colormap_lut(color)
    raise ExportArgumentError(f"{shown(color)} is neither a colour nor a colormap")


def _color_rgb(color: Any) -> np.ndarray | None:
    """Return the (3,) RGB floats of a single colour, or None if ``color`` is not one.

    Colours are strings, ``cmap.Color`` objects and tuples, lists or arrays of 3 or 4
    numbers.
    """
    import cmap

    if not isinstance(color, str | tuple | list | np.ndarray | cmap.Color):
        return None
    if isinstance(color, cmap.Color):
        return np.asarray(color.rgba)[:3]
    if not isinstance(color, str) and (_ndim(color) != 1 or len(color) not in (3, 4)):
        return None
    if isinstance(color, str) and color.lower() in _IMAGEJ_COLORS:
        return np.array(_IMAGEJ_COLORS[color.lower()])
    if _zeros_and_ones(color):  # (1, 0, 0): red, as in matplotlib (not 1/255 of red)
        return np.array(color[:3], dtype=np.float64)
    values = np.asarray(color) if isinstance(color, tuple | list | np.ndarray) else None
    kind = None if values is None else values.dtype.kind
    if kind == "O" and all(isinstance(v, int | np.integer) for v in values.ravel()):
        kind = "i"  # integers too large for int64 (numpy keeps them as Python objects)
    if kind == "f" and not ((values >= 0) & (values <= 1)).all():
        raise ExportArgumentError(
            f"a colour of floats must hold values 0-1, not {shown(color)} (0-255 values: pass "
            f"integers)"
        )
    if kind in ("i", "u") and not ((values >= 0) & (values <= 255)).all():
        raise ExportArgumentError(
            f"a colour of integers must hold values 0-255, not {shown(color)}"
        )
    try:
        return np.asarray(cmap.Color(color).rgba)[:3]
    except (ValueError, TypeError, OverflowError):  # (a number too large for a float)
        return None  # not a colour (maybe a colormap name)


def _ndim(value: Any) -> int | None:
    """Return the number of axes of an array or nested sequence; None when it is ragged."""
    try:
        return np.ndim(value)
    except ValueError:  # "inhomogeneous shape"
        return None


def _zeros_and_ones(color: Any) -> bool:
    """Return True for an RGB(A) tuple, list or array of integers that are all 0 or 1."""
    return (
        isinstance(color, tuple | list | np.ndarray)
        and len(color) in (3, 4)
        and all(isinstance(v, int | np.integer) and v in (0, 1) for v in color)
    )


def apply_lut(
    lut: np.ndarray, plane: np.ndarray, black: np.ndarray | None = None
) -> np.ndarray:
    """Colour an (H, W) uint8 plane with a (256, 3) table -> (H, W, 3) uint8.

    ``black``, an (H, W) bool array, marks pixels drawn black whatever the table (pixels
    without a value: NaN).
    """
    rgb = np.take(lut, plane, axis=0)
    if black is not None:
        rgb[black] = 0
    return rgb


def _primary(lut: np.ndarray) -> int | None:
    """Return k if ``lut`` is exactly the ramp 0..255 in RGB component k, else None."""
    ramp = np.arange(256, dtype=np.uint8)
    for k in range(3):
        others = np.delete(lut, k, axis=1)
        if np.array_equal(lut[:, k], ramp) and not others.any():
            return k
    return None


class Compositor:
    """Adds coloured 8-bit channels into one RGB frame (ImageJ's composite mode).

    Parameters
    ----------
    colors : sequence
        One colour or colormap per channel (see :func:`channel_lut`).

    Attributes
    ----------
    luts : list of ndarray
        The (256, 3) uint8 table of each channel.
    stack_order : tuple of int or None
        When every table is a pure red, green or blue ramp on distinct components, the RGB
        component of each channel (the composite is then a plain stack), else None.

    Raises
    ------
    ExportArgumentError
        For an unknown colour.
    """

    def __init__(self, colors: Sequence[Any]) -> None:
        self.colors = tuple(colors)
        self.luts = [channel_lut(c) for c in self.colors]
        primaries = [_primary(lut) for lut in self.luts]
        # pure red/green/blue ramps on distinct components: a plain stack, no arithmetic
        distinct = None not in primaries and len(set(primaries)) == len(primaries)
        self.stack_order = tuple(primaries) if distinct else None

    def __call__(
        self, planes: Sequence[np.ndarray], black: Sequence[np.ndarray | None] | None = None
    ) -> np.ndarray:
        """Composite ``planes`` (one (H, W) uint8 plane per channel) -> (H, W, 3) uint8.

        ``black`` gives, per channel, None or an (H, W) bool array of the pixels where the
        channel adds nothing (black: pixels without a value, NaN).

        Raises
        ------
        ExportArgumentError
            If the number of planes differs from the number of colours.
        """
        if len(planes) != len(self.luts):
            raise ExportArgumentError(
                f"{len(planes)} channels but {len(self.luts)} channel colours"
            )
        black = [None] * len(planes) if black is None else black
        height, width = planes[0].shape
        if self.stack_order is not None:
            out = np.zeros((height, width, 3), np.uint8)
            for k, plane, mask in zip(self.stack_order, planes, black, strict=True):
                out[..., k] = plane if mask is None else np.where(mask, 0, plane)
            return out
        if len(planes) == 1:
            return apply_lut(self.luts[0], planes[0], black[0])
        acc = np.zeros((height, width, 3), np.uint16)
        for lut, plane, mask in zip(self.luts, planes, black, strict=True):
            acc += apply_lut(lut, plane, mask)
        np.minimum(acc, 255, out=acc)
        return acc.astype(np.uint8)
