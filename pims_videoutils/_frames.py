"""Frames for :func:`~pims_videoutils.to_video`: where they come from, which axis is what.

:class:`FrameSource` turns any input (pims reader, numpy/dask array, iterable) into plain
ndarrays, with a length when known and a sample of frames for the contrast.
:func:`frame_layout` works out the roles of the axes of a frame and returns a
:class:`FrameLayout` that turns every raw frame into ``(Y, X)`` or ``(Y, X, C)``.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import ExportArgumentError
from ._wording import shown
from .intensity import MAX_SAMPLE_FRAMES, check_dtype, sample_indices

__all__ = ["FrameLayout", "FrameSource", "frame_layout"]

SAMPLE_BUFFER_BYTES = 256 * 2**20
_END = object()  # end of an iterator (a frame may be None: an error, not the end)


class FrameSource:
    """Frames of any supported input as plain ndarrays, with a length when known.

    A pims reader (a ``FramesSequence``, or anything with ``frame_shape`` such as a lazy
    slice ``reader[10:50:2]``) is read frame by frame even when it also looks like an array
    (``ndim``, ``shape``, ``dtype``). ``axis_names`` name the axes of each frame: the
    ``metadata['axes']`` of the first frame (pims N-D readers and their slices put the
    bundled axes there), else the reader's ``bundle_axes``, else None. ``array_axes`` is True
    when axis numbers count in an array (axis 0 = time) rather than in each frame.
    """

    def __init__(self, frames: Any) -> None:
        self.array_axes = False
        self._buffer: list[np.ndarray] = []
        if not _is_reader(frames) and _is_array(frames):
            if frames.ndim < 3:
                raise ExportArgumentError(
                    f"an array of frames needs 3 or more axes (T, Y, X...), got {frames.shape}"
                )
            _refuse_masked(frames)
            self.array_axes = True
        indexable = hasattr(frames, "__len__") and hasattr(frames, "__getitem__")
        # (a path iterates over its characters, a dict over its keys)
        if isinstance(frames, str | bytes | os.PathLike | Mapping) or not (
            indexable or isinstance(frames, Iterable)
        ):
            path = isinstance(frames, str | bytes | os.PathLike)
            raise ExportArgumentError(
                f"frames must be a pims reader, an array or an iterable of arrays, "
                f"not {type(frames).__name__}" + (": open the file first (pims.open)" * path)
            )
        self.length = len(frames) if indexable else None
        self._frames = frames
        self._iter = _iter_indexable(frames, self.array_axes) if indexable else iter(frames)
        first = next(self._iter, _END)
        if first is _END:
            raise ExportArgumentError("no frames to write (empty input)")
        self.axis_names = _axis_names(frames, first)
        self.first = _as_array(first)
        self._buffer.append(self.first)

    def sample(self, canonical: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
        """Return up to 50 frames (through ``canonical``) for the contrast.

        At most 256 MiB of frames (as read): evenly spaced frames of an indexable input;
        else the first frames of the iterable (kept to be written later). Those are copies:
        an iterator may fill one array for every frame.
        """
        limit = min(MAX_SAMPLE_FRAMES, max(1, SAMPLE_BUFFER_BYTES // max(1, self.first.nbytes)))
        if self.length is not None:
            indices = sample_indices(self.length, limit)
            return [canonical(_get(self._frames, int(i))) for i in indices]
        self._buffer = [np.array(frame) for frame in self._buffer]  # before the next frame
        while len(self._buffer) < limit:
            frame = next(self._iter, _END)
            if frame is _END:
                break
            self._buffer.append(_as_array(frame, copy=True))
        return [canonical(f) for f in self._buffer]

    def __iter__(self) -> Iterator[np.ndarray]:
        buffered, self._buffer = self._buffer, []
        return itertools.chain(buffered, self._iter)


def _is_reader(frames: Any) -> bool:
    """Return True for pims readers and their lazy slices (they carry ``frame_shape``)."""
    pims = sys.modules.get("pims")
    if pims is not None and isinstance(frames, pims.FramesSequence):
        return True
    return hasattr(frames, "frame_shape")


def _is_array(frames: Any) -> bool:
    """Return True for numpy and dask arrays (anything with ndim, shape, dtype, indexing)."""
    return all(hasattr(frames, a) for a in ("ndim", "shape", "dtype", "__getitem__"))


def _axis_names(frames: Any, first: Any) -> tuple[str, ...] | None:
    """Return the names of a frame's axes, or None.

    The frame's ``metadata['axes']`` (pims N-D readers and their slices), else the reader's
    ``bundle_axes`` (N-D readers, with ``sizes``).
    """
    metadata = getattr(first, "metadata", None)
    names = metadata.get("axes") if isinstance(metadata, Mapping) else None
    if names is None and hasattr(frames, "sizes"):
        names = getattr(frames, "bundle_axes", None)
    if names is None or not all(isinstance(a, str) for a in names):
        return None
    return tuple(names)


def _refuse_masked(frames: Any) -> None:
    """Raise ExportArgumentError for a numpy masked array with masked values.

    ffmpeg gets plain pixel values: the values under the mask would be drawn as if valid.
    """
    if np.ma.is_masked(frames):
        raise ExportArgumentError(
            "frames are a masked array with masked values, which a video cannot leave out: "
            "pass frames.filled(value) (float data: frames.filled(np.nan) draws them black "
            "and leaves them out of the contrast)"
        )


def _as_array(frame: Any, copy: bool = False) -> np.ndarray:
    """Return a frame as an ndarray (a copy if asked); ExportArgumentError for what is none.

    Also for a masked array with masked values (:func:`_refuse_masked`).
    """
    _refuse_masked(frame)
    try:
        return np.array(frame) if copy else np.asarray(frame)
    except (ValueError, TypeError) as exc:
        raise ExportArgumentError(f"a frame is not an array: {exc}") from None


def _get(frames: Any, i: int) -> np.ndarray:
    """Return frame ``i`` of an indexable input as an ndarray."""
    return np.asarray(frames[i])


def _iter_indexable(frames: Any, is_array: bool) -> Iterator[Any]:
    """Iterate an indexable input; dask arrays one computed chunk at a time.

    Frames of readers are yielded as they come (pims ``Frame``, with their metadata).
    """
    chunks = getattr(frames, "chunks", None)
    if is_array and chunks is not None and hasattr(frames, "compute"):
        start = 0
        for size in chunks[0]:
            yield from np.asarray(frames[start : start + size])
            start += size
    elif is_array:
        for i in range(len(frames)):
            yield np.asarray(frames[i])
    else:
        yield from frames


@dataclass(frozen=True)
class FrameLayout:
    """Roles of a frame's axes: turns a raw frame into (Y, X) or (Y, X, C), native order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    projection: str | None
    projection_axis: int | None
    order: tuple[int, ...]  # axes of the projected frame in (y, x[, c]) order
    colour_samples: int | None = None  # RGB(A)/gray+alpha: the samples kept (alpha dropped)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        frame = _as_array(frame)
        if frame.shape != self.shape or frame.dtype != self.dtype:
            raise ExportArgumentError(
                f"frame of shape {frame.shape} and dtype {frame.dtype} differs from the "
                f"first frame ({self.shape}, {self.dtype})"
            )
        if self.projection == "max":  # (NaN is no value: a plane's NaN leaves the others')
            frame = np.fmax.reduce(frame, axis=self.projection_axis)
        elif self.projection == "mean":
            frame = frame.mean(axis=self.projection_axis, dtype=_mean_dtype(frame.dtype))
        if self.order != tuple(range(frame.ndim)):
            frame = frame.transpose(self.order)
        if self.colour_samples is not None:
            frame = frame[..., : self.colour_samples]
        if not frame.dtype.isnative:
            frame = frame.astype(frame.dtype.newbyteorder("="))
        return frame


def _mean_dtype(dtype: np.dtype) -> type[np.floating]:
    """Return the float type a mean projection of ``dtype`` data is computed in.

    float32 for data of up to 16 bits and for float32 data (it holds them exactly), float64
    for wider data: float32 would round 32- and 64-bit integers above 2**24, turn float64
    data beyond its range into infinities and flatten a small range on a large offset.
    """
    return np.float32 if dtype.itemsize <= 2 or dtype == np.float32 else np.float64


def _axis_index(axis: Any, names: tuple[str, ...] | None, ndim: int, array_axes: bool) -> int:
    """Return the frame axis of a user's axis: a letter of named axes, or an integer."""
    if isinstance(axis, str):
        if names is None:
            raise ExportArgumentError(
                f"axis {axis!r}: these frames have no axis names; give an integer axis"
            )
        if axis not in names:
            raise ExportArgumentError(f"axis {axis!r} is not a bundled axis {''.join(names)}")
        return names.index(axis)
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise ExportArgumentError(f"axis must be an axis letter or an integer, not {shown(axis)}")
    given = axis = int(axis)
    if array_axes and axis >= 0:
        if axis == 0:
            raise ExportArgumentError("axis 0 of an array is time; it cannot be this axis")
        axis -= 1
    if not -ndim <= axis < ndim:
        counted_in = f"arrays of {ndim + 1} axes" if array_axes else f"frames of {ndim} axes"
        raise ExportArgumentError(f"axis {shown(given)} is out of range for {counted_in}")
    return axis % ndim


def frame_layout(
    source: FrameSource, channel_axis: Any, projection: str | None, projection_axis: Any
) -> FrameLayout:
    """Work out the roles of the first frame's axes (rules in :func:`to_video`)."""
    first = source.first
    check_dtype(first.dtype)
    if 0 in first.shape:
        raise ExportArgumentError(
            f"frames of shape {first.shape} hold no pixel: they have an axis of length 0"
        )
    names, ndim = source.axis_names, first.ndim
    if names is not None and len(names) != ndim:
        names = None  # frames do not follow bundle_axes (flat reader): positional rules
    idx = {"array_axes": source.array_axes, "names": names, "ndim": ndim}
    chan = None if channel_axis is None else _axis_index(channel_axis, **idx)
    proj = None if projection_axis is None else _axis_index(projection_axis, **idx)
    if names is not None:
        if "y" not in names or "x" not in names:
            raise ExportArgumentError(f"frames need bundled axes y and x, got {''.join(names)}")
        spatial = (names.index("y"), names.index("x"))
        if chan is None and ("c" in names or "s" in names):  # channels, else RGB samples
            chan = names.index("c" if "c" in names else "s")
        others = [k for k in range(ndim) if k not in (*spatial, chan)]
        if proj is None and projection is not None and len(others) == 1:
            proj = others[0]
    else:
        if ndim < 2 or ndim > 4:
            raise ExportArgumentError(f"frames must have 2 to 4 axes, got shape {first.shape}")
        if ndim == 3 and projection is not None and proj is None and chan is None:
            proj = 0
        if ndim == 3 and projection is None and chan is None:
            chan = _default_channel_axis(first.shape)
        spatial = tuple(k for k in range(ndim) if k not in (chan, proj))[-2:]
        others = [k for k in range(ndim) if k not in (*spatial, chan)]
    if projection is None and proj is not None:
        raise ExportArgumentError("projection_axis needs projection='max' or 'mean'")
    if projection is not None and proj is None:
        raise ExportArgumentError(
            f"projection={projection!r}: frames of shape {first.shape} have no axis to project"
        )
    if len(spatial) != 2 or (chan is not None and chan == proj) or {chan, proj} & set(spatial):
        raise ExportArgumentError(
            f"frames of shape {first.shape}: channel_axis={channel_axis!r} and "
            f"projection_axis={projection_axis!r} must be two different non-image axes"
        )
    if others != ([] if proj is None else [proj]):
        extra = [names[k] if names else k for k in others]
        raise ExportArgumentError(
            f"frames of shape {first.shape} have axes {extra} besides y, x and channels: "
            f"pass projection='max'/'mean' with projection_axis, or channel_axis"
        )
    kept = [k for k in range(ndim) if k != proj]
    roles = [*spatial] + ([] if chan is None else [chan])
    order = tuple(kept.index(k) for k in roles)
    samples = None
    if chan is not None and first.shape[chan] in (2, 4):
        named_samples = names is not None and names[chan] == "s"
        guessed_rgba = channel_axis is None and first.dtype == np.uint8 and first.shape[chan] == 4
        if named_samples or guessed_rgba:
            samples = first.shape[chan] - 1  # gray+alpha or RGBA: the alpha is not shown
    return FrameLayout(first.shape, first.dtype, projection, proj, order, samples)


def _default_channel_axis(shape: tuple[int, ...]) -> int:
    """Return 2 (the last axis) when it alone of a 3-D shape has 1 to 4 elements."""
    small = [k for k, n in enumerate(shape) if n <= 4]
    if small == [2]:
        return 2
    raise ExportArgumentError(
        f"frames of shape {shape}: cannot tell which axis holds channels; pass channel_axis "
        f"(e.g. -1), or projection='max'/'mean'"
    )
