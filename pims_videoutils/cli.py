"""The ``pims-video`` command line: ``info``, ``convert``, ``batch`` and ``sample``.

Argument parsing and exit codes only. Every command is a few calls of the Python API:
:mod:`pims_videoutils.stacks` (open a file, folder or glob; describe it; select the frames of a
movie), :func:`pims_videoutils.to_video` and :func:`pims_videoutils.write_sample`.

Exit codes: 0 success; 1 an error of the package (a stack that cannot be read, a bad export
argument, ffmpeg failing, a file that cannot be written) or any failed input of a batch or
PATH of ``info``; 2 a usage error (unknown option, bad value); 130 interrupted (Ctrl-C); 143
terminated (SIGTERM, which stops an export as Ctrl-C does). Errors are one line on stderr,
``pims-video: error: <message>``; ``pims-video --debug ...`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from ._errors import (
    ExportArgumentError,
    FFmpegError,
    IncompleteDatasetWarning,
    PimsVideoutilsError,
    PluginLoadWarning,
    ReaderFallbackWarning,
    StackReadError,
)
from ._filenames import TIFF_SUFFIXES
from ._version import __version__
from ._wording import counted
from .stacks import describe, open_stack, select_frames, summarize

__all__ = ["cli", "main"]

_PROG = "pims-video"
_GLOB_CHARS = frozenset("*?[")
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
#: Modules that ``import pims`` pulls in for its notebook display helpers only (pims.display
#: imports matplotlib.pyplot and moviepy.editor, which imports IPython). The command line never
#: displays anything. Measured (median of 5, twice, 2 shared cores): ``pims-video info
#: file.tif`` 0.9-1.0 s with the skip, 2.1 s without; ``--help`` does not import pims (no gain).
#: Each batch worker process imports pims again and saves the same second.
_DISPLAY_ONLY_MODULES = ("matplotlib.pyplot", "moviepy.editor")


class _Terminated(BaseException):
    """SIGTERM arrived (``kill``, ``timeout``, a batch system's time limit)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    # once: a second SIGTERM (the process group's, then the batch parent's) must not cut
    # the clean-up of the first short (ffmpeg left running, its file left behind)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated


def _one_line_warnings(others: Callable[..., None]) -> Callable[..., None]:
    """Return the CLI's ``warnings.showwarning``, which replaces ``others``.

    The package's warnings are shown as one line each, ``pims-video: warning: ...``, with
    options spelt as on the command line; other warnings by ``others``.
    """

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, _PACKAGE_WARNINGS):
            click.echo(f"{_PROG}: warning: {_cli_spelling(str(message))}", err=True)
        else:
            others(message, category, filename, lineno, file, line)

    return show


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Make SIGTERM raise :class:`_Terminated` in the block.

    So SIGTERM stops an export as Ctrl-C does (ffmpeg stopped, its file removed); by
    default it ended the process on the spot, leaving ffmpeg encoding into a hidden file.
    Further SIGTERMs are ignored until the block ends.
    Only in the main thread (the only one that can set signal handlers), when the handler
    can be put back afterwards.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is None):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


#: Shared by ``info``, ``convert`` and ``batch``
_FILL_MISSING_OPTION = click.option(
    "--fill-missing", type=float, metavar="VALUE",
    help="Read the planes that a dataset or a cut file lacks as VALUE (e.g. 0): an "
         "acquisition stopped early, a Micro-Manager or ImageJ file cut short.")


def _video_options(function):
    """Add the options shared by ``convert`` and ``batch`` (those of ``to_video``)."""
    options = [
        click.option("--fps", type=click.FloatRange(min=0, min_open=True),
                     help="Frame rate of the movie [default: when animating t, 1 / the file's "
                          "frame interval, so movie time is real time (a slow time-lapse, one "
                          "frame every 10 s, plays at 0.1 fps: give e.g. --fps 10 to speed it "
                          "up); else 10]. --step keeps the file's rate (the movie plays STEP "
                          "times faster)."),
        click.option("--codec", help="ffmpeg encoder, e.g. libx264, libx265, ffv1, "
                                     "libvpx-vp9, prores_ks, gif [default: from the extension]."),
        click.option("--crf", type=click.IntRange(min=0),
                     help="Constant rate factor, lower is better quality (default: libx264 18, "
                          "libx265 22, VP9 30; not for ffv1, ProRes, GIF)."),
        click.option("--preset", help="Encoder speed preset, e.g. ultrafast, medium, slow."),
        click.option("--lossless", is_flag=True,
                     help="Lossless encoding (exact pixel values with ffv1)."),
        click.option("--contrast", type=_Contrast(), default="auto", show_default=True,
                     help="One contrast for the whole movie from percentiles (auto), "
                          "per frame (frame), fixed limits, or none: values sent unscaled "
                          "(8-bit data, or 16-bit with --lossless)."),
        click.option("--percentiles", type=_FloatPair(), default="0.1,99.9", show_default=True,
                     help="Percentiles used by --contrast auto/frame."),
        click.option("--gamma", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     show_default=True, help="Gamma applied after the contrast."),
        click.option("--colormap", help="Colormap for single-channel movies, e.g. viridis, "
                                        "magma, gray (any name the cmap package knows), or a "
                                        "colour (a ramp from black), e.g. orange, '#ff8800'."),
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
                     help="Fixed coordinates of the other axes, e.g. z=1,c=0 [default: 0; p: "
                          "the position of a file of one position of a dataset]."),
        click.option("--start", type=click.IntRange(min=0), help="First frame (0-based)."),
        click.option("--stop", type=click.IntRange(min=0), help="Frame to stop before."),
        click.option("--step", type=click.IntRange(min=1), help="Take every STEP-th frame."),
        click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=1,
                     show_default=True, help="Integer n >= 1 to enlarge, or 1/n (0.5, 0.25...) to "
                                             "shrink by n x n block means."),
        _FILL_MISSING_OPTION,
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
        "fill_missing": options["fill_missing"],
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


def _convert(source: str, output: str, selection: dict[str, Any], export: dict[str, Any]):
    """Open ``source``, select its frames and write the movie; close the reader.

    A movie is never written over its input (a video file, or a link to it).
    """
    from . import to_video

    if os.path.isfile(source) and os.path.exists(output) and os.path.samefile(source, output):
        raise ExportArgumentError(f"{output} is the input {source}: the movie would replace "
                                  "it; choose another output")
    choice = dict(selection)
    reader = open_stack(source, fill_missing=choice.pop("fill_missing"))
    try:
        frames, layout = select_frames(reader, **choice)
        return to_video(frames, output, **export, **layout)
    finally:
        reader.close()


#: In a batch worker: where its jobs say that they started, finished or were stopped (SIGTERM)
_job_events: Any = None


def _start_worker(job_events: Any) -> None:
    """Initialize a batch worker process: fast pims import, the pipe for job events.

    The worker ignores SIGINT: Ctrl-C (to the process group, or to the batch process alone)
    reaches the batch process, which stops its workers with SIGTERM, one signal each (a
    second one could cut their clean-up short).
    """
    global _job_events
    _skip_display_imports()
    warnings.showwarning = _one_line_warnings(warnings.showwarning)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _job_events = job_events


def _batch_job(number: int, source: str, output: str, selection: dict[str, Any],
               export: dict[str, Any]) -> None:
    """Input ``number`` of ``batch`` (in a worker); it reports on the job-event pipe.

    Sends ``("started", number)``; ``("finished", number, (frames, width, height, s))``
    once its movie is written; ``("stopped", number)`` when SIGTERM stopped it (its pool
    stopping it with a killed worker, or the batch process), and then ends its worker. The
    result goes by the pipe, not by the pool: a pool that breaks (another worker killed) as
    the job returns marks the job failed and ends its worker before the result is passed on.
    """
    start = time.perf_counter()
    try:
        with _sigterm_raises():  # stopped by its pool or a batch system: clean up as convert
            _job_events.send(("started", number))  # (once SIGTERM is sure to say "stopped")
            result = _convert(source, output, selection, export)
            summary = (result.n_frames, result.width, result.height,
                       time.perf_counter() - start)
            _job_events.send(("finished", number, summary))
    except _Terminated:
        _job_events.send(("stopped", number))
        # The worker ends, not only its job: back in the pool it would wait for the next
        # job on a queue that an idle worker, ended by the same SIGTERM as it waited, may
        # have left locked (the batch process then waited for it forever).
        os._exit(128 + signal.SIGTERM)


def _nothing() -> None:
    """Do nothing: the job that makes a batch's process pool watch the workers it started.

    ``ProcessPoolExecutor.submit`` (Python 3.10 to 3.13, "spawn" workers) wakes the pool's
    manager thread before it starts a new worker: the thread may list the workers to watch
    without it, and a worker killed then goes unnoticed until the thread wakes again (the
    batch waited forever when no other job ended). Submitting this job once the workers
    exist wakes the thread, which then watches them all.
    """


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


def _one_file_anywhere(a: str, b: str) -> bool:
    """Return True if the paths ``a`` and ``b`` name one file on some file system.

    Names that differ only in case or in Unicode normalization (NFC, NFD) are one file on
    macOS and Windows: batch refuses them everywhere.
    """
    def key(path: str) -> str:
        return unicodedata.normalize("NFC", path).casefold()

    return key(a) == key(b)


def _tiff_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Return ``value`` if it names a TIFF file (.tif/.tiff, any case); a usage error if not."""
    if not value.lower().endswith(TIFF_SUFFIXES):
        raise click.BadParameter(f"{value!r} is not a .tif or .tiff file name (the sample is a "
                                 "TIFF file)", ctx, param)
    return value


def _makeable_folder(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Return ``value`` if it is a folder or can be made one; a usage error if a part is a file.

    ``batch --out short.tif/m`` would fail to make the folder, after the checks of every
    input, with a bare "Not a directory".
    """
    for part in (Path(value), *Path(value).parents):
        if part.exists() and not part.is_dir():
            raise click.BadParameter(f"cannot make the folder {value!r}: {str(part)!r} is a "
                                     "file, not a folder", ctx, param)
    return value


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

    Exit codes: 0 success; 1 an error (a stack that cannot be read, a bad option for it,
    ffmpeg failing, any failed input of a batch or PATH of info); 2 a usage error; 130
    interrupted (Ctrl-C) and 143 terminated (SIGTERM: kill, timeout, a batch system's time
    limit), which stop ffmpeg and leave no partial movie.
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
              help="Print a JSON list with one object per PATH instead of text (for a PATH "
                   "that cannot be read: its path and error).")
@_FILL_MISSING_OPTION
@click.pass_obj
def info(state: dict[str, bool], paths: tuple[str, ...], as_json: bool,
         fill_missing: float | None) -> int:
    """Show what a reader sees in each PATH (file, folder or glob).

    Axes and sizes, dtype, storage (mapped: planes read straight from their place in the file;
    decoded: pages decoded), pixel size, z step, frame interval, channels, writer software and
    the series in the file. A PATH that cannot be read is reported and the others are shown;
    the exit code is then 1.
    """
    import json

    records = []
    failed = shown = False
    for source in paths:
        try:
            reader = open_stack(source, fill_missing=fill_missing)
            try:
                record = summarize(source, reader)
            finally:
                reader.close()
        except (PimsVideoutilsError, OSError) as error:  # one bad path must not hide the rest
            failed = True
            if state["debug"]:
                traceback.print_exception(error)
            click.echo(f"{_PROG}: error: {_one_line(error)}", err=True)
            records.append({"path": source, "error": _one_line(error)})
            continue
        records.append(record)
        if not as_json:  # print as we go
            if shown:
                click.echo()
            click.echo("\n".join(describe(record)))
            shown = True
    if as_json:
        click.echo(json.dumps(records, indent=2, default=str))
    return 1 if failed else 0


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
    --coords (the position p at that of INPUT when INPUT is the file of one position of a
    multi-position dataset, e.g. acq_MMStack_Pos1.ome.tif). One contrast is computed for the
    whole movie (--contrast auto), so brightness changes stay visible. A movie of time points
    plays in real time (the file's frame interval), other movies at 10 fps, unless --fps says
    otherwise: use --fps for slow time-lapses.
    """
    selection, export = _split_options(options)
    result = _convert(source, output, selection, export)
    click.echo(
        f"wrote {result.path}: {counted(result.n_frames, 'frame')}, "
        f"{result.width}x{result.height}, {result.fps:.6g} fps, {result.codec}"
    )
    return 0


@cli.command(context_settings=_CONTEXT, epilog=_examples(
    "pims-video batch data/*.tif --out movies/",
    "pims-video batch data/*.tif --out movies/ --jobs 2 --fps 20 --channels 0",
    "pims-video batch run1/ run2/ run3/ --out movies/ --ext mkv --lossless --codec ffv1",
))
@click.argument("sources", nargs=-1, required=True, metavar="INPUTS...")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              callback=_makeable_folder, help="Folder for the movies (created if missing).")
@click.option("--jobs", "-j", type=click.IntRange(min=1),
              help="Number of stacks converted at once [default: the number of CPUs].")
@click.option("--ext", default="mp4", show_default=True,
              help="Extension (container) of the movies, e.g. mp4, mkv, webm.")
@_video_options
@click.pass_obj
def batch(state: dict[str, bool], sources: tuple[str, ...], out: str, jobs: int | None, ext: str,
          **options: Any) -> int:
    """Make one movie per input stack, several at once in parallel processes.

    Each INPUT is one stack, as in "convert": a file, a folder of TIFFs or a quoted glob; the
    movie is OUT/<name>.<ext> with the file's stem, the folder's name or the glob's folder name
    (two inputs whose names differ only in case are refused: one file on macOS and Windows).
    An input that fails is reported and the others go on; a summary ends the run and the exit
    code is 1 if any input failed. A continuation file of a Micro-Manager position or an
    NDTiff dataset (acq_MMStack_Pos0_1.ome.tif) whose first file (acq_MMStack_Pos0.ome.tif)
    is also an input is skipped: that file's movie holds it. Takes the options of "convert".
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    from ._multifile import continued_file
    from .export import check_arguments, remove_unheld_temporaries

    selection, export = _split_options(options)
    export["progress"] = False
    check_arguments(f".{ext.lstrip('.')}", **export)  # fail once, before any work
    inputs = {os.path.abspath(source) for source in sources}
    firsts = {source: continued_file(os.path.abspath(source)) for source in sources}
    continuations = [source for source, first in firsts.items() if first in inputs]
    for source in continuations:
        click.echo(f"skipped {source}: it continues {os.path.basename(firsts[source])}, whose "
                   "movie holds it")
    sources = tuple(s for s in sources if s not in continuations)
    outputs: dict[str, str] = {}
    for source in sources:
        output = str(Path(out) / f"{_output_name(source)}.{ext.lstrip('.')}")
        clash = [s for s, o in outputs.items() if _one_file_anywhere(o, output)]
        if clash:
            raise ExportArgumentError(f"{clash[0]} and {source} would both write {output}")
        outputs[source] = output
    Path(out).mkdir(parents=True, exist_ok=True)

    failed: list[str] = []
    workers = min(jobs or os.cpu_count() or 1, len(sources))
    context = get_context("spawn")
    # small messages of the jobs on one pipe (atomic writes, no lock a killed worker holds)
    events_from_jobs, job_events = context.Pipe(duplex=False)
    started: set[int] = set()  # inputs whose job started in the current pool
    stopped: set[int] = set()  # ... and was stopped by SIGTERM
    written: dict[int, tuple[int, int, int, float]] = {}  # ... and wrote its movie: summary

    def read_job_events() -> None:
        while events_from_jobs.poll():
            event, number, *summary = events_from_jobs.recv()
            if event == "finished":
                written[number] = summary[0]
            else:
                (started if event == "started" else stopped).add(number)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=context,
            initializer=_start_worker, initargs=(job_events,),
        )

    executor = new_pool()
    # Submit one job per free worker, so that after Ctrl-C no queued input starts.
    waiting = list(enumerate(sources))
    running: dict[Any, int] = {}
    try:
        while waiting or running:
            new_jobs = waiting[: workers - len(running)]
            del waiting[: len(new_jobs)]
            for number, source in new_jobs:
                job = (number, source, outputs[source], selection, export)
                running[executor.submit(_batch_job, *job)] = number
            if new_jobs:  # the workers they started are watched (killed: pool broken)
                executor.submit(_nothing)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = any(isinstance(f.exception(), BrokenProcessPool) for f in finished)
            if broken:  # a worker was killed (out of memory?): the pool stops all the others
                executor.shutdown(wait=True)  # and once they are gone, their jobs are over
                finished = set(running)
            read_job_events()
            for future in finished:
                number = running.pop(future)
                source = sources[number]
                try:
                    future.result()
                except BrokenProcessPool:
                    # a movie written just before the pool broke is done (its "finished"
                    # event says so; the pool lost its result)
                    if number not in written:
                        remove_unheld_temporaries(outputs[source])  # its worker's: no one's
                        # stopped with the killed worker, or not started yet: retried (unless
                        # no job started at all: workers that die before, e.g. out of memory)
                        if number in stopped or (number not in started and started):
                            waiting.insert(0, (number, source))
                            continue
                        failed.append(source)
                        click.echo(f"{_PROG}: FAILED {source}: a worker process died (killed "
                                   "by the system, out of memory?)", err=True)
                        continue
                except Exception as error:  # one failed input must not stop the others
                    failed.append(source)
                    if state["debug"]:  # (the worker's traceback is the error's cause)
                        traceback.print_exception(error)
                    click.echo(f"{_PROG}: FAILED {source}: {_one_line(error)}", err=True)
                    continue
                n_frames, width, height, seconds = written.pop(number)
                click.echo(
                    f"ok {source} -> {outputs[source]} ({counted(n_frames, 'frame')}, "
                    f"{width}x{height}, {seconds:.1f} s)"
                )
            if broken:  # the inputs it stopped, and those still waiting, get a new pool
                started.clear()
                stopped.clear()
                executor = new_pool()
    except (_Terminated, KeyboardInterrupt):  # also to this process alone: stop the workers
        for worker in multiprocessing.active_children():
            worker.terminate()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        events_from_jobs.close()
        job_events.close()
    done = len(sources) - len(failed)
    summary = f"{done} of {len(sources)} converted into {out}"
    if continuations:
        summary += f" ({counted(len(continuations), 'continuation file')} skipped)"
    if failed:
        summary += f"; {len(failed)} failed: {', '.join(failed)}"
    click.echo(summary)
    return 1 if failed else 0


@cli.command(context_settings=_CONTEXT, epilog=_examples(
    "pims-video sample sample.tif",
    "pims-video sample big.tif --frames 500 --size 512 512 --seed 3",
))
@click.argument("output", type=click.Path(dir_okay=False), metavar="OUT.tif",
                callback=_tiff_name)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed.")
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


_PACKAGE_WARNINGS = (IncompleteDatasetWarning, PluginLoadWarning, ReaderFallbackWarning)

#: How the Python arguments named in error messages are spelt on the command line
_CLI_SPELLINGS = [
    (r"\bcontrast=None", "--contrast none"),
    (r"\bcontrast='auto'", "--contrast auto"),
    (r"\bUse 'auto' or \(lo, hi\)", "Use --contrast auto or LO,HI"),
    (r"\(lo, hi\)", "LO,HI"),
    (r"\blossless=True", "--lossless"),
    (r"(^|\()(fps|scale)=(?=\d)", r"\1--\2 "),  # not inside a path
    (r"\bchannel_colors=\[\.\.\.\]", "--channel-colors COLOR,..."),
    (r"\bchannel_colors\b", "--channel-colors"),
    (r"^colormap is for\b", "--colormap is for"),
    (r"\bwith colormap \(", "with --colormap ("),
    (r"\bneeds codec ffv1\b", "needs --codec ffv1"),
    (r"\bTiff(?:Sequence|Stack)ND\(path, fill_missing=([^)]*)\)", r"--fill-missing \1"),
    (r"\bfill_missing=(?= )", "--fill-missing VALUE"),
    (r"\bfill_missing=", "--fill-missing "),
]


def _cli_spelling(message: str) -> str:
    """Name the command-line options in an error message of the Python API."""
    for pattern, replacement in _CLI_SPELLINGS:
        message = re.sub(pattern, replacement, message)
    return message


def _one_line(error: BaseException) -> str:
    """Return an error's message on one line (options spelt as on the command line)."""
    if isinstance(error, FFmpegError):
        text = error.message
        if error.returncode:  # (0: ffmpeg ended well, the message says what is wrong)
            text += f" ({error.exit_status})"
        # ffmpeg's first error message names the cause (later ones say what failed because
        # of it); the rest of its stderr is for --debug.
        lines = [line.strip() for line in error.stderr_tail.splitlines() if line.strip()]
        causes = (
            [line for line in lines if "[error]" in line or "[fatal]" in line]
            or [line for line in lines if "error" in line.lower()]
            or lines[-1:]
        )
        if causes:
            text += f": {causes[0]}"
    else:
        # a message ending in ":" lists its reasons on the next lines: keep them, on one line
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].endswith(":"):
            reasons = (line.removeprefix("- ") for line in lines[1:])
            lines = [lines[0] + " " + "; ".join(reasons)]
        text = lines[0] if lines else type(error).__name__
        if isinstance(error, (ExportArgumentError, StackReadError)):
            text = _cli_spelling(text)
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
        0 on success, 1 for an error of the package, a failed batch input or info PATH, 2
        for a usage error, 130 when interrupted (SIGINT), 143 when terminated (SIGTERM).
    """
    _skip_display_imports()
    state = {"debug": False}
    try:
        with _sigterm_raises():
            python_showwarning = warnings.showwarning
            warnings.showwarning = _one_line_warnings(python_showwarning)
            try:
                code = cli.main(args=argv, prog_name=_PROG, standalone_mode=False, obj=state)
            finally:
                warnings.showwarning = python_showwarning
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo(f"{_PROG}: interrupted", err=True)
        return 130
    except _Terminated:
        click.echo(f"{_PROG}: terminated", err=True)
        return 143
    except (PimsVideoutilsError, OSError) as error:
        if state["debug"]:
            traceback.print_exc()
        click.echo(f"{_PROG}: error: {_one_line(error)}", err=True)
        return 1
    return code if isinstance(code, int) else 0
