"""``to_video``: frames (pims readers, arrays, iterables) -> intensity -> colour -> ffmpeg.

This module only wires the pieces: :mod:`.intensity` maps values to 8 bits, :mod:`.colour`
makes colormaps and composites, :mod:`._ffmpeg` runs the encoder.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import glob
import html
import math
import os
import secrets
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: temporary files of killed exports are not found again
    fcntl = None

from . import _ffmpeg
from ._errors import ExportArgumentError, FFmpegError
from ._filenames import NAME_MAX, shortened_to
from ._frames import FrameLayout, FrameSource, frame_layout
from ._wording import counted, shown
from .colour import Compositor, apply_lut, channel_lut, default_channel_colors
from .intensity import (
    DEFAULT_PERCENTILES,
    IntensityMap,
    _as_float,
    _percentile_pair,
    display_limits,
)

__all__ = ["DEFAULT_FPS", "EMBED_LIMIT_BYTES", "VideoResult", "to_video"]

DEFAULT_FPS = 10.0
EMBED_LIMIT_BYTES = 20 * 2**20
_MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}
_BROWSER_CODECS = ("libx264", "libvpx-vp9")
_BYTES_PER_PIXEL = {"gray": 1, "gray16le": 2, "rgb24": 3}
_GRAY = ("gray", "grey")
#: Frame rates the containers can time: Matroska, WebM and AVI count in milliseconds (faster
#: frames would share a timestamp); ffmpeg takes at most 10^6. GIF counts in hundredths of a
#: second, but browsers and most viewers show a frame of 0 or 1 hundredth for 10 hundredths:
#: over 50 fps (some delays of 1 hundredth) a GIF would play up to 10 times too slow.
_MAX_FPS = {".mkv": 1000, ".webm": 1000, ".avi": 1000, ".gif": 50}
_WHY_MAX_FPS = {
    ".gif": "; browsers and most viewers show a GIF frame shorter than 0.02 s for 0.1 s, so "
    "the movie would play up to 10 times too slow"
}
_MAX_FPS_FFMPEG = 1_000_000
#: GIF frame delays are whole hundredths of a second, at most 65535 (655.35 s)
_GIF_TICKS_PER_SECOND, _GIF_MAX_DELAY = 100, 65535
#: The slowest rates: one frame per 2.8 hours (ffmpeg), 655.35 s (GIF's longest delay).
_MIN_FPS = {".gif": Fraction(_GIF_TICKS_PER_SECOND, _GIF_MAX_DELAY)}
_MIN_FPS_FFMPEG = Fraction(1, 10_000)
#: The hidden temporary file of an export, beside its target: stem, 8 hex digits, extension
_TEMPORARY = ".{}.tmp-{}{}"
#: A temporary file left this long untouched, and locked by no export, was left by a killed one
#: (an export locks its file microseconds after creating it).
_ABANDONED_AFTER_SECONDS = 60


@dataclass(frozen=True)
class VideoResult:
    """What :func:`to_video` wrote; shows as an HTML5 video in Jupyter.

    Attributes
    ----------
    path : Path
        The video file, as given (absolute; a symbolic link stays one).
    n_frames : int
        Frames written (one per input frame).
    fps : float
        Frame rate; for ``.gif`` the average rate (see :func:`to_video`'s Returns).
    width, height : int
        Size of the encoded frames (after scaling and padding).
    codec : str
        ffmpeg encoder (``libx264``, ``ffv1``...).
    pixel_format : str
        Pixel format stored (``yuv420p``, ``gray16le``...).
    intensity_range : tuple of float, list of tuples, or None
        The ``(lo, hi)`` mapped to 0-255 (the full dtype range when values were not
        scaled); one tuple per channel for composites; None for ``contrast="frame"``.
    padding : tuple of int
        ``(rows, columns)`` of black added at the bottom and right for the codec.
    """

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int
    codec: str
    pixel_format: str
    intensity_range: Any
    padding: tuple[int, int]

    def _repr_html_(self) -> str:
        """Return an inline player: files up to 20 MiB embedded (base64), larger ones linked.

        A linked file is referred to by its path relative to the working directory (as a
        URL: ``#``, ``%`` and spaces escaped), which Jupyter serves when the video lies below
        the notebook's folder.

        GIFs show as an image; what browsers cannot play (ffv1, ProRes, Matroska, AVI) as a
        one-line summary.
        """
        ext = self.path.suffix.lower()
        summary = html.escape(
            f"{self.path.name}: {counted(self.n_frames, 'frame')}, {self.width}x{self.height}, "
            f"{self.fps:g} fps, {self.codec} {self.pixel_format}"
        )
        if ext != ".gif" and (ext not in _MIME or self.codec not in _BROWSER_CODECS):
            return f"<p>{summary} (not playable in a browser)</p>"
        mime = "image/gif" if ext == ".gif" else _MIME[ext]
        if self.path.stat().st_size <= EMBED_LIMIT_BYTES:
            data = base64.b64encode(self.path.read_bytes()).decode("ascii")
            src = f"data:{mime};base64,{data}"
        else:  # Jupyter serves files below the notebook's folder (the working directory)
            relative = Path(os.path.relpath(self.path)).as_posix()
            src = html.escape(urllib.parse.quote(relative), quote=True)  # "#", "%", spaces
        if ext == ".gif":
            return f'<img src="{src}" alt="{summary}"/>'
        return f'<video controls loop src="{src}" title="{summary}"></video>'


def check_arguments(
    extension: str,
    frames: Any = None,
    *,
    fps: float | None = None,
    codec: str | None = None,
    lossless: bool = False,
    crf: float | None = None,
    preset: str | None = None,
    contrast: Any = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    gamma: float = 1.0,
    colormap: Any = None,
    channel_colors: Sequence[Any] | None = None,
    projection: str | None = None,
    scale: Any = 1,
    extra_args: Sequence[str] = (),
    **_: Any,
) -> tuple[Fraction, str, Fraction]:
    """Validate the :func:`to_video` arguments that need no frame, as it does first.

    ``pims-video batch`` checks its options once so, before any input is read.

    Parameters
    ----------
    extension : str
        The output file's extension, with the dot.
    frames : optional
        The input, for its frame rate when ``fps`` is None (None: the default rate).
    fps, codec, lossless, crf, preset, contrast, percentiles, gamma, colormap, projection
        As in :func:`to_video`; other keyword arguments of it are ignored.
    scale, extra_args
        As in :func:`to_video`.
    channel_colors : sequence, optional
        As in :func:`to_video`; each colour is checked unless it is an iterator (read once,
        by the export).

    Returns
    -------
    (Fraction, str, Fraction)
        The scale factor, the encoder and the frame rate.

    Raises
    ------
    ExportArgumentError
        For an invalid value, as :func:`to_video` would.
    """
    factor = _check_options(contrast, projection, scale)
    IntensityMap.per_frame(np.dtype(np.uint8), percentiles, gamma)  # checks both
    if colormap is not None:
        channel_lut(colormap)
    if not isinstance(channel_colors, Iterator):
        for color in _color_list(channel_colors) or ():
            channel_lut(color)
    chosen = _ffmpeg.choose_codec(extension, codec, lossless)
    _ffmpeg.check_quality(chosen, crf, preset)
    _ffmpeg.check_extra_args(extra_args)
    return factor, chosen, _resolve_fps(fps, frames, extension)


def _check_options(contrast: Any, projection: str | None, scale: Any) -> Fraction:
    """Validate the options that need no frame; return the scale as a Fraction."""
    _contrast_limits(contrast)
    if projection not in (None, "max", "mean"):
        raise ExportArgumentError(f"projection must be None, 'max' or 'mean', not {projection!r}")
    factor = Fraction(float(scale)).limit_denominator(1000) if _positive(scale) else Fraction(0)
    if (
        factor <= 0
        or (factor >= 1 and factor.denominator != 1)
        or (factor < 1 and factor.numerator != 1)
    ):
        raise ExportArgumentError(
            f"scale must be an integer >= 1 (up) or 1/n (down, e.g. 0.5), not {shown(scale)}"
        )
    return factor


def _resolve_fps(fps: float | None, frames: Any, extension: str) -> Fraction:
    """Return the frame rate: the argument, else the reader's, else :data:`DEFAULT_FPS`.

    The reader's ``frame_rate``, then ``1 / metadata['frame_interval']`` (seconds), are used
    when they are finite and > 0, and the frames step through time: an N-D reader must
    iterate over ``t`` alone (frames along z, channels or several axes have no real-time
    rate). A lazy slice of a reader (``reader[10:50:2]``, a
    ``slicerator.Slicerator``) carries neither: the reader it was taken from (its
    ``_ancestor``) is asked. An invalid argument, or a rate (also the reader's) that the
    container cannot time (:data:`_MAX_FPS`, :data:`_MIN_FPS`), raises. The exact rate is
    checked; the one returned is the nearest fraction with a denominator of at most 10,000
    (29.97 is 2997/100), kept within those limits.
    """
    given = fps is not None
    if not given:
        rates = (_reader_rate(source) for source in _rate_sources(frames))
        fps = next((rate for rate in rates if rate is not None), DEFAULT_FPS)
    if not _positive(fps):
        raise ExportArgumentError(f"fps must be a finite number > 0, got {shown(fps)}")
    exact = Fraction(float(fps))  # checked before it is rounded (1/20000 would be 1/10000)
    what = f"fps={float(fps):g}" if given else f"the frame rate of the input, {float(fps):g} fps,"
    highest = _MAX_FPS.get(extension.lower(), _MAX_FPS_FFMPEG)
    if exact > highest:
        raise ExportArgumentError(
            f"{what} is more than {extension} files can time ({highest} fps"
            f"{_WHY_MAX_FPS.get(extension.lower(), '')}): pass a lower fps (the movie plays in "
            f"slow motion)"
            + (", or write .mp4" if highest < _MAX_FPS_FFMPEG else "")
        )
    lowest = _MIN_FPS.get(extension.lower(), _MIN_FPS_FFMPEG)
    if _too_slow(exact, extension.lower()):
        raise ExportArgumentError(
            f"{what} is less than {extension} files can time ({float(lowest):.5g} fps): "
            f"pass a higher fps (the movie plays in fast motion)"
        )
    return min(max(exact.limit_denominator(10_000), lowest), highest)  # (rounded inside)


def _too_slow(rate: Fraction, extension: str) -> bool:
    """Return True if frames at ``rate`` last longer than files of ``extension`` can time.

    A GIF frame's delay is a whole number of hundredths of a second: a rate is too slow when
    its delay, rounded to one, is over 65535 (``1/655.35``, as a float a little under
    ``100/65535``, and the documented 0.0015259 fps are taken; such a rate is written as
    ``100/65535``). Other files: a rate under :data:`_MIN_FPS_FFMPEG`.
    """
    if extension == ".gif":
        return round(_GIF_TICKS_PER_SECOND / rate) > _GIF_MAX_DELAY
    return rate < _MIN_FPS_FFMPEG


def _rate_sources(frames: Any) -> list[Any]:
    """Return ``frames``, then the reader it is a lazy slice of (if it is one)."""
    from slicerator import Slicerator

    if isinstance(frames, Slicerator):
        return [frames, frames._ancestor]  # slicerator passes on no frame rate or metadata
    return [frames]


def _reader_rate(frames: Any) -> float | None:
    """Return a reader's ``frame_rate``, else ``1 / metadata['frame_interval']``, else None.

    None also for an N-D reader whose ``iter_axes`` are not ``t`` alone: the time between
    time points is not the time between its frames.
    """
    iter_axes = getattr(frames, "iter_axes", None)
    if iter_axes is not None and list(iter_axes) != ["t"]:
        return None
    rate = _optional_attribute(frames, "frame_rate")
    if _positive(rate):
        return rate
    metadata = _optional_attribute(frames, "metadata")
    interval = metadata.get("frame_interval") if isinstance(metadata, Mapping) else None
    return 1.0 / float(interval) if _positive(interval) else None


def _optional_attribute(frames: Any, name: str) -> Any:
    """Return an attribute of a reader, or None when it has none or it fails.

    pims's ``ImageIOReader.frame_rate`` raises TypeError or KeyError for images without
    ``fps`` in their metadata: a rate the reader cannot give is an unknown rate.
    """
    try:
        return getattr(frames, name, None)
    except Exception:  # a reader's property failing: nothing to learn from it
        return None


def _positive(value: Any) -> bool:
    """Return True for a real, finite number > 0 (not a bool, nor one too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction | np.number):
        return False
    return bool(math.isfinite(_as_float(value)) and value > 0)


def _file_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, refusing one that names a folder by its form.

    ``Path`` drops a trailing separator and a last ``.`` (``out.mp4/`` is ``out.mp4``): the
    path as given is checked.

    Raises
    ------
    ExportArgumentError
        If ``path`` ends in a separator or in ``.``.
    """
    given = os.fspath(path)
    if given and os.path.basename(given) in ("", "."):
        raise ExportArgumentError(
            f"{given}: a path ending in {given[-1]!r} names a folder, not a video file"
        )
    return Path(given)


def _prepare_target(path: str | os.PathLike[str], overwrite: bool) -> tuple[Path, Path]:
    """Check that the target can be written; return it and the file to write (absolute).

    A symbolic link is written through, as ``open(path, "wb")`` would: the file to write is
    the one it points to (its temporary file is made beside it). A link to nothing is
    refused. Otherwise both paths are the same.
    """
    given = Path(os.fspath(path)).expanduser().absolute()
    if len(os.fsencode(given.name)) > NAME_MAX:
        raise ExportArgumentError(
            f"{given}: the file name is too long ({len(os.fsencode(given.name))} bytes, at "
            f"most {NAME_MAX})"
        )
    try:
        target = _followed_target(given)
    except OSError as exc:  # a folder's name over 255 bytes, a path too long, no access...
        raise ExportArgumentError(f"cannot write {given}: {exc.strerror}") from exc
    if target.exists() and not overwrite:
        raise ExportArgumentError(f"{given} exists (pass overwrite=True to replace it)")
    return given, target


def _followed_target(given: Path) -> Path:
    """Return the file to write for ``given`` (a symbolic link's target), checking its folder.

    Raises
    ------
    ExportArgumentError
        A link to nothing, a folder, or a missing folder.
    OSError
        The path cannot be looked at (a name too long, a folder without access).
    """
    target = given
    if target.is_symlink():
        target = Path(os.path.realpath(target))
        if not target.exists():
            raise ExportArgumentError(
                f"{given} is a symbolic link to {target}, which does not exist"
            )
    if target.is_dir():
        raise ExportArgumentError(f"{given} is a folder, not a video file name")
    if not target.parent.is_dir():
        raise ExportArgumentError(f"folder {target.parent} does not exist")
    return target


def _reserve_temporary(target: Path) -> tuple[str, int | None]:
    """Create an empty, hidden temporary file beside ``target`` with the same extension.

    Created like any new file (mode 0o666 minus the umask, unlike ``mkstemp``'s 0o600), so
    the finished video gets the usual permissions. Where the OS and the file system have
    ``flock`` (not Windows), the file is locked for as long as the returned descriptor is
    open (close it when the export ends), and the temporary files that killed exports to
    ``target`` left are removed first (:func:`_remove_abandoned`). A file that a clean-up
    (:func:`remove_unheld_temporaries`) probed between its creation and its lock is given
    up for a new one: the export never runs without the lock where locks work.

    Returns
    -------
    tuple of (str, int or None)
        The file's name, and the descriptor holding its lock (None without a lock).
    """
    _remove_abandoned(target)
    stem = _temporary_stem(target)
    for _ in range(100):
        name = target.with_name(_TEMPORARY.format(stem, secrets.token_hex(4), target.suffix))
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ExportArgumentError(f"cannot write in folder {target.parent}: {exc}") from exc
        lock = _take_lock(fd)
        if lock is _LockCheck.CANNOT_TELL:
            os.close(fd)
            return str(name), None
        if lock is _LockCheck.NOT_HELD and _names_file_of(name, fd):
            return str(name), fd
        # a clean-up (remove_unheld_temporaries) probed the file before it was locked: it
        # holds the lock and removes the file, or has removed it; another name is taken
        os.close(fd)
    raise ExportArgumentError(f"cannot create a temporary file in {target.parent}")


def _names_file_of(path: Path, fd: int) -> bool:
    """Return True if ``path`` names the file open as ``fd`` (not one removed, or made anew)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


class _LockCheck(enum.Enum):
    """Whether another process holds the ``flock`` of an export's temporary file."""

    HELD = "held"  #: an export (alive) holds it: it is writing the file
    NOT_HELD = "not held"  #: no process holds it (now held by the checking descriptor)
    CANNOT_TELL = "cannot tell"  #: no ``flock`` here (Windows, some network or FUSE mounts)


def _take_lock(fd: int) -> _LockCheck:
    """Try to lock the file open as ``fd`` (exclusive ``flock``, without waiting).

    Returns
    -------
    _LockCheck
        ``NOT_HELD`` when the lock was free: ``fd`` holds it now, until it is closed.
    """
    if fcntl is None:
        return _LockCheck.CANNOT_TELL
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _LockCheck.HELD
    except OSError:  # ENOLCK, EINVAL...: the file system has no locks
        return _LockCheck.CANNOT_TELL
    return _LockCheck.NOT_HELD


def _remove_abandoned(target: Path) -> None:
    """Remove the temporary files of exports to ``target`` that were killed (``SIGKILL``).

    Those that no export holds locked (see :func:`_reserve_temporary`) and that were left
    untouched for :data:`_ABANDONED_AFTER_SECONDS`: a running export holds its lock, and a
    file just created is about to be locked. Nothing is removed without ``flock``.
    """
    _remove_temporaries(target, untouched_for=_ABANDONED_AFTER_SECONDS,
                        if_cannot_tell=False)


def remove_unheld_temporaries(target: str | os.PathLike[str]) -> None:
    """Remove the temporary files of exports to ``target`` that no running export holds.

    For a process that knows an export to ``target`` died (``pims-video batch`` after a
    worker was killed): its file goes at once, while the files that other exports to
    ``target`` hold locked are kept. Where locks cannot tell (Windows, file systems without
    ``flock``), every temporary file of ``target`` is removed.

    Parameters
    ----------
    target : str or path-like
        The video file the export was writing.
    """
    _remove_temporaries(Path(target), untouched_for=0, if_cannot_tell=True)


def _remove_temporaries(target: Path, untouched_for: float, if_cannot_tell: bool) -> None:
    """Remove the temporary files of ``target`` that no export holds locked.

    Only those left untouched for ``untouched_for`` seconds; where the lock cannot tell,
    only if ``if_cannot_tell``.

    The age is checked before the lock is tried: trying it on a file just created would
    make its export, locking it a moment later, give it up for another one
    (:func:`_reserve_temporary`).
    """
    for path in temporaries_of(target):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # gone meanwhile, or not ours to read
            continue
        try:
            if time.time() - os.fstat(fd).st_mtime < untouched_for:
                continue
            lock = _take_lock(fd)
            if lock is _LockCheck.NOT_HELD or (lock is _LockCheck.CANNOT_TELL and if_cannot_tell):
                path.unlink(missing_ok=True)
        except OSError:  # not ours to remove
            continue
        finally:
            os.close(fd)


def temporaries_of(target: str | os.PathLike[str]) -> list[Path]:
    """Return the temporary files of exports to ``target`` still beside it.

    :func:`to_video` removes its own, except when its process is killed (``SIGKILL``, the
    out-of-memory killer, a restarted Jupyter kernel, ``SIGTERM`` that the program does not
    handle): ``pims-video batch`` removes that of a worker that died
    (:func:`remove_unheld_temporaries`), and the next export to ``target`` removes those
    left untouched for a minute by exports that no longer run (not on Windows, nor on file
    systems without ``flock``).

    Parameters
    ----------
    target : str or path-like
        The video file an export was writing.

    Returns
    -------
    list of Path
        The hidden ``.<stem>.tmp-<8 hex digits><extension>`` files beside ``target`` (beside
        the file it points to if it is a symbolic link: where they are written).
    """
    target = Path(target).absolute()
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    pattern = _TEMPORARY.format(glob.escape(_temporary_stem(target)), "[0-9a-f]" * 8,
                                glob.escape(target.suffix))
    return sorted(target.parent.glob(pattern))


def _temporary_stem(target: Path) -> str:
    """Return the stem of ``target``, shortened so that its temporary name fits 255 bytes."""
    room = NAME_MAX - len(os.fsencode(_TEMPORARY.format("", "0" * 8, target.suffix)))
    return shortened_to(target.stem, room)


def _move_into_place(tmp_name: str, target: Path, overwrite: bool) -> None:
    """Give the finished video its name; without ``overwrite``, never replace a file.

    A file that appeared at ``target`` while the video was encoded is kept: the name is
    taken with a hard link, which fails if it exists (where the file system has no hard
    links, a last check precedes the rename). The caller removes ``tmp_name`` on error.
    """
    if overwrite:
        os.replace(tmp_name, target)
        return
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        pass
    except OSError:  # no hard links here (FAT, some network file systems)
        if not target.exists():
            os.replace(tmp_name, target)
            return
    else:
        os.unlink(tmp_name)
        return
    raise ExportArgumentError(f"{target} was created while the video was encoded; kept as it "
                              "is (pass overwrite=True to replace it)")


# ---- intensity and colour ---------------------------------------------------------------


def _contrast_limits(contrast: Any) -> tuple[float, float] | list[tuple[float, float]] | None:
    """Return a fixed contrast: ``(lo, hi)``, or a list of them (one per channel).

    None for the settings None, ``"auto"`` and ``"frame"``.

    Raises
    ------
    ExportArgumentError
        For any other value, or limits that are not finite numbers with ``lo <= hi``.
    """
    if contrast is None or (isinstance(contrast, str) and contrast in ("auto", "frame")):
        return None
    items = _items(contrast)
    if items is not None and len(items) == 2 and all(np.isscalar(v) for v in items):
        return IntensityMap.fixed(np.dtype(np.float64), *items).limits
    pairs = [] if items is None else [_items(v) for v in items]
    if not pairs or any(pair is None or len(pair) != 2 for pair in pairs):
        raise ExportArgumentError(
            f"contrast must be 'auto', 'frame', None, (lo, hi) or a list of (lo, hi); "
            f"got {shown(contrast)}"
        )
    return [IntensityMap.fixed(np.dtype(np.float64), *pair).limits for pair in pairs]


def _items(value: Any) -> list[Any] | None:
    """Return the items of a list, tuple or array (of at least one axis), else None."""
    if isinstance(value, list | tuple) or (isinstance(value, np.ndarray) and value.ndim > 0):
        return list(value)
    return None


def _channel_contrasts(contrast: Any, n_channels: int) -> list[Any]:
    """Return one contrast setting per channel: None, ``"auto"``, ``"frame"`` or (lo, hi)."""
    limits = _contrast_limits(contrast)
    if limits is None:
        return [contrast] * n_channels
    if isinstance(limits, tuple):
        return [limits] * n_channels
    if len(limits) != n_channels:
        raise ExportArgumentError(
            f"contrast must be (lo, hi) or one (lo, hi) per channel ({n_channels}), "
            f"got {shown(contrast)}"
        )
    return limits


def _intensity_map(
    dtype: np.dtype, contrast: Any, samples, percentiles, gamma: float, keep_16bit: bool
) -> IntensityMap:
    """Build the intensity mapping of one channel (rules in :func:`to_video`)."""
    if dtype.kind == "b" and (contrast is None or isinstance(contrast, str)):
        return IntensityMap.fixed(dtype, 0, 1)
    unscaled = contrast is None or (isinstance(contrast, str) and contrast == "auto")
    native = dtype == np.uint8 or (keep_16bit and dtype == np.uint16)
    if unscaled and native and gamma == 1:
        return IntensityMap.passthrough(dtype)
    if unscaled and dtype == np.uint8:
        return IntensityMap.fixed(dtype, 0, 255, gamma)
    if contrast is None:
        raise ExportArgumentError(
            f"contrast=None sends values unscaled: possible for uint8 data, or uint16 with "
            f"lossless=True (ffv1, gray, gamma 1); not for {dtype} here. Use 'auto' or (lo, hi)"
        )
    if isinstance(contrast, str) and contrast == "frame":
        return IntensityMap.per_frame(dtype, percentiles, gamma)
    if isinstance(contrast, str):
        return IntensityMap.fixed(dtype, *display_limits(samples(), percentiles), gamma)
    return IntensityMap.fixed(dtype, *contrast, gamma)


def _color_list(colors: Any) -> list[Any] | None:
    """Return ``channel_colors`` as a list (None stays None).

    Raises
    ------
    ExportArgumentError
        Unless ``colors`` is None or an iterable of colours (not one string).
    """
    if colors is None:
        return None
    if isinstance(colors, str) or not isinstance(colors, Iterable):
        raise ExportArgumentError(
            f"channel_colors must be a list of one colour per channel, not {shown(colors)}"
        )
    return list(colors)


def _gray(colors: list[Any] | None) -> bool:
    """Return True when ``channel_colors`` (a list, or None) leave one channel gray."""
    return colors is None or (
        len(colors) == 1 and isinstance(colors[0], str) and colors[0].lower() in _GRAY
    )


def _gray_colormap(colormap: Any) -> bool:
    """Return True when ``colormap`` leaves a single channel gray (None, ``"gray"``)."""
    return colormap is None or _gray([colormap])


class _Renderer:
    """Turns a canonical frame into the bytes ffmpeg reads (gray, gray16le or rgb24).

    ``colors`` is the list of channel colours (:func:`_color_list`), or None.
    """

    def __init__(
        self, maps: list[IntensityMap], channels: bool, colormap, colors: list[Any] | None
    ) -> None:
        self.maps = maps
        self.channels = channels
        self.lut = None if _gray_colormap(colormap) else channel_lut(colormap)
        self.compositor = None
        gray_channel = channels and len(maps) == 1 and _gray(colors)
        if channels and not gray_channel:  # a composite (channel colours on every channel)
            if colormap is not None:
                raise ExportArgumentError("colormap is for one channel: use channel_colors")
            colors = default_channel_colors(len(maps)) if colors is None else colors
            if len(colors) != len(maps):
                raise ExportArgumentError(
                    f"{counted(len(colors), 'colour')} given by channel_colors for "
                    f"{counted(len(maps), 'channel')}"
                )
            self.compositor = Compositor(colors)
        elif colors is not None and not gray_channel:
            raise ExportArgumentError(
                "channel_colors needs frames with a channel axis; colour frames of one "
                "channel with colormap (e.g. 'green', 'viridis')"
            )
        passthrough = all(m.mode == "pass" for m in maps)
        rgb_stack = self.compositor is not None and self.compositor.stack_order == (0, 1, 2)
        self.direct_rgb = passthrough and rgb_stack
        if self.compositor is not None or self.lut is not None:
            self.pixel_format = "rgb24"
        else:
            self.pixel_format = "gray16le" if maps[0].output_dtype == np.uint16 else "gray"

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.direct_rgb:
            return frame
        if self.compositor is None:  # one plane: gray, or coloured by the colormap
            values = frame[..., 0] if self.channels else frame
            plane = self.maps[0](values)
            if self.lut is None:
                return plane  # NaN is level 0: black
            return apply_lut(self.lut, plane, _nan_pixels(values, self.lut))
        channels = [frame[..., c] for c in range(len(self.maps))]
        return self.compositor(
            [m(values) for m, values in zip(self.maps, channels, strict=True)],
            [_nan_pixels(values, lut) for values, lut in
             zip(channels, self.compositor.luts, strict=True)],
        )


def _nan_pixels(values: np.ndarray, lut: np.ndarray) -> np.ndarray | None:
    """Return where float ``values`` are NaN, to be drawn black; None when nothing to do.

    NaN is mapped to the level 0, which ``lut`` colours black already when its first colour
    is black (gray, ramps from black): None then, as for data that cannot hold NaN.
    """
    if values.dtype.kind != "f" or not lut[0].any():
        return None
    return np.isnan(values)


# ---- the export ---------------------------------------------------------------------------


def to_video(
    frames: Any,
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    codec: str | None = None,
    lossless: bool = False,
    crf: float | None = None,
    preset: str | None = None,
    contrast: Any = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    gamma: float = 1.0,
    colormap: Any = None,
    channel_axis: int | str | None = None,
    channel_colors: Sequence[Any] | None = None,
    projection: str | None = None,
    projection_axis: int | str | None = None,
    scale: float = 1,
    extra_args: Sequence[str] = (),
    overwrite: bool = True,
    progress: bool = True,
) -> VideoResult:
    """Write frames to a video file by piping them to ffmpeg.

    Every input frame becomes exactly one video frame. The file is written to a temporary
    file beside ``path`` and renamed only when ffmpeg succeeded: on any error (a bad frame,
    ffmpeg failing, Ctrl-C) ffmpeg is stopped, the temporary file removed and an existing
    file at ``path`` left untouched. A process killed outright (``SIGKILL``, a restarted
    Jupyter kernel, or ``SIGTERM`` where the program does not handle it, as ``pims-video``
    does) leaves its hidden temporary file; the next export to ``path`` removes it once it
    is a minute old (see :func:`temporaries_of`).

    Parameters
    ----------
    frames : pims reader, array or iterable
        - any pims reader, or a lazy slice of one (``reader[10:50:2]``): its ``iter_axes``
          give the frames, even when the reader also has ``ndim``/``shape``/``dtype``. For
          N-D readers the bundled axes (named by each frame's ``metadata['axes']``) must be
          ``y``, ``x``, optionally ``c`` (channels) or ``s`` (RGB samples, shown as
          colours), and one more axis to project
          (``projection``); ``channel_axis``/``projection_axis`` are axis letters (or
          integers counting in each frame).
        - a numpy or dask array ``(T, Y, X)`` or ``(T, Y, X, C)``; ``(T, Z, Y, X)`` with
          ``projection``. Axis numbers count in the array (0 is time). Dask arrays are
          computed one chunk at a time.
        - any iterable or generator of 2-D or 3-D arrays (axis numbers count in each frame;
          length unknown: no progress total).
        - numpy masked arrays only without masked values (ExportArgumentError otherwise:
          fill them, e.g. ``frames.filled(np.nan)`` for float data, drawn black).

        Channels: without ``channel_axis``, a 3-D frame's last axis holds channels when it is
        the only axis of size 1 to 4 (RGB(A), few-channel images); any other 3-D shape must
        say ``channel_axis`` or ``projection``. With ``projection`` and no axes given, the
        first frame axis of a 3-D frame is projected. Alpha is not shown: the last of 2 or 4
        RGB samples (``s``), and the 4th value of a uint8 last axis found this way (RGBA),
        are dropped; ``channel_axis=-1`` makes such 4 values a 4-channel composite instead.
    path : str or path-like
        Output file (not ending in a separator: that names a folder); its extension picks
        the format: ``.mp4`` H.264 (default), ``.mkv``,
        ``.avi``, ``.webm`` VP9, ``.mov`` ProRes, ``.gif``.
    fps : float, optional
        Frame rate. Default: the reader's ``frame_rate``, else ``1 / metadata
        ['frame_interval']`` (seconds), so that movie time is real time; else 10. An N-D
        reader gives its rate only when it iterates over ``t`` alone (``iter_axes`` ``z``
        or ``tz`` make 10 fps movies, not one frame per frame interval). A lazy
        slice ``reader[a:b:n]`` plays at its reader's rate (a step ``n`` makes the movie n
        times faster than real time). A slow time-lapse (one frame per 10 s) thus gives a
        0.1 fps movie: pass ``fps`` (e.g. 10) to play it faster. Containers time frames
        to a millisecond (``.mkv``, ``.webm``, ``.avi``: at most 1000 fps) or a hundredth
        of a second (``.gif``: one frame per 655.35 s, 0.0015259 fps, at the slowest, and
        50 fps at the fastest, since browsers and most viewers show frames of 0.01 s for
        0.1 s); ``.mp4`` and ``.mov`` take up to 10^6 fps; the slowest rate is 1/10000 fps.
    codec : str, optional
        ffmpeg encoder the container takes: ``.mp4`` libx264/libx265; ``.mkv``
        libx264/libx265/ffv1/libvpx-vp9/prores_ks; ``.avi`` libx264/ffv1; ``.webm``
        libvpx-vp9; ``.mov`` prores_ks/libx264/libx265; ``.gif`` gif.
    lossless : bool
        Write ffv1 (``.mkv``/``.avi``): bit-exact; uint8 and uint16 gray data (no
        ``colormap`` or a gray one; also one channel shown gray, frames ``(Y, X, 1)``) are
        stored unscaled (gray, gray16le)
        unless ``contrast`` is a fixed range or ``"frame"``, or ``gamma`` is not 1 (then
        mapped to 8 bits like any other data).
    crf : float, optional
        Quality for libx264 (default 18), libx265 (22), VP9 (30); lower is better.
    preset : str, optional
        x264/x265 speed preset (default ``"medium"``).
    contrast : "auto", "frame", None, (lo, hi) or list of (lo, hi)
        ``"auto"``: one range for the whole movie, the ``percentiles`` of up to 50 evenly
        spaced frames (the first 50 of an iterable; at most 256 MiB of them, fewer frames
        when they are large); uint8 data are not scaled. ``(lo, hi)``
        fixed (one per channel allowed). ``"frame"``: each frame on its own (flickers).
        NaN pixels are black whatever the ``colormap`` (in a composite, a channel adds
        nothing where it is NaN); ``-inf`` and ``+inf`` are the lowest and highest values
        (the colormap's first and last colours: black and white in gray). With ``"auto"``
        and ``"frame"``, values without a finite one are given the range ``(0, 0)``.
        None: no scaling (uint8; uint16 with ``lossless``). Bool data are the numbers 0
        and 1: a fixed ``(lo, hi)`` maps them as such; with the other settings False is
        black and True white (0/255).
    percentiles : (float, float)
        Low and high percentiles for ``"auto"`` and ``"frame"``; default (0.1, 99.9).
    gamma : float
        Display gamma: ``255 * t ** gamma`` of the scaled value ``t`` in [0, 1].
    colormap : str, cmap.Colormap, colour or (256, 3) array, optional
        Colour single-channel frames with a colormap (``"viridis"``, ``"magma"``...) or a
        colour, as a ramp from black (``"orange"``, ``"#ff8800"``, ``(1.0, 0.5, 0.0)``): what
        ``channel_colors`` takes for one channel; NaN stays black. Gray (no colormap,
        ``"gray"`` or ``"grey"``) stays gray: sent to ffmpeg as one byte per pixel (two
        with ``lossless``, see there).
    channel_axis : int or str, optional
        The channel axis (see ``frames``).
    channel_colors : sequence, optional
        One colour or colormap per channel; default 1: gray, 2: green/magenta,
        3: red/green/blue, 4-7: + gray, cyan, magenta, yellow. Channels are added.
    projection : {"max", "mean"}, optional
        Project every frame over ``projection_axis`` (e.g. a max projection over z). The
        max ignores NaN, as ImageJ's does (NaN only where every plane is NaN); the mean does
        not. The mean is computed in float32 for data of up to 16 bits and float32 data, in
        float64 for wider data (float64, 32- and 64-bit integers).
    projection_axis : int or str, optional
        Axis to project (see ``frames``).
    scale : int or float
        Integer ``n >= 1``: n x n nearest-neighbour up-scaling. ``1/n`` (0.5, 0.25...):
        n x n block means (the last ``size % n`` rows/columns are dropped).
    extra_args : sequence of str
        More ffmpeg output options (they override ours). They must keep every frame and the
        container. Refused before any frame is read (ExportArgumentError; choose the frames
        in the input, ``frames[a:b:n]``, and the rate with ``fps``): ``-frames``,
        ``-vframes``, ``-t``, ``-to``, ``-ss``, ``-r`` (for video or all streams:
        ``-frames:v``, ``-r:v``...) and the filters ``select``, ``fps``, ``framestep`` and
        ``trim`` in ``-vf`` or ``-filter:v``. Other options that cut, drop or add frames,
        or write no file, fail after encoding (FFmpegError; the target is untouched).
    overwrite : bool
        Replace an existing ``path`` (only once the new video is complete). A symbolic link
        is kept and the file it points to replaced; a link to nothing is refused.
    progress : bool
        Show a tqdm progress bar (notebook-aware) when the number of frames is known.

    Returns
    -------
    VideoResult
        Path, frame count, fps, size, codec, pixel format, intensity range, padding.
        A GIF plays at ``fps`` on average: its frame delays are whole hundredths of a
        second, rounded from the frame times, so they alternate where the rate needs it
        (30 fps: 0.03, 0.04, 0.03 s...) and the movie lasts ``n_frames / fps`` seconds to
        a hundredth.
        Odd sizes for yuv420p/yuv422p, and frames under 32 x 32 for libx265, are padded
        with black at the bottom/right, never stretched: pixel (y, x) of a frame stays at
        (y, x).

    Raises
    ------
    ExportArgumentError
        Before ffmpeg starts: unknown extension or codec, empty input, ``fps <= 0``, a
        frame rate the container cannot time (over 1000 fps for ``.mkv``, ``.webm`` and
        ``.avi``, 50 for ``.gif``, 10^6 for ``.mp4``/``.mov``; under 1/10000 fps, and
        under 1/655.35 fps for ``.gif``), a path ending in a separator, a missing or
        unwritable folder, a file name over 255 bytes, an existing file with
        ``overwrite=False``, a symbolic link to nothing, frames of an unsupported dtype
        (complex, object...) or shape, frames larger than ffmpeg reads or encodes (any
        codec: ``(width + 128) x (height + 128)`` under 2^28 pixels, 16255 x 16255 for a
        square) or than the codec or container stores (after scaling and padding: libx264
        16384 pixels a side, VP9 65536, ProRes, ``.gif``, ``.mp4``, ``.mov`` and ``.avi``
        65535), inconsistent
        options, ``extra_args`` that change the number of frames (listed above). During the
        export: a frame whose shape or dtype differs from the first one, or with masked
        values. At the end, with ``overwrite=False``: a file created at ``path`` while
        encoding (it is kept).
    FFmpegError
        ffmpeg failed, or ``extra_args`` made it encode another number of frames than the
        input's or write no file (``-vf tpad=...``, ``-f null``...); the error carries
        the command and the end of ffmpeg's messages. Also when no ffmpeg binary is found
        (install ffmpeg, or set ``IMAGEIO_FFMPEG_EXE``).
    """
    target = _file_path(path)
    percentiles = _percentile_pair(percentiles)  # once: they may be a generator
    extra_args = _ffmpeg.check_extra_args(extra_args)  # (also these)
    factor, chosen, rate = check_arguments(
        target.suffix, frames, fps=fps, codec=codec, lossless=lossless, crf=crf, preset=preset,
        contrast=contrast, percentiles=percentiles, gamma=gamma, colormap=colormap,
        channel_colors=channel_colors, projection=projection, scale=scale, extra_args=extra_args,
    )
    given, target = _prepare_target(target, overwrite)
    # reserved before any frame is read: an unwritable folder fails at once
    tmp_name, lock = _reserve_temporary(target)
    try:
        source = FrameSource(frames)
        layout = frame_layout(source, channel_axis, projection, projection_axis)
        sample_cache: list[np.ndarray] = []

        def samples() -> list[np.ndarray]:
            if not sample_cache:
                sample_cache.extend(source.sample(layout))
            return sample_cache

        first = layout(source.first)
        _ffmpeg.check_picture_size(*first.shape[:2], encoded=False)
        channels = first.ndim == 3
        n_channels = first.shape[2] if channels else 1
        colors = _color_list(channel_colors)
        one_gray_plane = not channels or (n_channels == 1 and _gray(colors))
        keep_16bit = (chosen == _ffmpeg.LOSSLESS_CODEC and one_gray_plane
                      and _gray_colormap(colormap))
        maps = [
            _intensity_map(
                first.dtype,
                setting,
                (lambda c=c: [f[..., c] for f in samples()]) if channels else samples,
                percentiles,
                gamma,
                keep_16bit,
            )
            for c, setting in enumerate(_channel_contrasts(contrast, n_channels))
        ]
        sample_cache.clear()  # the contrast is set: the sampled frames are not kept encoding
        render = _Renderer(maps, channels, colormap, colors)
        out_pixel_format = _ffmpeg.output_pixel_format(chosen, render.pixel_format)
        height, width = first.shape[:2]
        scaled = (int(height * factor), int(width * factor))
        if min(scaled) < 1:
            raise ExportArgumentError(
                f"scale={scale} leaves no pixel of {width}x{height} frames"
            )
        padded = _ffmpeg.padded_size(chosen, out_pixel_format, *scaled)
        _ffmpeg.check_frame_size(target.suffix, chosen, *padded)
        command = _ffmpeg.build_command(
            ffmpeg=_ffmpeg.ffmpeg_exe(),
            output=tmp_name,
            width=width,
            height=height,
            input_pixel_format=render.pixel_format,
            fps=rate,
            codec=chosen,
            output_pixel_format=out_pixel_format,
            scale=factor,
            padded_size=padded,
            crf=crf,
            preset=preset,
            extra_args=extra_args,
        )
        frame_bytes = width * height * _BYTES_PER_PIXEL[render.pixel_format]
        n_frames = _encode(command, source, layout, render, progress, frame_bytes)
        _move_into_place(tmp_name, target, overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    ranges = [m.limits for m in maps]
    return VideoResult(
        path=given,
        n_frames=n_frames,
        fps=float(rate),
        width=padded[1],
        height=padded[0],
        codec=chosen,
        pixel_format=out_pixel_format,
        intensity_range=ranges if channels else ranges[0],
        padding=(padded[0] - scaled[0], padded[1] - scaled[1]),
    )


def _encode(
    command: list[str],
    source: FrameSource,
    layout: FrameLayout,
    render: _Renderer,
    progress: bool,
    frame_bytes: int,
) -> int:
    """Run ffmpeg on every frame of ``source``; return the number of frames written.

    Raises
    ------
    FFmpegError
        If ffmpeg fails, or (through ``extra_args``) encodes another number of frames than
        it was sent or writes nothing to its file.
    """
    bar = None
    if progress and source.length is not None:
        from tqdm import TqdmWarning

        with warnings.catch_warnings():  # no ipywidgets in Jupyter: the text bar is fine
            warnings.simplefilter("ignore", TqdmWarning)
            from tqdm.auto import tqdm

        bar = tqdm(total=source.length, unit="frame", desc="to_video")
    n_frames = 0
    try:
        with _ffmpeg.FFmpegProcess(command, pipe_bytes=frame_bytes) as proc:
            for raw in source:
                try:
                    frame = render(layout(raw))
                except ExportArgumentError as exc:
                    raise ExportArgumentError(f"frame {n_frames}: {exc}") from None
                proc.write(np.ascontiguousarray(frame))
                n_frames += 1
                if bar is not None:
                    bar.update()
            proc.finish()
            if proc.frames_encoded is None:
                raise FFmpegError("ffmpeg did not report how many frames it encoded: "
                                  "extra_args must not redirect -progress", command, 0,
                                  proc.stderr_tail)
            if proc.frames_encoded != n_frames:
                raise FFmpegError(
                    f"ffmpeg wrote {counted(proc.frames_encoded, 'frame')} of the "
                    f"{n_frames} sent: "
                    f"extra_args must not cut, drop or add frames",
                    command, 0, proc.stderr_tail,
                )
    finally:
        if bar is not None:
            bar.close()
    if os.path.getsize(command[-1]) == 0:
        raise FFmpegError("ffmpeg wrote nothing to the file: extra_args must not change the "
                          "output format ('-f')", command, 0)
    return n_frames
