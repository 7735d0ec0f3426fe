"""The frame path our pims readers share: a plane read directly, else pims's bundling."""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pims import Frame, FramesSequenceND

from ._errors import ReaderClosedError, StackReadError

if TYPE_CHECKING:
    import dask.array

__all__ = ["Allocate", "PlanesND", "c_order_strides", "fill_value", "new_frame"]

#: Makes a new, uninitialised array of a shape and dtype (``numpy.empty``, :data:`new_frame`).
Allocate = Callable[[tuple[int, ...], np.dtype], np.ndarray]

#: Make a new, uninitialised :class:`pims.Frame` of a shape and dtype directly, without the
#: ndarray that ``array.view(Frame)`` would make first (a measurable part of reading a small
#: plane). It has no ``frame_no`` or ``metadata`` until :meth:`PlanesND.get_frame` sets them.
new_frame: Allocate = functools.partial(np.ndarray.__new__, Frame)


def c_order_strides(sizes: list[tuple[str, int]]) -> dict[str, int]:
    """Stride of each axis in the C-order numbering of a grid of ``(axis, size)`` pairs."""
    strides, stride = {}, 1
    for axis, size in reversed(sizes):
        strides[axis] = stride
        stride *= size
    return strides


def fill_value(value: Any, dtype: np.dtype) -> np.ndarray:
    """Return ``value`` as a 0-d array of ``dtype`` (floats rounded to the type's precision).

    Raises
    ------
    ValueError
        ``value`` is not a real number, or ``dtype`` cannot hold it (out of range, a fraction
        or not finite for an integer type; beyond the range of a floating-point type).
    """
    message = f"fill_missing={value!r} does not fit {dtype}"
    if not isinstance(value, (numbers.Real, np.bool_)):
        raise ValueError(message)
    if dtype.kind in "biu":
        if not math.isfinite(value) or value != int(value):
            raise ValueError(message)
        low, high = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        if not low <= int(value) <= high:
            raise ValueError(message)
        return np.array(int(value), dtype)
    with np.errstate(over="ignore"):
        fill = np.array(float(value), dtype)  # rounded to the nearest value of the type
    if math.isfinite(value) and not np.isfinite(fill):
        raise ValueError(message)
    return fill


class PlanesND(FramesSequenceND):
    """A pims N-D reader whose data are planes (axes ``plane_axes``) at coordinates of the rest.

    Subclasses declare their axes with ``_init_axis``, call :meth:`_init_planes` and implement
    :meth:`_plane_at`. Frames whose ``bundle_axes`` are exactly the plane axes (in any order,
    e.g. pimsviewer's ``'xy'``) are read directly, skipping pims's generic bundling and its
    per-frame numpy arithmetic (which cost more than reading a small plane); any other bundling
    goes through pims, with the same result as :meth:`pims.FramesSequenceND.get_frame`.
    """

    def _init_planes(self, plane_axes: str) -> None:
        """Register :meth:`get_plane` for ``plane_axes`` and bundle them by default."""
        self._plane_axes = plane_axes
        self._plane_axis_list = list(plane_axes)
        self._plan: _FramePlan | None = None
        self._register_get_frame(self.get_plane, plane_axes)
        self.bundle_axes = plane_axes

    @property
    def plane_axes(self) -> str:
        """Axes of one plane: ``'yx'``, ``'yxs'`` (RGB samples) or ``'yxc'`` (named channels)."""
        return self._plane_axes

    def _plane_at(self, coords: dict[str, int]) -> np.ndarray:
        """Read the plane at ``coords`` (every non-plane axis given), checking the ranges."""
        raise NotImplementedError

    def get_plane(self, **coords: int) -> np.ndarray:
        """Read one plane (axes ``plane_axes``) at the given coordinates of the other axes.

        Thread-safe; the cheapest way to read (no :class:`pims.Frame` wrapping).

        Parameters
        ----------
        **coords : int
            Coordinates of the non-plane axes; missing ones take ``default_coords``; plane axes
            are ignored.

        Returns
        -------
        numpy.ndarray
            Native byte order; a fresh array unless the reader was opened with ``copy=False``.
            A :class:`pims.Frame` with ``metadata['timestamp']`` where the file has one.

        Raises
        ------
        ReaderClosedError
            After ``close()``.
        IndexError
            A coordinate out of range.
        TypeError
            A coordinate is not an integer (``t=1.5``).
        ValueError
            An axis the reader does not have (a typo such as ``T=1`` would otherwise read
            ``t=0``).
        StackReadError
            A file was truncated or changed since it was opened, a page cannot be decoded, or a
            file of a sequence differs from the first one.
        """
        full = dict(self._default_coords)
        for name, value in coords.items():
            if name not in self._sizes:
                raise ValueError(f"get_plane: no axis {name!r} (the axes are "
                                 f"{', '.join(self._sizes)})")
            try:
                full[name] = operator.index(value)
            except TypeError:
                raise TypeError(f"coordinate {name}={value!r} is not an integer") from None
        return self._plane_at(full)

    def to_dask(self, chunks: Mapping[str, int] | None = None) -> dask.array.Array:
        """Every plane of the reader as one lazy dask array, axes in :attr:`sizes` order.

        Unlike ``dask_image.imread``, which follows ``iter_axes`` and ``bundle_axes`` (so sees
        only the time points of a hyperstack), this holds all axes: ``"".join(reader.sizes)``,
        e.g. ``tzcyx``. Chunks hold whole planes, read with :meth:`get_plane` when computed.
        By default a chunk holds up to 8 MiB of planes, whole innermost axes first (e.g.
        every ``c`` and ``z`` of a time point), so that dask's own cost per chunk stays
        small against reading it; ``{"t": 1, "z": 1, "c": 1}`` gives one plane per chunk, the
        quickest for looking at single planes (e.g. in napari). The threads scheduler shares
        the reader; worker processes re-open it once each (from its absolute path and
        options; a worker that outlives the computation keeps that reader for this reader
        only), checking that its axes, sizes and pixel type are still those the array was
        built with.

        Parameters
        ----------
        chunks : mapping of str to int, optional
            Planes per chunk along each axis outside the planes, e.g. ``{"z": -1}`` for whole
            z-stacks (-1: the whole axis); axes not given have one plane per chunk. None
            (default): chunks of up to 8 MiB, as above.

        Returns
        -------
        dask.array.Array
            Native byte order, ``dtype`` :attr:`pixel_type`.

        Raises
        ------
        ImportError
            dask is not installed (``pip install 'pims-videoutils[dask]'``).
        TypeError
            ``chunks`` is not a mapping.
        ValueError
            ``chunks`` names a plane axis or an unknown one, or a size that is not a positive
            integer or -1.
        ReaderClosedError
            After ``close()`` (also when computed after it).
        StackReadError
            When computed in worker processes: the file changed since the array was built.
        """
        from ._dask import planes_to_dask

        if self.closed:
            raise ReaderClosedError(f"{self!r}: to_dask after close()")
        return planes_to_dask(self, chunks)

    def __len__(self) -> int:
        return math.prod(self._sizes[axis] for axis in self._iter_axes)

    def __getitem__(self, key):
        """Frame ``key`` (negative counts from the end), or a lazy sub-sequence as in pims.

        Integer keys go straight to :meth:`get_frame`; slices, index lists and boolean masks
        give pims's Slicerator sub-sequences.
        """
        if isinstance(key, (int, np.integer)):
            index = int(key)
            if index < 0:
                length = len(self)
                if index < -length:
                    raise IndexError(f"frame {index} out of range -{length}..{length - 1}")
                index += length
            return self.get_frame(index)
        return super().__getitem__(key)

    def get_frame(self, i: int) -> Frame:
        """Return frame ``i`` of the iteration over ``iter_axes``, bundling ``bundle_axes``.

        Raises
        ------
        IndexError
            ``i`` is outside ``0 <= i < len(self)``.
        ReaderClosedError
            After ``close()``.
        StackReadError
            A file was truncated or changed since it was opened, a page cannot be decoded, or a
            file of a sequence differs from the first one.
        """
        plan = self._plan
        if (plan is None or plan.iter_axes != self._iter_axes or plan.bundle != self._bundle_axes
                or plan.defaults != self._default_coords):
            plan = self._plan = _FramePlan.of(self)
        i = int(i)
        if not 0 <= i < plan.length:
            raise IndexError(f"frame {i} out of range 0..{plan.length - 1}")
        coords = dict(plan.fixed)
        if plan.single_stride is not None:  # one iterated axis: the usual case, made quick
            coords[plan.single_axis] = i
            result = self._read_plane(plan.base + i * plan.single_stride, new_frame)
        elif plan.numbered:  # the plane's number from i, without a dict of every coordinate
            number, rest = plan.base, i
            for axis, size, stride in plan.iter_strides:
                rest, coordinate = divmod(rest, size)
                coords[axis] = coordinate
                number += coordinate * stride
            result = self._read_plane(number, new_frame)
        else:
            rest = i
            for axis, size, _ in plan.iter_strides:
                rest, coords[axis] = divmod(rest, size)
            if plan.direct:
                result = self._plane_at({**plan.defaults, **coords})
            else:
                result = self._bundled(plan.bundle, {**plan.defaults, **coords})
        if plan.transpose is not None:  # e.g. pimsviewer's 'xy'
            result = result.transpose(plan.transpose)
        metadata = {"axes": plan.bundle[:], "coords": coords}
        if isinstance(result, Frame):  # a fresh Frame (see _read_plane): completed in place
            frame = result
            own = getattr(result, "metadata", None)  # e.g. a timestamp; None: a new_frame
            if own:
                metadata = {**own, **metadata}
        else:
            frame = result.view(Frame)  # what pims.Frame() does, without its attribute probing
        frame.frame_no = i
        frame.metadata = metadata
        return frame

    def _bundled(self, bundle: list[str], coords: dict[str, int]) -> Frame:
        """Read the frame of axes ``bundle`` at ``coords`` (every axis), plane by plane.

        The frame pims's bundling gives: the planes' axes not in ``bundle`` taken at their
        coordinate, the pixel type, and the planes' metadata where every plane has some: a
        value they share, else an array over the bundled non-plane axes (in ``bundle``
        order). pims's own sets ``ndarray.shape`` for that, which numpy 2.5 deprecates.
        """
        sizes, plane_axes = self._sizes, self._plane_axis_list
        outer = [a for a in bundle if a not in plane_axes]
        kept = [a for a in plane_axes if a in bundle]
        within = tuple(slice(None) if a in bundle else coords[a] for a in plane_axes)
        outer_shape = tuple(sizes[a] for a in outer)
        result = np.empty(outer_shape + tuple(sizes[a] for a in kept), self.pixel_type)
        planes_metadata = []
        for index in np.ndindex(*outer_shape):
            plane = self._plane_at({**coords, **dict(zip(outer, index, strict=True))})
            result[index] = plane[within]
            if getattr(plane, "metadata", None) is not None:
                planes_metadata.append(plane.metadata)
        metadata = None
        if planes_metadata and len(planes_metadata) == math.prod(outer_shape):
            metadata = {}
            for key in planes_metadata[0]:
                if not all(key in m for m in planes_metadata):
                    continue
                values = [m[key] for m in planes_metadata]
                metadata[key] = (values[0] if values[1:] == values[:-1]
                                 else np.array(values).reshape(outer_shape))
        order = outer + kept
        return Frame(result.transpose([order.index(a) for a in bundle]), metadata=metadata)

    def _plane_numbering(self) -> dict[str, int] | None:
        """Stride of the plane number along each non-plane axis, or None.

        Subclasses that number their planes return the strides and implement
        :meth:`_read_plane`; None (the default): planes are found by coordinates only
        (:meth:`_plane_at`).
        """
        return None

    def _read_plane(self, number: int, allocate: Allocate = np.empty) -> np.ndarray:
        """Read plane ``number`` (see :meth:`_plane_numbering`).

        A plane read into a new array is read into one made by ``allocate``; others (views,
        decoded or filled planes) are returned as they come. Frames returned here and by
        :meth:`_plane_at` must be new objects: :meth:`get_frame` completes them in place.
        """
        raise NotImplementedError

    def _restore_axis_settings(self, label: str, iter_axes: list[str], bundle_axes: list[str],
                               default_coords: dict[str, int]) -> None:
        """Give a reader re-opened by unpickling the axis settings it was pickled with.

        Raises
        ------
        StackReadError
            An axis of the settings is gone, or a default coordinate is beyond its axis now
            (the file or files ``label`` names changed since the reader was pickled); the
            reader is closed.
        """
        gone = [axis for axis in dict.fromkeys([*iter_axes, *bundle_axes, *default_coords])
                if axis not in self._sizes]
        if gone:
            self.close()
            raise StackReadError(
                label, f"changed since the reader was pickled: no axis {', '.join(gone)} any "
                f"more (axes now: {''.join(self._sizes)})")
        beyond = [(axis, value) for axis, value in default_coords.items()
                  if value >= self._sizes[axis]]
        if beyond:
            axis, value = beyond[0]
            self.close()
            raise StackReadError(
                label, f"changed since the reader was pickled: its default coordinate "
                f"{axis}={value} is beyond the {self._sizes[axis]} coordinates of {axis} now")
        self.bundle_axes = bundle_axes
        self.iter_axes = iter_axes
        self.default_coords.update(default_coords)


@dataclass(frozen=True)
class _FramePlan:
    """How frames are read for one setting of ``iter_axes``, ``bundle_axes``, ``default_coords``.

    ``fixed`` holds the coordinates of the axes neither iterated nor bundled; ``iter_strides``
    the iterated axes, innermost first, with their size and plane-number stride. ``direct``:
    the bundle is the plane axes (in some order: ``transpose``); ``numbered``: also the
    planes are numbered (frame ``i`` is plane ``base + sum(coordinate * stride)``);
    ``single_axis``, ``single_stride``: the iterated axis and its stride when they are and
    only one axis is iterated.
    """

    iter_axes: list[str]
    bundle: list[str]
    defaults: dict[str, int]
    length: int
    fixed: dict[str, int]
    iter_strides: list[tuple[str, int, int]]
    direct: bool
    numbered: bool
    base: int
    single_axis: str | None
    single_stride: int | None
    transpose: list[int] | None

    @classmethod
    def of(cls, reader: PlanesND) -> _FramePlan:
        sizes = reader._sizes
        iter_axes, bundle = list(reader._iter_axes), list(reader._bundle_axes)
        defaults = dict(reader._default_coords)
        plane_axes = reader._plane_axis_list
        fixed = {a: defaults[a] for a in sizes if a not in bundle and a not in iter_axes}
        direct = sorted(bundle) == sorted(plane_axes)
        strides = reader._plane_numbering() if direct else None
        numbered = strides is not None and all(0 <= v < sizes[a] for a, v in fixed.items())
        single = numbered and len(iter_axes) == 1
        return cls(
            iter_axes=iter_axes,
            bundle=bundle,
            defaults=defaults,
            length=math.prod(sizes[a] for a in iter_axes),
            fixed=fixed,
            iter_strides=[(a, sizes[a], strides[a] if numbered else 0)
                          for a in reversed(iter_axes)],
            direct=direct,
            numbered=numbered,
            base=sum(v * strides[a] for a, v in fixed.items()) if numbered else 0,
            single_axis=iter_axes[0] if single else None,
            single_stride=strides[iter_axes[0]] if single else None,
            transpose=None if not direct or bundle == plane_axes
            else [plane_axes.index(a) for a in bundle],
        )
