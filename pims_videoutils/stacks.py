"""Stacks as ``pims-video`` sees them: open, describe, and pick the frames of a movie.

The Python side of the command line (:mod:`pims_videoutils.cli` only parses options and maps
errors to exit codes):

- :func:`open_stack` opens a file, a folder of TIFFs or a glob as one pims reader;
- :func:`summarize` and :func:`describe` say what ``pims-video info`` prints about it;
- :func:`select_frames` sets the reader's ``iter_axes`` / ``bundle_axes`` / ``default_coords``
  and slices it, as ``pims-video convert`` does before :func:`~pims_videoutils.to_video`.
"""

from __future__ import annotations

import os
from typing import Any

from ._errors import ExportArgumentError, StackReadError
from ._filenames import TIFF_SUFFIXES
from ._wording import shown

__all__ = ["describe", "open_stack", "select_frames", "summarize"]

#: Axes that stay in every frame of the movie (the image plane, and RGB samples if any).
_IMAGE_AXES = ("y", "x", "s")
#: Metadata keys of our readers that ``info`` reports (other readers may lack them).
_INFO_METADATA = (
    "pixel_size_x",
    "pixel_size_y",
    "z_step",
    "unit",
    "frame_interval",
    "channel_names",
    "software",
    "kind",
    "files",
    "series",
    "missing_planes",
    "missing_files",
)


def open_stack(source: str, fill_missing: float | None = None) -> Any:
    """Open a file, a folder of TIFFs or a glob as one pims reader (the opener of every command).

    Parameters
    ----------
    source : str
        A file (any format :func:`pims_videoutils.open` reads), a folder, or a glob pattern.
    fill_missing : int or float, optional
        Passed to the reader (see :class:`~pims_videoutils.sequence.TiffSequenceND` and
        :class:`~pims_videoutils.readers.TiffStackND`): planes a dataset or a cut file lacks
        read as this value. A TIFF file that the reader :func:`pims_videoutils.open` picks
        refuses even so is opened as a ``TiffSequenceND`` (planes its OME-XML puts in IFDs
        it lacks).

    Returns
    -------
    pims.FramesSequence
        :class:`~pims_videoutils.sequence.TiffSequenceND` for a folder, else the reader
        :func:`pims_videoutils.open` chooses (``TiffSequenceND`` for a pattern matching several
        TIFF files, ``pims.ImageSequence`` for one matching other images, such as PNGs).

    Raises
    ------
    StackNotFoundError
        If nothing exists at ``source`` and the pattern matches no file.
    StackReadError
        If the stack cannot be read.
    """
    from ._open import open as open_file
    from .sequence import TiffSequenceND

    if os.path.isdir(source):
        return TiffSequenceND(source, fill_missing=fill_missing)
    if fill_missing is None:
        return open_file(source)
    try:
        return open_file(source, fill_missing=fill_missing)
    except StackReadError:
        if not (os.path.isfile(source) and source.lower().endswith(TIFF_SUFFIXES)):
            raise
        try:
            return TiffSequenceND(source, fill_missing=fill_missing)
        except StackReadError:
            pass  # (the first reader's reason is the one to show)
        raise


def select_frames(
    reader: Any,
    *,
    axis: str | None = None,
    coords: dict[str, int] | None = None,
    channel: int | None = None,
    project: str = "auto",
    project_axis: str = "z",
    frame_range: slice = slice(None),
) -> tuple[Any, dict[str, Any]]:
    """Set up a pims reader for a movie as the ``convert`` options describe.

    This is what ``pims-video convert`` does between opening the file and ``to_video``; in
    Python the same is done by setting ``reader.iter_axes``, ``reader.bundle_axes`` and
    ``reader.default_coords`` and slicing the reader.

    Parameters
    ----------
    reader : pims.FramesSequence
        The reader; an N-D reader (with ``sizes``) is modified in place.
    axis : str, optional
        Axes to animate, outermost first; default the reader's ``iter_axes`` without the
        channel axis ``c`` (channels make a composite; a stack with only channels gives a
        one-frame movie).
    coords : dict, optional
        Fixed coordinates of axes that are neither animated nor bundled.
    channel : int, optional
        One channel to show; default a composite of all channels.
    project : {'auto', 'max', 'mean', 'none'}
        Projection over ``project_axis``; ``auto`` is ``max`` when that axis has several planes
        and is neither animated nor fixed.
    project_axis : str
        The axis collapsed by the projection.
    frame_range : slice
        Which of the animated frames to keep.

    Returns
    -------
    frames : pims.FramesSequence
        The reader, or a lazy slice of it.
    layout : dict
        ``channel_axis``, ``projection`` and ``projection_axis`` keyword arguments of
        :func:`~pims_videoutils.to_video` naming bundled axes (letters: ``to_video`` finds
        the names in the frames' metadata, of the reader and of a slice alike).

    Raises
    ------
    ExportArgumentError
        If an axis does not exist, is used twice, a coordinate is out of range, or the frame
        range selects no frame.
    """
    coords = dict(coords or {})
    if not hasattr(reader, "sizes"):
        if axis or coords or channel is not None or project not in ("auto", "none"):
            raise ExportArgumentError(
                f"{type(reader).__name__} has no named axes: --axis, --coords, --channels "
                "and --project do not apply"
            )
        return _frame_range(reader, frame_range), {}

    sizes = dict(reader.sizes)
    names = "".join(sizes)

    def check_axis(name: str, role: str) -> None:
        if name not in sizes:
            raise ExportArgumentError(f"{role}: no axis {name!r} in this stack (axes: {names})")

    if axis:
        animate = list(axis.lower())
    else:  # the reader's iteration axes, but several channels make a composite, not frames
        animate = [a for a in reader.iter_axes if a != "c" or sizes["c"] == 1]
    if len(set(animate)) != len(animate):
        raise ExportArgumentError(f"--axis: an axis is given twice in {''.join(animate)!r}")
    for name in animate:
        check_axis(name, "--axis")
        if name in _IMAGE_AXES:
            raise ExportArgumentError(f"--axis: cannot animate the image axis {name!r}")
    for name, index in coords.items():
        check_axis(name, "--coords")
        if name in animate or name in _IMAGE_AXES:
            raise ExportArgumentError(f"--coords: axis {name!r} is animated or in the image")
        if not 0 <= index < sizes[name]:
            raise ExportArgumentError(
                f"--coords: {name}={shown(index)} is out of range (size of {name}: {sizes[name]})"
            )

    bundle = [a for a in reader.bundle_axes if a in _IMAGE_AXES]
    # Colour comes from RGB samples (s) when the frames have them, else from the channels (c).
    composite = "s" if "s" in bundle else None
    if "c" in sizes and "c" not in animate:
        if channel is not None:
            if "c" in coords:
                raise ExportArgumentError("give the channel with --channels or --coords, not both")
            if not 0 <= channel < sizes["c"]:
                raise ExportArgumentError(
                    f"--channels: channel {shown(channel)} is out of range ({sizes['c']} channels)"
                )
            coords["c"] = channel
        elif composite is None and "c" not in coords and sizes["c"] > 1:
            composite = "c"
            bundle.insert(0, "c")
    elif channel is not None:
        raise ExportArgumentError("--channels: the stack has no channel axis c, or it is animated")

    if project == "auto":
        free = project_axis in sizes and project_axis not in animate and project_axis not in coords
        project = "max" if free and sizes[project_axis] > 1 else "none"
    layout: dict[str, Any] = {"channel_axis": composite}
    if project != "none":
        check_axis(project_axis, "--project-axis")
        if project_axis in animate or project_axis in coords or project_axis in bundle:
            raise ExportArgumentError(
                f"--project-axis: axis {project_axis!r} is animated, fixed or shown as colour"
            )
        bundle.insert(0, project_axis)
        layout.update(projection=project, projection_axis=project_axis)

    reader.bundle_axes = bundle
    reader.iter_axes = animate
    reader.default_coords = coords
    return _frame_range(reader, frame_range), layout


def _frame_range(frames: Any, frame_range: slice) -> Any:
    """Return ``frames[frame_range]`` (``frames`` itself for the whole range).

    Raises
    ------
    ExportArgumentError
        If the range selects no frame.
    """
    if frame_range == slice(None):
        return frames
    selected = range(len(frames))[frame_range]
    if not selected:
        bounds = ["" if value is None else shown(value)
                  for value in (frame_range.start, frame_range.stop, frame_range.step)]
        written = ":".join(bounds if frame_range.step is not None else bounds[:2])
        raise ExportArgumentError(f"frames {written} select no frame of {len(frames)}")
    return frames[frame_range]


def summarize(source: str, reader: Any) -> dict[str, Any]:
    """Collect what ``pims-video info`` reports about an open reader, as a JSON-ready dict.

    Parameters
    ----------
    source : str
        The path or pattern the reader was opened from.
    reader : pims.FramesSequence
        The open reader.

    Returns
    -------
    dict
        ``path``, ``reader`` (class name), ``frames`` (``len(reader)``), ``frame_shape``,
        ``dtype``, ``sizes``, ``iter_axes`` and ``bundle_axes`` (None for readers without named
        axes), ``storage``, ``frame_rate`` and the metadata keys of our readers (None when
        unknown).
    """
    import numpy as np

    metadata = getattr(reader, "metadata", None)
    metadata = metadata if isinstance(metadata, dict) else {}
    named = hasattr(reader, "sizes")
    record = {
        "path": source,
        "reader": type(reader).__name__,
        "frames": len(reader),
        "frame_shape": list(reader.frame_shape),
        "dtype": np.dtype(reader.pixel_type).name,
        "sizes": dict(reader.sizes) if named else None,
        "iter_axes": "".join(reader.iter_axes) if named else None,
        "bundle_axes": "".join(reader.bundle_axes) if named else None,
        "storage": getattr(reader, "storage", None) or metadata.get("storage"),
        "frame_rate": getattr(reader, "frame_rate", None),
    }
    record.update({key: metadata.get(key) for key in _INFO_METADATA})
    return record


def describe(record: dict[str, Any]) -> list[str]:
    """Format a :func:`summarize` record as the lines ``pims-video info`` prints.

    Parameters
    ----------
    record : dict
        From :func:`summarize`.

    Returns
    -------
    list of str
        ``name: value`` lines; values that are unknown are left out.
    """
    lines = [record["path"], f"  reader:         {record['reader']}"]
    if record["files"]:
        lines.append(f"  files:          {record['files']}")
    shape = tuple(record["frame_shape"])
    if record["sizes"] is not None:
        sizes = " ".join(f"{axis}={size}" for axis, size in record["sizes"].items())
        lines.append(f"  axes:           {sizes}")
        along = f" along {record['iter_axes']}" if record["iter_axes"] else ""
        lines.append(
            f"  frames:         {record['frames']}{along}, each {record['bundle_axes']} {shape}"
        )
    else:
        lines.append(f"  frames:         {record['frames']}, each {shape}")
    lines.append(f"  dtype:          {record['dtype']}")
    if record["storage"]:
        lines.append(f"  storage:        {record['storage']}")
    unit = record["unit"] or "?"
    if record["pixel_size_x"] and record["pixel_size_y"]:
        lines.append(
            f"  pixel size:     {_format_number(record['pixel_size_x'])} x "
            f"{_format_number(record['pixel_size_y'])} {unit} (x, y)"
        )
    if record["z_step"]:
        lines.append(f"  z step:         {_format_number(record['z_step'])} {unit}")
    if record["frame_interval"]:
        lines.append(f"  frame interval: {_format_number(record['frame_interval'])} s")
    if record["frame_rate"]:
        lines.append(f"  frame rate:     {_format_number(record['frame_rate'])} fps")
    n_channels = (record["sizes"] or {}).get("c", 1)
    if record["channel_names"]:
        lines.append(f"  channels:       {', '.join(map(str, record['channel_names']))}")
    elif n_channels > 1:
        lines.append(f"  channels:       {n_channels} (no names in the file)")
    if record["software"]:
        lines.append(f"  software:       {record['software']}")
    if record["kind"]:
        lines.append(f"  kind:           {record['kind']}")
    for key in ("missing_planes", "missing_files"):  # (read as --fill-missing's value)
        if record[key]:
            lines.append(f"  {key.replace('_', ' ') + ':':16}{record[key]}")
    for series in record["series"] or ():
        shape_text = "x".join(str(n) for n in series.get("shape", ()))
        lines.append(
            f"  series {series.get('index')}:       {shape_text} {series.get('axes', '')} "
            f"{series.get('dtype', '')}".rstrip()
        )
    return lines


def _format_number(value: float) -> str:
    """Format a number with up to 6 significant digits."""
    return f"{value:.6g}"
