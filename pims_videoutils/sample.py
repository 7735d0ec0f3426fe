"""A deterministic synthetic N-D movie: the built-in sample.

Fluorescent spots diffuse in time in a few focal planes, seen in two channels through a noisy
16-bit camera, and are written with tifffile as an ImageJ hyperstack (axes ``TZCYX``) with pixel
size, z step and frame interval, so that every part of the package can run on a machine with no
data of its own::

    from pims_videoutils import write_sample
    path = write_sample("sample.tif")

The spots and the pixels are drawn from one seeded random generator: the same seed and options
give the same pixels on every machine. :func:`spot_positions` returns the trajectories the
movie is drawn from (the ground truth for tracking).
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import pathlib
import secrets
from dataclasses import dataclass

import numpy as np

from ._filenames import NAME_MAX, shortened_to

__all__ = ["SampleSpots", "spot_positions", "write_sample"]

#: Fraction of spots labelled in both channels; the others are in one channel only.
_BOTH_CHANNELS = 1 / 3
#: Axial distance (in z steps) over which a spot's blur radius grows by sqrt(2).
_DEPTH_OF_FIELD = 0.5
#: Margin (pixels) that diffusing spots keep from the image border.
_MARGIN = 6.0
#: RGB weights of the ImageJ lookup tables of the channels, in order (then repeated).
_CHANNEL_COLORS = ((0, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0), (0, 0, 1))


@dataclass(frozen=True)
class SampleSpots:
    """Ground truth of the sample: where every spot is, in which plane and channels.

    Attributes
    ----------
    yx : numpy.ndarray
        Spot centres in pixels, shape ``(n_frames, n_spots, 2)``, order (y, x).
    z : numpy.ndarray
        The z-plane index in which each spot is in focus, shape ``(n_spots,)``.
    channels : numpy.ndarray
        Boolean, shape ``(n_channels, n_spots)``: whether a spot is labelled in a channel.
    photons : numpy.ndarray
        Photons per spot per frame (its total brightness), shape ``(n_spots,)``.
    """

    yx: np.ndarray
    z: np.ndarray
    channels: np.ndarray
    photons: np.ndarray


def _temporary_name(path: pathlib.Path) -> pathlib.Path:
    """Return a new hidden temporary file name beside ``path``, cut to fit 255 bytes.

    Unique per call (process id and a random part), so that threads writing one path at once
    each write their own.
    """
    suffix = f".{os.getpid()}-{secrets.token_hex(4)}.part"
    name = shortened_to(path.name, NAME_MAX - len(os.fsencode(f".{suffix}")))
    return path.with_name(f".{name}{suffix}")


def _check_sizes(**sizes: int) -> None:
    """Raise ValueError unless every size is an integer >= 1 (not a float, not a bool)."""
    for name, value in sizes.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if sizes["height"] < 4 * _MARGIN or sizes["width"] < 4 * _MARGIN:
        raise ValueError(f"height and width must be at least {4 * _MARGIN:.0f} pixels")


def _check_seed(seed: int) -> None:
    """Raise ValueError unless ``seed`` is an integer >= 0 (not a float, a bool or None)."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def spot_positions(
    *,
    seed: int = 0,
    n_frames: int = 50,
    n_z: int = 3,
    n_channels: int = 2,
    height: int = 256,
    width: int = 256,
    n_spots: int = 40,
    step: float = 0.7,
) -> SampleSpots:
    """Return the spot trajectories from which :func:`write_sample` draws the movie.

    Each spot starts at a uniformly random position, takes a Gaussian random step in y and x
    every frame (Brownian motion) and is reflected back at a margin from the border; it stays
    in focus in one z plane. Spots are labelled in channel 0, channel 1 or both.

    Parameters
    ----------
    seed : int
        Seed of the random generator.
    n_frames, n_z, n_channels, height, width, n_spots : int
        Sizes of the movie, as in :func:`write_sample`.
    step : float
        Standard deviation of the step per frame along y and along x, in pixels.

    Returns
    -------
    SampleSpots
        Positions, focal planes, channel labels and brightness of the spots.

    Raises
    ------
    ValueError
        If ``seed`` is not an integer >= 0, a size is not a positive integer, or the image is
        too small for spots.
    """
    _check_seed(seed)
    _check_sizes(
        n_frames=n_frames, n_z=n_z, n_channels=n_channels,
        height=height, width=width, n_spots=n_spots,
    )
    rng = np.random.default_rng(seed)
    return _draw_spots(rng, n_frames, n_z, n_channels, height, width, n_spots, step)


def _draw_spots(
    rng: np.random.Generator,
    n_frames: int,
    n_z: int,
    n_channels: int,
    height: int,
    width: int,
    n_spots: int,
    step: float,
) -> SampleSpots:
    low = np.array([_MARGIN, _MARGIN])
    high = np.array([height - 1 - _MARGIN, width - 1 - _MARGIN])
    start = rng.uniform(low, high, size=(n_spots, 2))
    steps = rng.normal(0.0, step, size=(n_frames - 1, n_spots, 2))
    yx = np.concatenate([start[None], start[None] + np.cumsum(steps, axis=0)])
    # Reflect at the margins: fold the free walk into [low, high].
    span = high - low
    folded = np.mod(yx - low, 2 * span)
    yx = low + np.where(folded > span, 2 * span - folded, folded)

    z = rng.integers(0, n_z, size=n_spots)
    which = rng.integers(0, n_channels, size=n_spots)
    channels = np.arange(n_channels)[:, None] == which[None, :]
    channels |= rng.random(n_spots)[None, :] < _BOTH_CHANNELS
    photons = rng.uniform(1500.0, 4000.0, size=n_spots)
    return SampleSpots(yx=yx, z=z, channels=channels, photons=photons)


def _render_plane(
    yx: np.ndarray, photons: np.ndarray, sigma: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Return the expected photons per pixel of Gaussian spots (separable: an outer product)."""
    norm = photons / (2 * np.pi * sigma**2)
    gy = np.exp(-0.5 * ((np.arange(height)[None, :] - yx[:, :1]) / sigma[:, None]) ** 2)
    gx = np.exp(-0.5 * ((np.arange(width)[None, :] - yx[:, 1:]) / sigma[:, None]) ** 2)
    # einsum, not a BLAS matmul: these small products are 10x slower through BLAS threads.
    return np.einsum("ky,kx->yx", gy * norm[:, None], gx)


def _background(height: int, width: int, n_channels: int) -> np.ndarray:
    """Smooth autofluorescence: a broad bright region, different in each channel."""
    y = np.linspace(-1.0, 1.0, height)[:, None]
    x = np.linspace(-1.0, 1.0, width)[None, :]
    planes = []
    for c in range(n_channels):
        cy, cx = 0.3 * np.cos(2.0 * c), 0.3 * np.sin(2.0 * c)
        planes.append(8.0 + 12.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.5))
    return np.stack(planes)


def _lookup_table(channel: int) -> np.ndarray:
    """Return the ImageJ lookup table (3 x 256 uint8) of a channel: green, magenta, cyan..."""
    weights = np.array(_CHANNEL_COLORS[channel % len(_CHANNEL_COLORS)], dtype=np.uint16)
    return (weights[:, None] * np.arange(256, dtype=np.uint16)[None, :]).astype(np.uint8)


def write_sample(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    n_frames: int = 50,
    n_z: int = 3,
    n_channels: int = 2,
    height: int = 256,
    width: int = 256,
    n_spots: int = 40,
    pixel_size: float = 0.16,
    z_step: float = 1.0,
    frame_interval: float = 0.1,
    spot_sigma: float = 1.5,
    offset: int = 100,
    read_noise: float = 2.0,
) -> pathlib.Path:
    """Write the synthetic sample movie as an ImageJ hyperstack.

    Spots diffuse in y and x (see :func:`spot_positions`); each is sharp (Gaussian of
    ``spot_sigma`` pixels) in its own z plane and blurred, with the same number of photons, in
    the others. The camera adds Poisson shot noise to the expected photons, an ``offset`` and
    Gaussian read noise, and clips to uint16. ImageJ shows the channels as a composite
    (green, magenta, then cyan, yellow, red, blue). With the defaults the file is
    50 t x 3 z x 2 c x 256 x 256 (38 MiB) and takes a few seconds to write.

    The file is written to a temporary name in the same folder and renamed when complete, so
    an interrupted call leaves no partial file; an existing file at ``path`` is replaced (a
    symbolic link is kept and the file it points to replaced; a link to nothing is refused).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.tif`` file to write.
    seed : int
        Seed of the random generator: the same seed and options give the same pixels.
    n_frames, n_z, n_channels, height, width : int
        Sizes of the T, Z, C, Y and X axes.
    n_spots : int
        Number of spots (over all planes and channels).
    pixel_size : float
        Pixel size in µm (ImageJ resolution).
    z_step : float
        Distance between z planes in µm (ImageJ ``spacing``).
    frame_interval : float
        Time between frames in seconds (ImageJ ``finterval``).
    spot_sigma : float
        Gaussian radius of an in-focus spot, in pixels.
    offset : int
        Camera offset added to every pixel, in counts.
    read_noise : float
        Standard deviation of the camera read noise, in counts.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``seed`` is not an integer >= 0, a size is not a positive integer, the image is
        too small, a physical size is not a finite number > 0, ``offset`` is not 0 to 65535
        or ``read_noise`` not finite and >= 0.
    OSError
        If the file cannot be written (the folder does not exist, a symbolic link to nothing,
        no permission, disk full).
    """
    import tifffile

    _check_seed(seed)
    _check_sizes(
        n_frames=n_frames, n_z=n_z, n_channels=n_channels,
        height=height, width=width, n_spots=n_spots,
    )
    for name, value in [("pixel_size", pixel_size), ("z_step", z_step),
                        ("frame_interval", frame_interval), ("spot_sigma", spot_sigma)]:
        if not 0 < value < math.inf:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not 0 <= offset <= np.iinfo(np.uint16).max or not 0 <= read_noise < math.inf:
        raise ValueError(
            f"offset must be 0 to 65535 and read_noise finite and >= 0, got {offset!r} and "
            f"{read_noise!r}"
        )

    given = path = pathlib.Path(path)
    if path.is_symlink():  # written through, like to_video: the link is kept
        path = pathlib.Path(os.path.realpath(path))
        if not path.exists():
            raise FileNotFoundError(
                errno.ENOENT, f"a symbolic link to {path}, which does not exist", str(given)
            )
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the folder does not exist", str(path.parent))
    rng = np.random.default_rng(seed)
    spots = _draw_spots(rng, n_frames, n_z, n_channels, height, width, n_spots, step=0.7)
    background = _background(height, width, n_channels)
    data = np.empty((n_frames, n_z, n_channels, height, width), dtype=np.uint16)
    for t in range(n_frames):
        for z in range(n_z):
            defocus = (spots.z - z) / _DEPTH_OF_FIELD
            sigma = spot_sigma * np.sqrt(1.0 + defocus**2)
            for c in range(n_channels):
                on = spots.channels[c]
                expected = background[c] + _render_plane(
                    spots.yx[t, on], spots.photons[on], sigma[on], height, width
                )
                noise = rng.normal(0.0, read_noise, expected.shape)
                counts = rng.poisson(expected) + offset + noise
                data[t, z, c] = np.clip(np.rint(counts), 0, np.iinfo(np.uint16).max)

    metadata = {
        "axes": "TZCYX",
        "spacing": z_step,
        "unit": "um",
        "finterval": frame_interval,
        "mode": "composite",
        "LUTs": [_lookup_table(c) for c in range(n_channels)],
        "Info": (
            f"pims-videoutils synthetic sample: seed={seed}, n_spots={n_spots}, "
            f"spot_sigma={spot_sigma} px, offset={offset}, read_noise={read_noise}"
        ),
    }
    temp = _temporary_name(path)
    try:
        tifffile.imwrite(
            temp,
            data,
            imagej=True,
            resolution=(1.0 / pixel_size, 1.0 / pixel_size),
            metadata=metadata,
        )
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return given
