"""The frame path our pims readers share: a plane read directly, else pims's bundling."""

from __future__ import annotations

import math

import numpy as np
from pims import Frame, FramesSequenceND

__all__ = ["PlanesND"]


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
        self._register_get_frame(self.get_plane, plane_axes)
        self.bundle_axes = plane_axes

    @property
    def plane_axes(self) -> str:
        """Axes of one plane: ``'yx'`` or ``'yxs'``."""
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
            and unknown axes are ignored.

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
        StackReadError
            A file was truncated or changed since it was opened, a page cannot be decoded, or a
            file of a sequence differs from the first one.
        """
        full = dict(self._default_coords)
        full.update(coords)
        return self._plane_at(full)

    def __len__(self) -> int:
        return math.prod(self._sizes[axis] for axis in self._iter_axes)

    def __getitem__(self, key):
        """Frame ``key`` (negative counts from the end), or a lazy sub-sequence as in pims.

        Integer keys go straight to :meth:`get_frame`; slices, index lists and boolean masks
        give pims's Slicerator sub-sequences.
        """
        if isinstance(key, (int, np.integer)):
            index = int(key)
            return self.get_frame(index + len(self) if index < 0 else index)
        return super().__getitem__(key)

    def get_frame(self, i: int) -> Frame:
        """Return frame ``i`` of the iteration over ``iter_axes``, bundling ``bundle_axes``.

        Raises
        ------
        IndexError
            ``i`` is outside ``0 <= i < len(self)``.
        ReaderClosedError
            After ``close()``.
        """
        i = int(i)
        sizes = self._sizes
        coords = dict(self._default_coords)  # every axis, in the order of ``sizes``
        rest = i
        for axis in reversed(self._iter_axes):
            rest, coords[axis] = divmod(rest, sizes[axis])
        if rest:  # i < 0 or i >= len(self)
            raise IndexError(f"frame {i} out of range 0..{len(self) - 1}")
        bundle = self._bundle_axes
        plane_axes = self._plane_axis_list
        if bundle == plane_axes:
            result = self._plane_at(coords)
        elif sorted(bundle) == sorted(plane_axes):  # e.g. pimsviewer's 'xy'
            result = self._plane_at(coords).transpose([plane_axes.index(a) for a in bundle])
        else:
            if self._get_frame_wrapped is None:
                self.bundle_axes = tuple(bundle)  # builds pims's bundling getter
            result = self._get_frame_wrapped(**coords)
        metadata = dict(result.metadata) if isinstance(result, Frame) else {}
        metadata["axes"] = bundle[:]
        metadata["coords"] = {axis: value for axis, value in coords.items() if axis not in bundle}
        frame = result.view(Frame)  # what pims.Frame() does, without its attribute probing
        frame.frame_no = i
        frame.metadata = metadata
        return frame
