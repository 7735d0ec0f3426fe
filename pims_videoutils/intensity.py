"""Intensity mapping: from any numeric dtype to 8-bit display values (pure numpy).

The contrast limits ``(lo, hi)`` of a movie are computed once, from exact percentiles of the
values of a sample of frames, so real brightness changes between frames stay visible. Mapping
a frame is then one table look-up for integer data of up to 16 bits (a 256- or 65536-entry
``uint8`` table indexed with ``np.take``), or a few float operations for other dtypes (in
float32 for float16 and float32 data, in float64 for wider integers and floats).

The mapping of a value ``v`` is::

    t = clip((v - lo) / (hi - lo), 0, 1)
    out = round(255 * t ** gamma)

so ``gamma < 1`` brightens the dark values and ``gamma > 1`` darkens them. When ``hi == lo``
(a constant image) values ``<= lo`` map to 0 and values ``> lo`` to 255. NaN maps to 0
(:func:`~pims_videoutils.to_video` draws NaN black also where a colormap colours 0
otherwise), ``+inf`` to 255, ``-inf`` to 0. Data without a finite value (a sample of frames
for ``contrast="auto"``, a frame for ``"frame"``) get the limits ``(0, 0)``: NaN and
``-inf`` black, ``+inf`` white (:func:`display_limits`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._errors import ExportArgumentError
from ._wording import shown

__all__ = [
    "DEFAULT_PERCENTILES",
    "IntensityMap",
    "check_dtype",
    "display_limits",
    "exact_percentiles",
    "intensity_lut",
    "map_to_uint8",
    "robust_limits",
    "sample_indices",
]

DEFAULT_PERCENTILES = (0.1, 99.9)
MAX_SAMPLE_FRAMES = 50
_MAX_FLOAT_SAMPLES = 2_000_000
#: A strided sample with fewer finite values than this (data mostly NaN) is replaced by the
#: finite values of all the data.
_MIN_FINITE_SAMPLES = 100_000
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal number


class _NoFiniteValues(ExportArgumentError):
    """The values hold no finite number (NaN and infinities only)."""


def _as_float(number: float) -> float:
    """Return ``float(number)``; an integer or fraction too large for a float is +-inf."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def check_dtype(dtype: np.dtype) -> np.dtype:
    """Return ``dtype`` in native byte order, or raise for a dtype that has no intensity.

    Raises
    ------
    ExportArgumentError
        For complex, object, string, structured or datetime dtypes.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ExportArgumentError(
            f"cannot make a video of {dtype} data: frames must be bool, integer or float"
        )
    return dtype.newbyteorder("=")


def _is_table_dtype(dtype: np.dtype) -> bool:
    """Return True for integer dtypes small enough for a full look-up table (<= 16 bits)."""
    return dtype.kind in "iu" and dtype.itemsize <= 2


def _table_index(plane: np.ndarray) -> np.ndarray:
    """View a <= 16-bit integer array as the unsigned indices of its look-up table.

    Signed values get their sign bit flipped, so the indices keep the order of the values:
    index ``i`` stands for the value ``i - 2**(bits-1)``.
    """
    unsigned = plane.view(f"u{plane.dtype.itemsize}")
    if plane.dtype.kind == "i":
        return unsigned ^ np.array(1 << (8 * plane.dtype.itemsize - 1), unsigned.dtype)
    return unsigned


def _table_values(dtype: np.dtype) -> np.ndarray:
    """Return the value each index of the look-up table of ``dtype`` stands for (int32)."""
    n = 1 << (8 * dtype.itemsize)
    values = np.arange(n, dtype=np.int32)
    if dtype.kind == "i":
        values -= n // 2
    return values


def sample_indices(n_frames: int, max_samples: int = MAX_SAMPLE_FRAMES) -> np.ndarray:
    """Return indices of up to ``max_samples`` evenly spaced frames, first and last included.

    Raises
    ------
    ValueError
        If ``n_frames`` < 1.
    """
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    k = min(n_frames, max_samples)
    return np.unique(np.round(np.linspace(0, n_frames - 1, k)).astype(np.intp))


def exact_percentiles(
    planes: Sequence[np.ndarray], percentiles: Sequence[float]
) -> tuple[float, ...]:
    """Percentiles of all values of ``planes``, equal to ``np.percentile`` (linear method).

    Integer data of up to 16 bits go through one histogram (``np.bincount``), which is exact
    and about 5x faster than sorting. Other dtypes use ``np.percentile`` on the finite values
    of an evenly strided subsample of at most 2 million values (exact when smaller); when
    fewer than 100,000 of those are finite (data mostly NaN), on the finite values of all
    the data (strided to 2 million).

    Parameters
    ----------
    planes : sequence of ndarray
        Arrays of one dtype (any shapes).
    percentiles : sequence of float
        Percentiles in [0, 100].

    Returns
    -------
    tuple of float

    Raises
    ------
    ExportArgumentError
        If there are no values, no finite values, or a percentile is outside [0, 100].
    """
    percentiles = tuple(percentiles)
    qs = np.array([_as_float(q) for q in percentiles], dtype=np.float64)
    if np.any((qs < 0) | (qs > 100)) or not np.all(np.isfinite(qs)):
        raise ExportArgumentError(
            f"percentiles must lie in [0, 100], got {shown(percentiles)}"
        )
    if not planes or sum(p.size for p in planes) == 0:
        raise ExportArgumentError("no pixel values to compute the contrast from")
    dtype = planes[0].dtype
    if dtype.kind == "b":
        planes = [p.view(np.uint8) for p in planes]
        dtype = np.dtype(np.uint8)
    if _is_table_dtype(dtype):
        n = 1 << (8 * dtype.itemsize)
        hist = np.zeros(n, dtype=np.int64)
        for p in planes:
            hist += np.bincount(_table_index(np.ascontiguousarray(p)).ravel(), minlength=n)
        cum = np.cumsum(hist)
        total = int(cum[-1])
        pos = qs / 100.0 * (total - 1)
        k0 = np.floor(pos)
        k1 = np.minimum(k0 + 1, total - 1)
        values = _table_values(dtype)
        v0 = values[np.searchsorted(cum, k0, side="right")].astype(np.float64)
        v1 = values[np.searchsorted(cum, k1, side="right")].astype(np.float64)
        return tuple(float(x) for x in v0 + (pos - k0) * (v1 - v0))
    total = sum(p.size for p in planes)
    step = max(1, -(-total // _MAX_FLOAT_SAMPLES))
    flat = np.concatenate([np.ravel(p)[::step] for p in planes])
    flat = flat[np.isfinite(flat)]
    if step > 1 and flat.size < _MIN_FINITE_SAMPLES:  # few finite values: the stride may miss
        flat = np.concatenate([p[np.isfinite(p)] for p in planes])  # them; take them all
        flat = flat[:: max(1, -(-flat.size // _MAX_FLOAT_SAMPLES))]
    if flat.size == 0:
        raise _NoFiniteValues("no finite pixel values to compute the contrast from")
    flat = flat.astype(np.float64)
    if math.isinf(float(flat.max()) - float(flat.min())):  # interpolation would overflow
        return tuple(2.0 * float(x) for x in np.percentile(flat * 0.5, qs))
    return tuple(float(x) for x in np.percentile(flat, qs))


def robust_limits(
    planes: Sequence[np.ndarray], percentiles: Sequence[float] = DEFAULT_PERCENTILES
) -> tuple[float, float]:
    """Contrast limits ``(lo, hi)``: the two ``percentiles`` of all values of ``planes``.

    Raises
    ------
    ExportArgumentError
        As :func:`exact_percentiles`, or if ``percentiles`` is not two increasing values.
    """
    lo, hi = exact_percentiles(planes, _percentile_pair(percentiles))
    return lo, hi


def display_limits(
    planes: Sequence[np.ndarray], percentiles: Sequence[float] = DEFAULT_PERCENTILES
) -> tuple[float, float]:
    """:func:`robust_limits`, or ``(0.0, 0.0)`` when the planes hold no finite value.

    With the limits ``(0, 0)`` NaN and ``-inf`` map to 0 (black), ``+inf`` to 255.

    Raises
    ------
    ExportArgumentError
        As :func:`robust_limits`, except for planes without a finite value.
    """
    try:
        return robust_limits(planes, percentiles)
    except _NoFiniteValues:
        return 0.0, 0.0


def _percentile_pair(percentiles: Sequence[float]) -> tuple[float, float]:
    """Return ``(low, high)``; ExportArgumentError unless two increasing numbers in [0, 100].

    ``percentiles`` may be any iterable (a generator is read once).
    """
    try:
        percentiles = tuple(percentiles)
        low, high = (_as_float(p) for p in percentiles)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not low <= high:
        raise ExportArgumentError(
            f"percentiles must be two increasing values (low, high), got {shown(percentiles)}"
        )
    if low < 0 or high > 100:
        raise ExportArgumentError(f"percentiles must lie in [0, 100], got {shown(percentiles)}")
    return low, high


def _scale(values: np.ndarray, lo: float, hi: float, gamma: float) -> np.ndarray:
    """Apply the mapping formula of the module docstring (float arithmetic) -> uint8."""
    if hi > lo:
        if math.isinf(hi - lo):  # the range overflows: halve values and limits alike
            values, lo, hi = values * 0.5, lo * 0.5, hi * 0.5
        with np.errstate(over="ignore"):  # far outside a tiny range: +-inf, clipped below
            t = (values - lo) / (hi - lo)
        t = np.fmin(np.fmax(t, 0.0), 1.0)  # fmax/fmin map NaN to the bound
        if gamma != 1.0:
            t = t**gamma
        return (t * 255.0 + 0.5).astype(np.uint8)
    return np.where(values > lo, np.uint8(255), np.uint8(0))


def intensity_lut(dtype: np.dtype, lo: float, hi: float, gamma: float = 1.0) -> np.ndarray:
    """Look-up table mapping every value of an 8/16-bit integer or bool dtype to uint8.

    Index the table with the values viewed as unsigned integers (sign bit flipped for
    signed dtypes); :class:`IntensityMap` does this.

    Raises
    ------
    ExportArgumentError
        For dtypes wider than 16 bits or floats.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        dtype = np.dtype(np.uint8)
    if not _is_table_dtype(dtype):
        raise ExportArgumentError(f"no look-up table for {dtype}")
    return _scale(_table_values(dtype).astype(np.float64), lo, hi, gamma)


def map_to_uint8(plane: np.ndarray, lo: float, hi: float, gamma: float = 1.0) -> np.ndarray:
    """Map any numeric array to uint8 with limits ``(lo, hi)`` (formula in module docstring).

    Uses a look-up table for 8/16-bit integers and bool, float32 arithmetic for float16 and
    float32 data, float64 otherwise (float32's 24-bit significand would merge neighbouring
    values of 32-bit integers above 2**24), also for float32 data whose limits float32 cannot
    hold exactly enough (beyond half its largest value, or closer than its smallest normal
    number). A range ``hi - lo`` too wide for float64 is mapped on halved values.
    """
    if plane.dtype.kind == "b" or _is_table_dtype(plane.dtype):
        return _take(intensity_lut(plane.dtype, lo, hi, gamma), plane)
    single = (
        plane.dtype.kind == "f"
        and plane.dtype.itemsize <= 4
        and max(abs(lo), abs(hi)) <= _FLOAT32_MAX / 2
        and (hi == lo or hi - lo >= _FLOAT32_TINY)
    )
    return _scale(plane.astype(np.float32 if single else np.float64, copy=False), lo, hi, gamma)


class IntensityMap:
    """Maps the planes of one channel (one dtype) to uint8, or passes them through unchanged.

    Build it with :meth:`fixed`, :meth:`per_frame` or :meth:`passthrough` and call it on
    2-D planes. ``limits`` is the ``(lo, hi)`` used, or None when it changes every frame.
    """

    def __init__(
        self,
        dtype: np.dtype,
        mode: str,
        limits: tuple[float, float] | None = None,
        gamma: float = 1.0,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.mode = mode
        self.limits = limits
        self.gamma = float(gamma)
        self.percentiles = percentiles
        self._lut = intensity_lut(self.dtype, *limits, gamma) if mode == "lut" else None

    @classmethod
    def fixed(cls, dtype: np.dtype, lo: float, hi: float, gamma: float = 1.0) -> IntensityMap:
        """One contrast ``(lo, hi)`` for every frame.

        Raises
        ------
        ExportArgumentError
            If ``lo > hi``, a limit is not finite or ``gamma <= 0``.
        """
        try:
            lo, hi = _as_float(lo), _as_float(hi)
        except (TypeError, ValueError):
            raise ExportArgumentError(
                f"contrast limits must be numbers: {shown((lo, hi))}"
            ) from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise ExportArgumentError(f"contrast limits must be finite with lo <= hi: {lo, hi}")
        _check_gamma(gamma)
        dtype = np.dtype(dtype)
        mode = "lut" if dtype.kind == "b" or _is_table_dtype(dtype) else "compute"
        return cls(dtype, mode, (lo, hi), gamma)

    @classmethod
    def per_frame(
        cls,
        dtype: np.dtype,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        gamma: float = 1.0,
    ) -> IntensityMap:
        """Limits from the ``percentiles`` of each plane on its own (brightness flickers).

        Raises
        ------
        ExportArgumentError
            If ``gamma <= 0`` or ``percentiles`` are not two increasing values in [0, 100].
        """
        _check_gamma(gamma)
        return cls(dtype, "frame", None, gamma, _percentile_pair(percentiles))

    @classmethod
    def passthrough(cls, dtype: np.dtype) -> IntensityMap:
        """No mapping: planes are sent as they are (uint8, or uint16 for 16-bit codecs)."""
        dtype = np.dtype(dtype)
        return cls(dtype, "pass", (0.0, float(np.iinfo(dtype).max)))

    @property
    def output_dtype(self) -> np.dtype:
        """The dtype of mapped planes: uint8, or the input dtype when passing through."""
        return self.dtype if self.mode == "pass" else np.dtype(np.uint8)

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        """Map one plane of this map's dtype."""
        if self.mode == "pass":
            return plane
        if self.mode == "lut":
            return _take(self._lut, plane)
        if self.mode == "frame":
            lo, hi = display_limits([plane], self.percentiles)
            return map_to_uint8(plane, lo, hi, self.gamma)
        return map_to_uint8(plane, *self.limits, self.gamma)


def _take(lut: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """Look up every value of a bool or <= 16-bit integer plane in ``lut``."""
    if plane.dtype.kind == "b":
        plane = plane.view(np.uint8)
    return np.take(lut, _table_index(plane))


def _check_gamma(gamma: float) -> None:
    """Raise ExportArgumentError unless ``gamma`` is a finite number > 0."""
    number = isinstance(gamma, int | float | np.number) and not isinstance(gamma, bool)
    if not (number and math.isfinite(_as_float(gamma)) and gamma > 0):
        raise ExportArgumentError(f"gamma must be a finite number > 0, got {shown(gamma)}")
