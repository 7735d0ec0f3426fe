"""The ffmpeg process: choosing the codec, building the command line, running it safely.

Everything but :class:`FFmpegProcess` is a pure function (tested without running ffmpeg).
The binary is always the one bundled with ``imageio-ffmpeg`` (``get_ffmpeg_exe()``).

Codecs by extension (the first one is the default; ``lossless=True`` selects ffv1):

====== ========================================== ==================================
ext    codecs                                     output pixel format
====== ========================================== ==================================
.mp4   libx264, libx265                           yuv420p (plays everywhere)
.mkv   libx264, libx265, ffv1, libvpx-vp9,        yuv420p; ffv1: gray, gray16le or
       prores_ks                                  gbrp (bit-exact)
.avi   libx264, ffv1                              as above
.webm  libvpx-vp9                                 yuv420p
.mov   prores_ks, libx264, libx265                prores: yuv422p10le
.gif   gif                                        pal8 (palette generated per movie)
====== ========================================== ==================================

RGB frames stored as YUV are converted with the BT.709 matrix (limited range) and tagged so,
which every player honours (an untagged file's matrix is guessed from its size).
"""

from __future__ import annotations

import contextlib
import numbers
import os
import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

from ._errors import ExportArgumentError, FFmpegError
from ._wording import shown

__all__ = [
    "CODECS_BY_EXTENSION",
    "FFmpegProcess",
    "build_command",
    "check_extra_args",
    "check_frame_size",
    "check_picture_size",
    "check_quality",
    "choose_codec",
    "ffmpeg_exe",
    "ffv1_slices",
    "output_pixel_format",
    "padded_size",
    "size_multiple",
]

CODECS_BY_EXTENSION: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "libx265"),
    ".mkv": ("libx264", "libx265", "ffv1", "libvpx-vp9", "prores_ks"),
    ".avi": ("libx264", "ffv1"),
    ".webm": ("libvpx-vp9",),
    ".mov": ("prores_ks", "libx264", "libx265"),
    ".gif": ("gif",),
}
LOSSLESS_CODEC = "ffv1"
#: ffv1 refuses a slice whose samples x (bits per sample + 1) x planes exceed this
_FFV1_SLICE_LIMIT = 8 << 24
_FFV1_SAMPLES = {"gray": (8, 1), "gray16le": (16, 1), "gbrp": (8, 3)}  # (bits, planes)
#: Smallest frame side an encoder takes. libx265: ffmpeg's wrapper refuses frames under 16;
#: x265 refuses frames under 32 with a side over 4096 pixels (HEVC level 5+, 32-pixel CTUs)
#: or with its placebo preset ("Cannot open libx265 encoder"), and the bundled x265 aborts
#: (heap corruption) on frames under 32 high and 34 to 48 wide
_MIN_SIZE = {"libx265": 32}
#: Largest frame side (pixels) an encoder, then a container, takes (the bundled ffmpeg refuses
#: larger frames once started: "invalid width x height", "g_w out of range [1..65536]", "GIF
#: does not support resolutions above 65535x65535", "too large for mov/mp4", "dimensions are
#: too big" (AVI); ProRes stores 16-bit sizes and writes an undecodable file)
_MAX_SIDE_CODEC = {"libx264": 16384, "libvpx-vp9": 65536, "gif": 65535, "prores_ks": 65535}
_MAX_SIDE_CONTAINER = {".mp4": 65535, ".mov": 65535, ".avi": 65535}
_DEFAULT_CRF = {"libx264": 18, "libx265": 22, "libvpx-vp9": 30}
_MAX_CRF = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63}
_PRESET_CODECS = ("libx264", "libx265")
_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
#: A line of ffmpeg's ``-progress`` report (``frame=12``, ``speed=1.5x``...)
_PROGRESS_LINE = re.compile(r"[a-z_0-9]+=.*")
#: The frame count of a report, also one written after the first parts of a log message
#: (``[mp4 @ 0x5f] frame=12``: a report is one write, a message several)
_FRAME_COUNT = re.compile(r"(?:^|\] )frame=(\d+)$")
#: ffmpeg output options that cut the movie (by frames or time) or resample its frame rate
_FRAME_COUNT_OPTIONS = frozenset({"-frames", "-vframes", "-t", "-to", "-ss", "-r"})
#: ffmpeg video filters that drop frames or resample the frame rate
_FRAME_COUNT_FILTERS = frozenset({"select", "fps", "framestep", "trim"})
#: The options whose value is a video filter graph (``-filter:v`` too)
_VIDEO_FILTER_OPTIONS = ("-vf", "-filter")
_GIF_PALETTE = "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse"
_BT709 = "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"


def ffmpeg_exe() -> str:
    """Return the path of the ffmpeg binary bundled with imageio-ffmpeg.

    Raises
    ------
    FFmpegError
        If imageio-ffmpeg finds no ffmpeg binary.
    """
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:  # "No ffmpeg exe could be found..."
        raise FFmpegError(str(exc)) from exc


def choose_codec(extension: str, codec: str | None = None, lossless: bool = False) -> str:
    """Return the encoder for a file extension (table in the module docstring).

    Parameters
    ----------
    extension : str
        The output file's extension, with the dot (any case).
    codec : str, optional
        An explicit ffmpeg encoder name; must suit the extension.
    lossless : bool
        Ask for a bit-exact encoding (ffv1, in ``.mkv`` or ``.avi``).

    Raises
    ------
    ExportArgumentError
        For an unknown extension, a codec the container cannot hold, or ``lossless`` with a
        lossy codec or a container without ffv1.
    """
    ext = extension.lower()
    if ext not in CODECS_BY_EXTENSION:
        known = ", ".join(CODECS_BY_EXTENSION)
        raise ExportArgumentError(f"unknown video extension {extension!r}: use one of {known}")
    allowed = CODECS_BY_EXTENSION[ext]
    if lossless:
        if codec not in (None, LOSSLESS_CODEC):
            raise ExportArgumentError(f"lossless=True needs codec ffv1, not {shown(codec)}")
        codec = LOSSLESS_CODEC
    chosen = codec or allowed[0]
    if chosen not in allowed:
        if lossless:
            raise ExportArgumentError(
                f"lossless=True writes ffv1, which {ext} cannot hold: use .mkv or .avi"
            )
        raise ExportArgumentError(
            f"codec {shown(chosen)} cannot be written to {ext}: use one of {', '.join(allowed)}"
        )
    return chosen


def output_pixel_format(codec: str, input_pixel_format: str) -> str:
    """Return the pixel format ``codec`` stores for input in ``input_pixel_format``.

    ffv1 keeps the input exactly (gray, gray16le; RGB as planar gbrp); libx264/x265/VP9
    use yuv420p; ProRes yuv422p10le; GIF a palette (pal8).

    Raises
    ------
    ExportArgumentError
        If 16-bit input (gray16le) is sent to a codec other than ffv1.
    """
    if codec == LOSSLESS_CODEC:
        return "gbrp" if input_pixel_format == "rgb24" else input_pixel_format
    if input_pixel_format == "gray16le":
        raise ExportArgumentError(
            "16-bit frames without contrast scaling (contrast=None) need lossless=True "
            "(ffv1 in .mkv/.avi); use contrast='auto' or (lo, hi) for other formats"
        )
    if codec == "gif":
        return "pal8"
    if codec == "prores_ks":
        return "yuv422p10le"
    return "yuv420p"


def size_multiple(pixel_format: str) -> tuple[int, int]:
    """Return the (height, width) multiples a pixel format needs (chroma subsampling)."""
    if pixel_format.startswith(("yuv420", "yuvj420")):
        return 2, 2
    if pixel_format.startswith(("yuv422", "yuvj422")):
        return 1, 2
    return 1, 1


def padded_size(codec: str, pixel_format: str, height: int, width: int) -> tuple[int, int]:
    """Return the (height, width) that ``codec`` encodes frames of this size at.

    Rounded up to the multiples of the pixel format (:func:`size_multiple`), and to the
    codec's smallest frame (libx265: 32 x 32, see :data:`_MIN_SIZE`).
    """
    my, mx = size_multiple(pixel_format)
    least = _MIN_SIZE.get(codec, 1)
    return max(least, -(-height // my) * my), max(least, -(-width // mx) * mx)


def check_picture_size(height: int, width: int, encoded: bool) -> None:
    """Refuse a picture larger than ffmpeg takes, read or encoded, whatever the codec.

    libavutil's ``av_image_check_size`` refuses pictures of ``8 * (width + 128) *
    (height + 128)`` bytes or more than ``2**31 - 1`` ("Picture size ... is invalid"): at most
    16255 x 16255 pixels for a square, 100000 x 2000 pass.

    Parameters
    ----------
    height, width : int
        The size of the pictures.
    encoded : bool
        True for the frames ffmpeg encodes (scaled and padded), False for those it reads.

    Raises
    ------
    ExportArgumentError
        If ffmpeg would refuse the size.
    """
    if 8 * (width + 128) * (height + 128) >= 2**31 - 1:
        size = f"frames of {shown(width)}x{shown(height)} pixels"
        raise ExportArgumentError(
            (f"{size} (as encoded) are larger than ffmpeg encodes: shrink them (scale)"
             if encoded else f"{size} are larger than ffmpeg reads: crop or bin them first")
            + " ((width + 128) x (height + 128) must be under 2**28 pixels; 16255 x 16255 at "
            "most for a square)"
        )


def check_frame_size(extension: str, codec: str, height: int, width: int) -> None:
    """Refuse frames larger than ffmpeg, ``codec`` or the container of ``extension`` stores.

    ffmpeg itself takes less than 2**28 pixels counted as ``(width + 128) x (height + 128)``
    (:func:`check_picture_size`); libx264 takes at most 16384 pixels a side, libvpx-vp9
    65536, GIF and ProRes 65535, and ``.mp4``, ``.mov`` and ``.avi`` files (any codec)
    65535; ffv1 and x265 in Matroska have no other limit checked here.

    Parameters
    ----------
    extension : str
        The output file's extension, with the dot (any case).
    codec : str
        The encoder.
    height, width : int
        The encoded size (after scaling and padding, :func:`padded_size`).

    Raises
    ------
    ExportArgumentError
        If a side is over the limit.
    """
    check_picture_size(height, width, encoded=True)
    ext = extension.lower()
    for what, limit in [(codec, _MAX_SIDE_CODEC.get(codec)),
                        (f"{ext} files", _MAX_SIDE_CONTAINER.get(ext))]:
        if limit is not None and max(height, width) > limit:
            raise ExportArgumentError(
                f"frames of {width}x{height} pixels (as encoded) are larger than {what} can "
                f"store (at most {limit} pixels a side): shrink them (scale=0.5...) or write "
                f"another format (ffv1 in .mkv has no such limit)"
            )


def ffv1_slices(width: int, height: int, pixel_format: str) -> int | None:
    """Return how many slices ffv1 cuts frames of this size into: 4 where ffv1 allows it.

    ffv1 level 3 cuts a frame into ``v`` rows by ``h`` columns of slices, ``v <= h < 2v``,
    each at least one pixel wide and high (and ``v >= 2`` above 352 x 288 pixels), and
    refuses a slice whose samples times (bits + 1) exceed 2**27. 2 x 2 slices (with 2
    threads) encode twice as fast as one. Frames 1 pixel wide or high take one slice, very
    large frames (above about 31 megapixels for 16-bit gray, 20 for RGB) the fewest slices
    above 4 that ffv1 accepts. None: level 3 cannot slice the frame at all (a frame 1 pixel
    wide and over 288 high, or the reverse); level 1, without slices, encodes it.
    """
    bits, planes = _FFV1_SAMPLES[pixel_format]
    first_rows = 1 if width <= 352 and height <= 288 else 2  # where ffv1 starts to look
    counts = [
        rows * columns
        for rows in range(min(first_rows, height), 32)
        for columns in range(rows, 2 * rows)
        if columns <= width
        and rows <= height
        and -(-width // columns) * -(-height // rows) * (bits + 1) * planes <= _FFV1_SLICE_LIMIT
    ]
    if not counts:
        return None
    return 4 if 4 in counts else min(counts)


def check_quality(codec: str, crf: float | None, preset: str | None) -> None:
    """Check the quality settings ``crf`` and ``preset`` of ``codec``.

    Raises
    ------
    ExportArgumentError
        If ``crf`` or ``preset`` is given for a codec without that setting, or is invalid.
    """
    if crf is not None and codec not in _DEFAULT_CRF:
        raise ExportArgumentError(f"crf does not apply to codec {codec!r}")
    if crf is not None and not (
        isinstance(crf, numbers.Real) and not isinstance(crf, bool) and 0 <= crf <= _MAX_CRF[codec]
    ):
        raise ExportArgumentError(
            f"crf of {codec} must be 0 to {_MAX_CRF[codec]}, not {shown(crf)}"
        )
    if preset is not None and codec not in _PRESET_CODECS:
        raise ExportArgumentError(f"preset only applies to {', '.join(_PRESET_CODECS)}")
    if preset is not None and preset not in _PRESETS:
        raise ExportArgumentError(
            f"invalid preset {shown(preset)} for {codec}: use one of {', '.join(_PRESETS)}"
        )


def check_extra_args(extra_args: Sequence[str]) -> list[str]:
    """Check ffmpeg output options; return them as a list of strings.

    They must be a sequence of arguments (not one string), and must not change the number
    of frames: every input frame is one video frame. Refused are the options of
    :data:`_FRAME_COUNT_OPTIONS` (for video or all streams: ``-frames:v``, ``-r``...) and the
    filters of :data:`_FRAME_COUNT_FILTERS` in a video filter graph (``-vf``, ``-filter:v``).
    Other options that cut, drop or add frames are only found after encoding.

    Returns
    -------
    list of str
        The arguments (read once: a generator may be given).

    Raises
    ------
    ExportArgumentError
        For a string, anything that is not iterable, or an option or filter that changes the
        number of frames.
    """
    if isinstance(extra_args, str | bytes) or not isinstance(extra_args, Iterable):
        raise ExportArgumentError(
            f"extra_args must be a list of ffmpeg arguments, not {extra_args!r}"
        )
    arguments = [str(argument) for argument in extra_args]
    for option, value in zip(arguments, [*arguments[1:], ""], strict=False):  # (no arguments)
        name, _, streams = option.partition(":")
        if streams.startswith(("a", "s", "d", "t")):  # audio, subtitles, data, attachments
            continue
        filters = _filter_names(value) if name in _VIDEO_FILTER_OPTIONS else []
        frame_filters = [f for f in filters if f in _FRAME_COUNT_FILTERS]
        if name in _FRAME_COUNT_OPTIONS:
            what = repr(option)
        elif frame_filters:
            what = f"the filter {frame_filters[0]!r} in {option!r}"
        else:
            continue
        raise ExportArgumentError(
            f"extra_args: {what} can change the number of frames (every input frame is one "
            f"video frame): choose the frames in the input (e.g. frames[10:50:2]) and the "
            f"frame rate with fps"
        )
    return arguments


def _filter_names(graph: str) -> list[str]:
    """Return the names of the filters in an ffmpeg filter graph (``"crop=8:8,fps=5"``).

    Escaped characters and quoted text (filter arguments) are skipped; link labels
    (``[in]``) and instance names (``fps@slow``) are not part of a name.
    """
    unquoted = re.sub(r"'[^']*'", "", re.sub(r"\\.", "", graph))
    names = []
    for chain_part in re.split(r"[,;]", unquoted):
        match = re.match(r"\s*(?:\[[^\]]*\]\s*)*([A-Za-z0-9_]+)", chain_part)
        if match:
            names.append(match[1])
    return names


def _quality_args(
    codec: str,
    crf: float | None,
    preset: str | None,
    size: tuple[int, int],
    pixel_format: str,
) -> list[str]:
    """Return the encoder options of ``codec`` for the quality settings.

    ``size`` (width, height) and ``pixel_format`` are those of the encoded frames (they
    decide the ffv1 slices).

    Raises
    ------
    ExportArgumentError
        As :func:`check_quality`.
    """
    check_quality(codec, crf, preset)
    if codec in _PRESET_CODECS:
        crf_value = _DEFAULT_CRF[codec] if crf is None else crf
        args = ["-preset", preset or "medium", "-crf", f"{crf_value:g}"]
        return args + (["-x265-params", "log-level=error"] if codec == "libx265" else [])
    if codec == "libvpx-vp9":
        crf_value = _DEFAULT_CRF[codec] if crf is None else crf
        return ["-crf", f"{crf_value:g}", "-b:v", "0", "-row-mt", "1"]
    if codec == LOSSLESS_CODEC:
        slices = ffv1_slices(*size, pixel_format)
        level = ["-level", "1"] if slices is None else ["-level", "3", "-slices", str(slices)]
        return [*level, "-threads", "2", "-g", "1"]
    if codec == "prores_ks":
        return ["-profile:v", "3"]
    return []


def _filters(
    width: int,
    height: int,
    scale: int | Fraction,
    padded: tuple[int, int],
    codec: str,
    rgb_to_yuv: bool = False,
) -> str:
    """Return the ``-vf`` filter chain: cropping and scaling, padding, YUV or GIF palette.

    Down-scaling by 1/n first drops the last ``width % n`` columns and ``height % n`` rows,
    so every output pixel is the mean of one n x n block. ``rgb_to_yuv``: RGB frames stored
    as YUV (the encoder's pixel format, also one given in ``extra_args``) are converted with
    the BT.709 matrix in limited range and tagged so: players guess the matrix of an
    untagged file from its size (BT.709 for HD, where ffmpeg's default BT.601 turned pure
    green into (0, 215, 0)). Gray needs no matrix.
    """
    parts = []
    if scale < 1:
        n = round(1 / scale)
        cropped = (width // n * n, height // n * n)
        if cropped != (width, height):
            parts.append(f"crop={cropped[0]}:{cropped[1]}:0:0")
    if scale != 1:
        flags = "neighbor" if scale > 1 else "area"
        parts.append(f"scale={int(width * scale)}:{int(height * scale)}:flags={flags}")
    if padded != (int(height * scale), int(width * scale)):
        parts.append(f"pad={padded[1]}:{padded[0]}:0:0:black")
    if rgb_to_yuv:
        parts.append(f"scale=out_color_matrix=bt709:out_range=tv,{_BT709}")
    if codec == "gif":
        parts.append(_GIF_PALETTE)
    return ",".join(parts)


def build_command(
    *,
    ffmpeg: str,
    output: str | os.PathLike[str],
    width: int,
    height: int,
    input_pixel_format: str,
    fps: Fraction,
    codec: str,
    output_pixel_format: str,
    scale: int | Fraction = 1,
    padded_size: tuple[int, int] | None = None,
    crf: float | None = None,
    preset: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Build the ffmpeg command reading raw frames on stdin and writing ``output``.

    Every input frame becomes exactly one output frame: constant input rate ``-r fps``
    and ``-fps_mode passthrough`` (no frame dropped or duplicated). ffmpeg reports its
    progress on stderr (``-progress pipe:2``), for :attr:`FFmpegProcess.frames_encoded`.

    Parameters
    ----------
    ffmpeg : str
        The ffmpeg binary.
    output : path-like
        The file ffmpeg writes (overwritten); its extension picks the container.
    width, height : int
        Size of the raw input frames.
    input_pixel_format : {"gray", "gray16le", "rgb24"}
        Layout of the raw input frames.
    fps : Fraction
        Frame rate.
    codec, output_pixel_format : str
        From :func:`choose_codec` and :func:`output_pixel_format`.
    scale : int or Fraction
        Integer up-scaling (nearest neighbour) or 1/n down-scaling (area average).
    padded_size : (int, int), optional
        (height, width) after scaling and padding (black at the bottom and right).
    crf, preset : optional
        Quality settings (defaults: crf 18 for libx264, preset "medium").
    extra_args : sequence of str
        More output options, placed last before the file name (they override ours).

    Returns
    -------
    list of str

    Raises
    ------
    ExportArgumentError
        If ``crf``/``preset`` do not apply to ``codec`` or are out of its range, or
        ``extra_args`` is not a sequence of arguments.
    """
    scaled = (int(height * scale), int(width * scale))
    encoded = padded_size or scaled
    yuv = input_pixel_format == "rgb24" and output_pixel_format.startswith("yuv")
    vf = _filters(width, height, scale, encoded, codec, yuv)
    rate = f"{fps.numerator}/{fps.denominator}"
    # level+: every message says its level ("[error] ..."), so the cause can be picked out;
    # -progress: "key=value" lines, the last "frame=" the number of frames encoded
    command = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+warning"]
    command += ["-progress", "pipe:2"]
    command += ["-f", "rawvideo", "-pix_fmt", input_pixel_format, "-s", f"{width}x{height}"]
    command += ["-r", rate, "-i", "pipe:0", "-an"]
    if vf:
        command += ["-vf", vf]
    arguments = check_extra_args(extra_args)
    quality = _quality_args(codec, crf, preset, encoded[::-1], output_pixel_format)
    command += ["-c:v", codec, *quality]
    command += ["-pix_fmt", output_pixel_format, "-fps_mode", "passthrough"]
    if os.fspath(output).lower().endswith((".mp4", ".mov")):
        command += ["-movflags", "+faststart"]
    command += [*arguments, "-y", os.fspath(output)]
    return command


class FFmpegProcess:
    """A running ffmpeg reading frames from its stdin; a context manager.

    Its stderr is drained continuously by a thread (a full pipe would stall ffmpeg), keeping
    the last lines for error messages, and the frame count of its progress reports
    (:attr:`frames_encoded`). Leaving the ``with`` block on an exception (including
    KeyboardInterrupt) kills ffmpeg and waits for it; :meth:`finish` ends a normal run and
    checks the exit code.

    Parameters
    ----------
    command : list of str
        From :func:`build_command`.
    tail_lines : int
        Number of stderr lines kept.
    pipe_bytes : int, optional
        Grow the stdin pipe towards this size (Linux; capped by the system's maximum), so
        ffmpeg reads a whole frame at once instead of 64 KiB at a time.

    Raises
    ------
    FFmpegError
        If the binary cannot be started.
    """

    def __init__(
        self, command: Sequence[str], tail_lines: int = 40, pipe_bytes: int | None = None
    ) -> None:
        self.command = list(command)
        self._tail: deque[str] = deque(maxlen=tail_lines)
        #: Frames ffmpeg encoded so far, from its ``-progress`` reports (None before any)
        self.frames_encoded: int | None = None
        try:
            # Ctrl-C inside Popen, after the fork, would leave ffmpeg running unseen
            with _ctrl_c_held_back():
                self._proc = subprocess.Popen(
                    self.command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            if pipe_bytes:
                _grow_pipe(self._proc.stdin, pipe_bytes)
            self._thread = threading.Thread(target=self._drain, name="ffmpeg-stderr", daemon=True)
            self._thread.start()
        except OSError as exc:  # from Popen: the binary cannot be started
            raise FFmpegError(f"cannot start ffmpeg: {exc}", self.command) from exc
        except BaseException:  # e.g. Ctrl-C: an orphaned ffmpeg would write its file later
            if hasattr(self, "_proc"):  # (a Ctrl-C held back during Popen comes after it)
                self._proc.kill()
                self._proc.stdin.close()
                self._proc.wait()
                self._proc.stderr.close()
            raise

    def _drain(self) -> None:
        """Read ffmpeg's stderr until it closes, keeping the last lines.

        The ``key=value`` lines of ``-progress`` are not kept: their ``frame=`` sets
        :attr:`frames_encoded` (log messages start with their level, ``[warning]``, or
        context; a report written after a message's context still counts). Also
        ends quietly when the pipe was closed before this thread first read it: a Ctrl-C
        while ``start()`` waited for the thread killed ffmpeg and closed its pipes.
        """
        with contextlib.suppress(ValueError):  # "readline of closed file"
            for line in iter(self._proc.stderr.readline, b""):
                text = line.decode("utf-8", "replace").rstrip()
                frame_count = _FRAME_COUNT.search(text)
                if frame_count is not None:
                    self.frames_encoded = int(frame_count[1])
                if not _PROGRESS_LINE.fullmatch(text):
                    self._tail.append(text)

    @property
    def stderr_tail(self) -> str:
        """The last lines ffmpeg wrote to stderr so far."""
        return "\n".join(self._tail)

    def write(self, data: memoryview | bytes) -> None:
        """Send the bytes of one frame to ffmpeg.

        Raises
        ------
        FFmpegError
            If ffmpeg stopped reading (it exited; its stderr tail is in the error).
        """
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            self._fail("ffmpeg stopped reading frames")

    def finish(self) -> None:
        """Close ffmpeg's input, wait for it to write the file, check its exit code.

        Raises
        ------
        FFmpegError
            If ffmpeg exits with a non-zero code.
        """
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            self._fail("ffmpeg stopped reading frames")
        self._wait()
        if self._proc.returncode != 0:
            self._fail("ffmpeg failed")

    def _wait(self) -> None:
        """Wait for ffmpeg to exit and for the stderr thread to read everything."""
        self._proc.wait()
        self._thread.join()
        self._proc.stderr.close()

    def _fail(self, message: str) -> None:
        """Stop ffmpeg and raise FFmpegError with its exit code and stderr tail."""
        self.kill()
        raise FFmpegError(message, self.command, self._proc.returncode, self.stderr_tail)

    def kill(self) -> None:
        """Kill ffmpeg if it still runs, close its pipes and wait for it (idempotent)."""
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(BrokenPipeError):  # ffmpeg is gone: unsent bytes are moot
            self._proc.stdin.close()
        self._wait()

    def __enter__(self) -> FFmpegProcess:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._proc.returncode is None:
            self.kill()


@contextlib.contextmanager
def _ctrl_c_held_back() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, then deliver it as it came.

    Only in the main thread (the only one Python delivers signals to), and only when the
    current handler was set from Python (else it could not be put back).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


def _grow_pipe(pipe, size: int) -> None:
    """Ask Linux for a pipe buffer of ``size`` bytes (fewer wake-ups per frame)."""
    try:
        import fcntl
    except ImportError:  # Windows: no pipe sizes to set
        return
    if not hasattr(fcntl, "F_SETPIPE_SZ"):  # not Linux
        return
    with contextlib.suppress(OSError, ValueError):  # an optimisation only: keep the default
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(size, limit))
