from __future__ import annotations

import numpy as np
import pytest

from pims_videoutils import ExportArgumentError
from pims_videoutils.intensity import (
    IntensityMap,
    check_dtype,
    display_limits,
    exact_percentiles,
    intensity_lut,
    map_to_uint8,
    robust_limits,
    sample_indices,
)


def formula(values, lo, hi, gamma=1.0):
    """The documented mapping, written out independently in float64."""
    t = np.clip((np.asarray(values, np.float64) - lo) / (hi - lo), 0, 1)
    return np.floor(255 * t**gamma + 0.5).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("qs", [(0.1, 99.9), (0, 100), (50, 50), (1.0, 37.3), (25, 75)])
def test_exact_percentiles_match_numpy(dtype, qs):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    planes = [
        rng.integers(info.min, info.max, size=(37, 53), endpoint=True).astype(dtype)
        for _ in range(3)
    ]
    expected = np.percentile(np.concatenate([p.ravel() for p in planes]), qs)
    np.testing.assert_allclose(exact_percentiles(planes, qs), expected, rtol=0, atol=1e-9)


def test_exact_percentiles_skewed_integer_data():
    rng = np.random.default_rng(2)
    plane = (rng.exponential(300, size=(64, 64)) + 100).astype(np.uint16)
    plane[0, 0] = 65535  # a hot pixel
    expected = np.percentile(plane, (0.1, 99.9))
    np.testing.assert_allclose(exact_percentiles([plane], (0.1, 99.9)), expected)


def test_exact_percentiles_bool_and_float():
    b = np.zeros((10, 10), bool)
    b[:3] = True
    assert exact_percentiles([b], (50, 80)) == (0.0, 1.0)
    rng = np.random.default_rng(3)
    f = rng.normal(size=(40, 40)).astype(np.float32)
    f[0, :5] = np.nan
    f[1, 0] = np.inf
    finite = f[np.isfinite(f)].astype(np.float64)
    np.testing.assert_allclose(exact_percentiles([f], (1, 99)), np.percentile(finite, (1, 99)))


@pytest.mark.parametrize("bad", [(-1, 50), (50, 101), (np.nan, 5)])
def test_exact_percentiles_rejects_bad_percentiles(bad):
    with pytest.raises(ExportArgumentError):
        exact_percentiles([np.zeros((2, 2), np.uint8)], bad)


def test_robust_limits_errors():
    with pytest.raises(ExportArgumentError):
        robust_limits([np.zeros((2, 2), np.uint8)], (90, 10))
    with pytest.raises(ExportArgumentError):
        robust_limits([], (1, 99))
    with pytest.raises(ExportArgumentError):
        robust_limits([np.full((2, 2), np.nan)], (1, 99))


def test_uint16_lut_matches_formula_for_every_value():
    values = np.arange(65536, dtype=np.uint16)
    for lo, hi, gamma in [(100, 1100, 1.0), (0, 65535, 1.0), (300, 2200, 0.5), (5, 6, 2.2)]:
        lut = intensity_lut(np.uint16, lo, hi, gamma)
        assert lut.dtype == np.uint8 and lut.shape == (65536,)
        np.testing.assert_array_equal(lut, formula(values, lo, hi, gamma))


def test_fixed_map_golden_values():
    m = IntensityMap.fixed(np.uint16, 100, 1100)
    out = m(np.array([[0, 100, 600, 1099, 1100, 65535]], np.uint16))
    # 600 -> t = 0.5 -> 127.5 -> rounds half up to 128
    np.testing.assert_array_equal(out, [[0, 0, 128, 255, 255, 255]])
    assert m.limits == (100.0, 1100.0)
    assert m.output_dtype == np.uint8


def test_signed_values_keep_their_order():
    m = IntensityMap.fixed(np.int16, -1000, 1000)
    x = np.array([-32768, -1000, -1, 0, 1000, 32767], np.int16)
    np.testing.assert_array_equal(m(x), formula(x, -1000, 1000))
    m8 = IntensityMap.fixed(np.int8, -128, 127)
    x8 = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(m8(x8), formula(x8, -128, 127))


def test_gamma_on_uint8():
    out = IntensityMap.fixed(np.uint8, 0, 255, gamma=0.5)(np.array([0, 64, 255], np.uint8))
    # sqrt(64 / 255) * 255 = 127.75
    np.testing.assert_array_equal(out, [0, 128, 255])


def test_bool_maps_to_0_255():
    out = IntensityMap.fixed(np.bool_, 0, 1)(np.array([True, False]))
    np.testing.assert_array_equal(out, [255, 0])


def test_constant_range_is_a_step():
    out = map_to_uint8(np.array([4, 5, 6], np.uint16), 5, 5)
    np.testing.assert_array_equal(out, [0, 0, 255])
    out = map_to_uint8(np.array([4.0, 5.0, 6.0]), 5, 5)
    np.testing.assert_array_equal(out, [0, 0, 255])


def test_float_and_wide_integer_mapping():
    x = np.array([np.nan, -np.inf, np.inf, -1.0, 0.25, 0.5, 2.0], np.float32)
    np.testing.assert_array_equal(map_to_uint8(x, 0, 1), [0, 0, 255, 0, 64, 128, 255])
    big = np.array([0, 2**20, 2**21, 2**31 - 1], np.int64)
    np.testing.assert_array_equal(map_to_uint8(big, 0, 2**21), formula(big, 0, 2**21))
    m = IntensityMap.fixed(np.uint32, 0, 2**21)
    assert m.mode == "compute"
    np.testing.assert_array_equal(m(big.astype(np.uint32)), formula(big, 0, 2**21))


@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
def test_32_bit_integers_above_2_to_the_24_keep_every_level(dtype):
    # e.g. a sum projection of 16-bit frames: values near 10**8, a range of 255 counts
    ramp = (100_000_000 + np.arange(256)).astype(dtype)
    out = map_to_uint8(ramp, 100_000_000, 100_000_255)
    np.testing.assert_array_equal(out, formula(ramp, 100_000_000, 100_000_255))


def test_per_frame_uses_each_frames_own_limits():
    m = IntensityMap.per_frame(np.uint16, (0, 100))
    assert m.limits is None
    dark = np.array([[10, 20, 30]], np.uint16)
    bright = dark * 100
    np.testing.assert_array_equal(m(dark), m(bright))
    np.testing.assert_array_equal(m(dark), [[0, 128, 255]])


def test_per_frame_without_finite_values_maps_nan_to_0_and_inf_to_255():
    m = IntensityMap.per_frame(np.float32)
    plane = np.array([[np.nan, np.inf, -np.inf, np.nan]], np.float32)
    np.testing.assert_array_equal(m(plane), [[0, 255, 0, 0]])


def test_passthrough_and_invalid_settings():
    x = np.arange(6, dtype=np.uint16).reshape(2, 3)
    m = IntensityMap.passthrough(np.uint16)
    assert m(x) is x and m.output_dtype == np.uint16 and m.limits == (0.0, 65535.0)
    with pytest.raises(ExportArgumentError):
        IntensityMap.fixed(np.uint16, 10, 5)
    with pytest.raises(ExportArgumentError):
        IntensityMap.fixed(np.uint16, 0, np.inf)
    with pytest.raises(ExportArgumentError):
        IntensityMap.fixed(np.uint16, 0, 5, gamma=0)
    with pytest.raises(ExportArgumentError):
        intensity_lut(np.float32, 0, 1)


def test_check_dtype():
    assert check_dtype(np.dtype(">u2")) == np.dtype("<u2").newbyteorder("=")
    assert check_dtype(np.dtype(">u2")).isnative
    for bad in (np.complex64, object, "U3", "M8[s]"):
        with pytest.raises(ExportArgumentError):
            check_dtype(np.dtype(bad))


def test_sample_indices():
    np.testing.assert_array_equal(sample_indices(10), np.arange(10))
    idx = sample_indices(1000)
    assert len(idx) == 50 and idx[0] == 0 and idx[-1] == 999
    assert np.all(np.diff(idx) >= 20) and np.all(np.diff(idx) <= 21)
    np.testing.assert_array_equal(sample_indices(1), [0])
    with pytest.raises(ValueError):
        sample_indices(0)


def exact_formula(values, lo, hi):
    """The documented mapping in exact rational arithmetic (NaN -> 0, infinities clipped)."""
    from fractions import Fraction

    out = []
    for v in np.asarray(values, np.float64).ravel():
        if np.isnan(v) or v == -np.inf:
            out.append(0)
        elif v == np.inf:
            out.append(255)
        else:
            t = min(max((Fraction(v) - Fraction(lo)) / (Fraction(hi) - Fraction(lo)), 0), 1)
            out.append(int(255 * t + Fraction(1, 2)))
    return np.array(out, np.uint8).reshape(np.shape(values))


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize(
    ("values", "lo", "hi"),
    [
        (np.array([-1e308, -5e307, 0, 1, 5e307, 1e308, np.inf, np.nan]), -1e308, 1e308),
        (np.array([-1.7e308, 0, 1.7e308]), -1e308, 1e308),  # beyond the limits
        (np.array([-3e38, -1e38, 0, 2e38, 3e38], np.float32), -3e38, 3e38),
        (np.array([0, 1e-40, 4e-40, 7e-40, 1e-39, -1], np.float32), 0.0, float(np.float32(1e-39))),
        (np.array([0, 2e-310, 5e-310, 1e-309, 1]), 0.0, 1e-309),  # float64 subnormal range
        (np.array([0.0, 0.5, 1.0], np.float32), -1e300, 1e300),  # limits beyond float32
    ],
)
def test_extreme_ranges_map_without_overflow(values, lo, hi):
    np.testing.assert_array_equal(map_to_uint8(values, lo, hi), exact_formula(values, lo, hi))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_percentiles_of_values_spanning_more_than_float64():
    from fractions import Fraction

    values = np.array([-1.7e308, 1.7e308])  # neighbours more than float64's maximum apart
    ordered = sorted(Fraction(v) for v in values)
    expected = []
    for q in (0.1, 50, 99.9):  # numpy's linear method, in exact arithmetic
        pos = Fraction(q) / 100 * (len(ordered) - 1)
        k = int(pos)
        upper = ordered[min(k + 1, len(ordered) - 1)]
        expected.append(float(ordered[k] + (pos - k) * (upper - ordered[k])))
    got = exact_percentiles([values[:1], values[1:]], (0.1, 50, 99.9))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    lo, hi = robust_limits([values])
    assert np.isfinite([lo, hi]).all() and lo < hi
    np.testing.assert_array_equal(
        IntensityMap.per_frame(values.dtype)(values), exact_formula(values, lo, hi)
    )


def test_percentiles_of_sparse_finite_values_in_mostly_nan_data():
    """Over 2 million values are subsampled with a stride; finite values that all lie
    between the stride's samples (a NaN-masked frame with a small region of data) must
    still set the contrast, as numpy's nanpercentile over all values does."""
    frame = np.full((2000, 1500), np.nan, np.float32)  # 3 million values: stride 2
    rng = np.random.default_rng(5)
    frame.ravel()[1:20001:2] = rng.uniform(100, 200, 10000)  # odd positions only
    expected = np.nanpercentile(frame.astype(np.float64), [0.1, 99.9])
    np.testing.assert_allclose(display_limits([frame], (0.1, 99.9)), expected)
    np.testing.assert_allclose(exact_percentiles([frame], [0.1, 99.9]), expected)
