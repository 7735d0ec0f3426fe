"""The ``pims-video`` command line: ``info``, ``convert``, ``batch`` and ``sample``.

Argument parsing and exit codes only. Every command is a few calls of the Python API:
:func:`pims_videoutils.open`, the reader's ``iter_axes`` / ``bundle_axes`` / ``default_coords``
and lazy slicing, :func:`pims_videoutils.to_video` and :func:`pims_videoutils.write_sample`.

Exit codes: 0 success; 1 an error of the package (a stack that cannot be read, a bad export
argument, ffmpeg failing, a file that cannot be written) or any failed input of a batch; 2 a
usage error (unknown option, bad value); 130 interrupted (Ctrl-C). Errors are one line on
stderr, ``pims-video: error: <message>``; ``pims-video --debug ...`` adds the traceback.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import click

from ._errors import FFmpegError, PimsVideoutilsError
from ._version import __version__

__all__ = ["cli", "describe", "main", "open_stack", "select_frames", "summarize"]

_PROG = "pims-video"
#: Axes that stay in every frame of the movie (the image plane, and RGB samples if any).
_IMAGE_AXES = ("y", "x", "s")
_GLOB_CHARS = frozenset("*?[")
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
#: Modules that ``import pims`` pulls in for its notebook display helpers only (pims.display
#: imports matplotlib.pyplot and moviepy.editor, which imports IPython): 3-4 s of the 4-5 s
#: that ``import pims`` took on our machines. The command line never displays anything.
_DISPLAY_ONLY_MODULES = ("matplotlib.pyplot", "moviepy.editor")


def _skip_display_imports() -> None:
    """Make pims skip its display-only imports in this (command-line) process.

    pims imports them in ``try/except ImportError`` blocks, so marking them unimportable in
    ``sys.modules`` makes ``import pims`` fast; modules already imported are left alone. Only
    the ``pims-video`` process and its batch workers call this, never a Python user's process.
    """
    for name in _DISPLAY_ONLY_MODULES:
        sys.modules.setdefault(name, None)


# ---------------------------------------------------------------------------------------------
# Option types


class _FloatPair(click.ParamType):
    """Two numbers ``LO,HI``."""

    name = "LO,HI"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        try:
            lo, hi = (float(part) for part in parts)
        except ValueError:
            self.fail(f"expected two numbers LO,HI, got {value!r}", param, ctx)
        return lo, hi


class _Contrast(click.ParamType):
    """``auto``, ``frame``, ``none`` or ``LO,HI``."""

    name = "auto|frame|none|LO,HI"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        text = str(value).strip().lower()
        if text in ("auto", "frame"):
            return text
        if text == "none":
            return None
        return _FloatPair().convert(value, param, ctx)


class _Coords(click.ParamType):
    """Fixed coordinates ``z=1,c=0``."""

    name = "AXIS=I,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, dict):
            return value
        coords = {}
        for item in str(value).split(","):
            axis, sep, index = item.partition("=")
            axis = axis.strip().lower()
            if not sep or len(axis) != 1 or not index.strip().isdigit():
                self.fail(f"expected AXIS=INDEX pairs like z=1,c=0, got {value!r}", param, ctx)
            coords[axis] = int(index)
        return coords


class _Channels(click.ParamType):
    """``all`` (composite) or one channel index."""

    name = "all|INDEX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        text = str(value).strip().lower()
        if text == "all":
            return None
        if text.isdigit():
            return int(text)
        self.fail(f"expected 'all' or a channel index, got {value!r}", param, ctx)


def _video_options(function):
    """Add the options shared by ``convert`` and ``batch`` (those of ``to_video``)."""
    options = [
        click.option("--fps", type=click.FloatRange(min=0, min_open=True),
                     help="Frame rate of the movie [default: from the file's frame interval, "
                          "else 10]."),
        click.option("--codec", help="ffmpeg encoder, e.g. libx264, libx265, ffv1, "
                                     "libvpx-vp9, prores_ks, gif [default: from the extension]."),
        click.option("--crf", type=click.IntRange(min=0),
                     help="Constant rate factor: lower is better quality."),
        click.option("--preset", help="Encoder speed preset, e.g. ultrafast, medium, slow."),
        click.option("--lossless", is_flag=True,
                     help="Lossless encoding (exact pixel values with ffv1)."),
        click.option("--contrast", type=_Contrast(), default="auto", show_default=True,
                     help="One contrast for the whole movie from percentiles (auto), "
                          "per frame (frame), the full dtype range (none), or fixed limits."),
        click.option("--percentiles", type=_FloatPair(), default="0.1,99.9", show_default=True,
                     help="Percentiles used by --contrast auto/frame."),
        click.option("--gamma", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     show_default=True, help="Gamma applied after the contrast."),
        click.option("--colormap", help="Colormap for single-channel movies, e.g. viridis, "
                                        "magma, gray (any name the cmap package knows)."),
        click.option("--channels", type=_Channels(), default="all", show_default=True,
                     help="Composite of all channels, or one channel index."),
        click.option("--channel-colors", metavar="COLOR,...",
                     help="Colours of the channels in a composite, e.g. green,magenta."),
        click.option("--project", type=click.Choice(["auto", "max", "mean", "none"]),
                     default="auto", show_default=True,
                     help="Projection over --project-axis; auto: max projection over z when "
                          "the stack has several z planes and z is neither animated nor fixed."),
        click.option("--project-axis", default="z", show_default=True, metavar="AXIS",
                     help="The axis that --project collapses."),
        click.option("--axis", metavar="AXES",
                     help="Axis (or axes, outermost first) to animate [default: the reader's "
                          "iteration axes, usually t]."),
        click.option("--coords", type=_Coords(), default={}, show_default=False,
                     help="Fixed coordinates of the other axes, e.g. z=1,c=0 [default: 0]."),
        click.option("--start", type=click.IntRange(min=0), help="First frame (0-based)."),
        click.option("--stop", type=click.IntRange(min=0), help="Frame to stop before."),
        click.option("--step", type=click.IntRange(min=1), help="Take every STEP-th frame."),
        click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=1,
                     show_default=True, help="Scale factor of the image size."),
        click.option("--no-progress", is_flag=True, help="Do not show a progress bar."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the shared options into frame selection and ``to_video`` keyword arguments."""
    selection = {
        "axis": options["axis"],
        "coords": options["coords"],
        "channel": options["channels"],
        "project": options["project"],
        "project_axis": options["project_axis"].lower(),
        "frame_range": slice(options["start"], options["stop"], options["step"]),
    }
    colors = options["channel_colors"]
    export = {
        "fps": options["fps"],
        "codec": options["codec"],
        "crf": options["crf"],
        "preset": options["preset"],
        "lossless": options["lossless"],
        "contrast": options["contrast"],
        "percentiles": options["percentiles"],
        "gamma": options["gamma"],
        "colormap": options["colormap"],
        "channel_colors": tuple(c.strip() for c in colors.split(",")) if colors else None,
        "scale": options["scale"],
        "progress": not options["no_progress"],
    }
    return selection, export


# ---------------------------------------------------------------------------------------------
# From options to API calls


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
        :func:`~pims_videoutils.to_video` that describe the bundled axes.

    Raises
    ------
    ExportArgumentError
        If an axis does not exist, is used twice, a coordinate is out of range, or the frame
        range selects no frame.
    """
    from ._errors import ExportArgumentError

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
                f"--coords: {name}={index} is out of range (size of {name}: {sizes[name]})"
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
                    f"--channels: channel {channel} is out of range ({sizes['c']} channels)"
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
    frames = _frame_range(reader, frame_range)
    if frames is not reader:
        # A slice of a reader has no axis names: to_video then takes axis numbers.
        layout = {k: bundle.index(v) if k.endswith("_axis") and v else v
                  for k, v in layout.items()}
    return frames, layout


def _frame_range(frames: Any, frame_range: slice) -> Any:
    from ._errors import ExportArgumentError

    if frame_range == slice(None):
        return frames
    selected = range(len(frames))[frame_range]
    if not selected:
        raise ExportArgumentError(
            f"frame range {frame_range.start}:{frame_range.stop}:{frame_range.step} selects no "
            f"frame of {len(frames)}"
        )
    return frames[frame_range]


def open_stack(source: str) -> Any:
    """Open a file, a folder of TIFFs or a glob as one pims reader (the opener of every command).

    Parameters
    ----------
    source : str
        A file (any format :func:`pims_videoutils.open` reads), a folder, or a glob pattern.

    Returns
    -------
    pims.FramesSequence
        :class:`~pims_videoutils.sequence.TiffSequenceND` for a folder or a pattern matching
        several files, else the reader :func:`pims_videoutils.open` chooses.

    Raises
    ------
    StackNotFoundError
        If nothing exists at ``source`` and the pattern matches no file.
    StackReadError
        If the stack cannot be read.
    """
    import glob

    from ._open import open as open_file

    if os.path.isdir(source) or (
        not os.path.exists(source) and len(glob.glob(source)) > 1
    ):
        from .sequence import TiffSequenceND

        return TiffSequenceND(source)
    return open_file(source)


def _convert(source: str, output: str, selection: dict[str, Any], export: dict[str, Any]):
    """Open ``source``, select its frames and write the movie; close the reader."""
    from . import to_video
    from .export import _resolve_fps

    reader = open_stack(source)
    try:
        frames, layout = select_frames(reader, **selection)
        if export["fps"] is None and frames is not reader:
            # A slice forgets the reader's frame rate: resolve it from the reader.
            export = {**export, "fps": float(_resolve_fps(None, reader))}
        return to_video(frames, output, **export, **layout)
    finally:
        reader.close()


def _batch_job(source: str, output: str, selection: dict[str, Any], export: dict[str, Any]):
    """One input of ``batch`` (runs in a worker process): returns (frames, width, height, s)."""
    start = time.perf_counter()
    result = _convert(source, output, selection, export)
    return result.n_frames, result.width, result.height, time.perf_counter() - start


def _output_name(source: str) -> str:
    """Name a batch movie after its input: file stem, folder name or the glob's folder."""
    path = Path(source)
    if _GLOB_CHARS & set(source):
        fixed = []
        for part in path.parts:
            if _GLOB_CHARS & set(part):
                break
            fixed.append(part)
        return Path(*fixed).resolve().name
    if path.is_dir():
        return path.resolve().name
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _format_number(value: float) -> str:
    return f"{value:.6g}"


#: Metadata keys of our readers that ``info`` reports (other readers may lack them).
_INFO_METADATA = ("pixel_size_x", "pixel_size_y", "z_step", "unit", "frame_interval",
                  "channel_names", "software", "kind", "files", "series")


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
    for series in record["series"] or ():
        shape_text = "x".join(str(n) for n in series.get("shape", ()))
        lines.append(
            f"  series {series.get('index')}:       {shape_text} {series.get('axes', '')} "
            f"{series.get('dtype', '')}".rstrip()
        )
    return lines


def _examples(*lines: str) -> str:
    """Format command lines as an "Examples" epilog that click prints unwrapped."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# ---------------------------------------------------------------------------------------------
# Commands


@click.group(context_settings=_CONTEXT, epilog=_examples(
    "pims-video sample sample.tif                 # write the built-in sample",
    "pims-video info sample.tif                   # what a reader sees",
    "pims-video convert sample.tif sample.mp4     # make a movie",
    "pims-video batch data/*.tif --out movies/    # one movie per stack, in parallel",
    "pims-video --debug convert bad.tif out.mp4   # show the traceback of an error",
))
@click.version_option(__version__, prog_name=_PROG)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_obj
def cli(state: dict[str, bool], debug: bool) -> None:
    """Read microscopy stacks with PIMS and turn them into movies with ffmpeg.

    Run "pims-video COMMAND --help" for the options of a command.
    """
    state["debug"] = debug


@cli.command(context_settings=_CONTEXT, epilog=_examples(
    "pims-video info sample.tif",
    "pims-video info data/*.tif",
    "pims-video info --json sample.tif > sample.json",
    'pims-video info "frames/img_*.tif"',
))
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list with one object per PATH instead of text.")
def info(paths: tuple[str, ...], as_json: bool) -> int:
    """Show what a reader sees in each PATH (file, folder or glob).

    Axes and sizes, dtype, storage (mapped: planes read straight from their place in the file;
    decoded: pages decoded), pixel size, z step, frame interval, channels, writer software and
    the series in the file.
    """
    import json

    records = []
    for source in paths:
        reader = open_stack(source)
        try:
            records.append(summarize(source, reader))
        finally:
            reader.close()
        if not as_json:  # print as we go: a later bad path still shows the earlier ones
            if len(records) > 1:
                click.echo()
            click.echo("\n".join(describe(records[-1])))
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
    return 0


@cli.command(context_settings=_CONTEXT, epilog=_examples(
    "pims-video convert sample.tif sample.mp4",
    "pims-video convert sample.tif green.mp4 --channels 0 --colormap viridis",
    "pims-video convert sample.tif z1.mp4 --project none --coords z=1",
    "pims-video convert sample.tif zstack.mp4 --axis z --coords t=10 --fps 5",
    "pims-video convert sample.tif exact.mkv --lossless --codec ffv1",
    "pims-video convert stack.tif part.mp4 --start 100 --stop 200 --step 2 --contrast 100,2000",
    "pims-video convert frames/ movie.mp4",
    'pims-video convert "frames/img_*.tif" movie.mp4 --fps 10',
))
@click.argument("source", metavar="INPUT")
@click.argument("output", type=click.Path(dir_okay=False), metavar="OUTPUT")
@_video_options
def convert(source: str, output: str, **options: Any) -> int:
    """Turn the stack INPUT (a file, a folder of TIFFs, or a quoted glob) into the movie OUTPUT.

    The container and default codec follow OUTPUT's extension (.mp4, .mkv, .webm, .mov, .avi,
    .gif). By default the movie animates the reader's iteration axis (time; z for a z-stack),
    shows all channels as one colour composite, and max-projects over z when there are several
    z planes and z is not animated; every other axis stays at index 0 unless given with
    --coords. One contrast is computed for the whole movie (--contrast auto), so brightness
    changes stay visible.
    """
    selection, export = _split_options(options)
    result = _convert(source, output, selection, export)
    click.echo(
        f"wrote {result.path}: {result.n_frames} frames, {result.width}x{result.height}, "
        f"{_format_number(result.fps)} fps, {result.codec}"
    )
    return 0


@cli.command(context_settings=_CONTEXT, epilog=_examples(
    "pims-video batch data/*.tif --out movies/",
    "pims-video batch data/*.tif --out movies/ --jobs 2 --fps 20 --channels 0",
    "pims-video batch run1/ run2/ run3/ --out movies/ --ext mkv --lossless --codec ffv1",
))
@click.argument("sources", nargs=-1, required=True, metavar="INPUTS...")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for the movies (created if missing).")
@click.option("--jobs", "-j", type=click.IntRange(min=1),
              help="Number of stacks converted at once [default: the number of CPUs].")
@click.option("--ext", default="mp4", show_default=True,
              help="Extension (container) of the movies, e.g. mp4, mkv, webm.")
@_video_options
def batch(sources: tuple[str, ...], out: str, jobs: int | None, ext: str, **options: Any) -> int:
    """Make one movie per input stack, several at once in parallel processes.

    Each INPUT is one stack, as in "convert": a file, a folder of TIFFs or a quoted glob; the
    movie is OUT/<name>.<ext> with the file's stem, the folder's name or the glob's folder name.
    An input that fails is reported and the others go on; a summary ends the run and the exit
    code is 1 if any input failed. Takes the options of "convert".
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from ._errors import ExportArgumentError

    selection, export = _split_options(options)
    export["progress"] = False
    outputs: dict[str, str] = {}
    for source in sources:
        output = str(Path(out) / f"{_output_name(source)}.{ext.lstrip('.')}")
        clash = [s for s, o in outputs.items() if o == output]
        if clash:
            raise ExportArgumentError(f"{clash[0]} and {source} would both write {output}")
        outputs[source] = output
    Path(out).mkdir(parents=True, exist_ok=True)

    failed: list[str] = []
    workers = min(jobs or os.cpu_count() or 1, len(sources))
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("spawn"), initializer=_skip_display_imports
    )
    # Submit one job per free worker, so that after Ctrl-C no queued input starts.
    waiting = list(outputs.items())
    running: dict[Any, str] = {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                source, output = waiting.pop(0)
                running[executor.submit(_batch_job, source, output, selection, export)] = source
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                source = running.pop(future)
                try:
                    n_frames, width, height, seconds = future.result()
                except Exception as error:  # one failed input must not stop the others
                    failed.append(source)
                    click.echo(f"{_PROG}: FAILED {source}: {_one_line(error)}", err=True)
                    continue
                click.echo(
                    f"ok {source} -> {outputs[source]} ({n_frames} frames, {width}x{height}, "
                    f"{seconds:.1f} s)"
                )
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    done = len(sources) - len(failed)
    summary = f"{done} of {len(sources)} converted into {out}"
    if failed:
        summary += f"; {len(failed)} failed: {', '.join(failed)}"
    click.echo(summary)
    return 1 if failed else 0


@cli.command(context_settings=_CONTEXT, epilog=_examples(
    "pims-video sample sample.tif",
    "pims-video sample big.tif --frames 500 --size 512 512 --seed 3",
))
@click.argument("output", type=click.Path(dir_okay=False), metavar="OUT.tif")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--frames", "n_frames", type=click.IntRange(min=1), default=50, show_default=True,
              help="Number of time points (T).")
@click.option("--z", "n_z", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of z planes (Z).")
@click.option("--channels", "n_channels", type=click.IntRange(min=1), default=2,
              show_default=True, help="Number of channels (C).")
@click.option("--size", type=click.IntRange(min=24), nargs=2, default=(256, 256),
              show_default=True, metavar="HEIGHT WIDTH", help="Image size in pixels.")
@click.option("--spots", "n_spots", type=click.IntRange(min=1), default=40, show_default=True,
              help="Number of fluorescent spots.")
def sample(output: str, seed: int, n_frames: int, n_z: int, n_channels: int,
           size: tuple[int, int], n_spots: int) -> int:
    """Write the built-in synthetic sample to OUT.tif.

    Fluorescent spots diffusing in time, in focus in their own z plane and blurred in the
    others, in two channels, 16-bit with shot noise, camera offset and read noise: an ImageJ
    hyperstack (TZCYX) with pixel size 0.16 µm, z step 1 µm and frame interval 0.1 s. The same
    seed gives the same pixels. From Python: pims_videoutils.write_sample(path, seed=...).
    """
    from .sample import write_sample

    height, width = size
    path = write_sample(output, seed=seed, n_frames=n_frames, n_z=n_z, n_channels=n_channels,
                        height=height, width=width, n_spots=n_spots)
    click.echo(f"wrote {path}: {n_frames} t x {n_z} z x {n_channels} c x {height} x {width}, "
               "uint16, ImageJ hyperstack")
    return 0


# ---------------------------------------------------------------------------------------------
# Entry point


def _one_line(error: BaseException) -> str:
    """Return an error's message on one line."""
    if isinstance(error, FFmpegError):
        text = error.message
        if error.returncode is not None:
            text += f" (ffmpeg exit code {error.returncode})"
        # ffmpeg's first error line names the cause; the rest of its stderr is for --debug.
        lines = [line.strip() for line in error.stderr_tail.splitlines() if line.strip()]
        causes = [line for line in lines if "error" in line.lower()] or lines[-1:]
        if causes:
            text += f": {causes[0]}"
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not isinstance(error, (PimsVideoutilsError, OSError)):
        text = f"{type(error).__name__}: {text}"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run ``pims-video`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name.

    Returns
    -------
    int
        0 on success, 1 for an error of the package or a failed batch input, 2 for a usage
        error, 130 when interrupted.
    """
    _skip_display_imports()
    state = {"debug": False}
    try:
        code = cli.main(args=argv, prog_name=_PROG, standalone_mode=False, obj=state)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo(f"{_PROG}: interrupted", err=True)
        return 130
    except (PimsVideoutilsError, OSError) as error:
        if state["debug"]:
            traceback.print_exc()
        click.echo(f"{_PROG}: error: {_one_line(error)}", err=True)
        return 1
    return code if isinstance(code, int) else 0
