"""Exception and warning types raised by pims-videoutils.

Every error the package raises on purpose derives from :class:`PimsVideoutilsError`, and also
from the built-in exception that fits it, so existing ``except OSError`` / ``except ValueError``
clauses keep working.
"""

from __future__ import annotations

import os
import signal
import struct

_BUILTIN_MALFORMED = (ValueError, IndexError, KeyError, TypeError, AttributeError,
                      struct.error, EOFError, RuntimeError, ArithmeticError, AssertionError,
                      MemoryError)


def __getattr__(name: str):
    """Build ``MALFORMED_TIFF_ERRORS`` at first use: ``import pims_videoutils`` skips tifffile.

    What tifffile (and the codecs under it) raise on malformed files, to be turned into
    :class:`StackReadError`: tifffile's TiffFileError (a ValueError in recent tifffile, a bare
    Exception in older releases, such as those pip installs on Python 3.10); RuntimeError:
    "incompatible keyframe"; ArithmeticError, MemoryError: sizes of 0 or absurd sizes;
    struct.error, EOFError: structures cut short.
    """
    if name != "MALFORMED_TIFF_ERRORS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import tifffile

    value = globals()[name] = (*_BUILTIN_MALFORMED, tifffile.TiffFileError)
    return value


class PimsVideoutilsError(Exception):
    """Base class of every error raised on purpose by pims-videoutils."""


class StackReadError(PimsVideoutilsError, OSError):
    """A file or dataset cannot be read as an image stack.

    Raised for a missing file, a file that is not a TIFF, an empty, truncated or corrupt file,
    a broken IFD chain, pages that contradict each other, or a frame whose bytes lie beyond the
    end of the file.

    Parameters
    ----------
    path : str or os.PathLike
        The file or dataset concerned.
    reason : str
        What is wrong, in words a user can act on.

    Attributes
    ----------
    path : str
        The file or dataset concerned.
    reason : str
        What is wrong.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class StackNotFoundError(StackReadError, FileNotFoundError):
    """The file or dataset does not exist (also a :class:`FileNotFoundError`)."""


class ReaderClosedError(PimsVideoutilsError, ValueError):
    """A reader was used after :meth:`close` (like I/O on a closed file)."""


class ExportArgumentError(PimsVideoutilsError, ValueError):
    """An argument of :func:`~pims_videoutils.to_video` is invalid.

    Raised before ffmpeg starts (unknown codec or extension, empty input, an fps the
    container cannot time, frames of an unsupported shape or dtype, a folder that cannot be
    written, an existing file with ``overwrite=False``, inconsistent options), and during the
    export for a frame whose shape or dtype differs from the first.
    """


class FFmpegError(PimsVideoutilsError, RuntimeError):
    """ffmpeg failed while encoding a video, or could not be started.

    Also raised when no ffmpeg binary is found (imageio-ffmpeg ships none for this platform
    and none is on the system: install ffmpeg, or set ``IMAGEIO_FFMPEG_EXE``) or the binary
    cannot be run; ``command`` is then empty or not run, and ``returncode`` None.

    Parameters
    ----------
    message : str
        What went wrong.
    command : list of str
        The ffmpeg command line that was run (empty when no ffmpeg was found).
    returncode : int or None
        ffmpeg's exit code, or None when it was stopped by us or never started. A non-zero
        code ends the message in words (:attr:`exit_status`); 0 does not (ffmpeg ended
        well, and the message says what is wrong with what it wrote).
    stderr_tail : str
        The last lines ffmpeg wrote to its standard error.

    Attributes
    ----------
    command : list of str
        The ffmpeg command line.
    returncode : int or None
        ffmpeg's exit code (negative: minus the signal that killed it, as ``subprocess``).
    stderr_tail : str
        The last lines of ffmpeg's standard error.
    """

    def __init__(
        self,
        message: str,
        command: list[str] | None = None,
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        self.message = message
        self.command = list(command or [])
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        text = message
        if returncode:
            text += f" ({self.exit_status})"
        if stderr_tail:
            text += "\n--- ffmpeg stderr (last lines) ---\n" + stderr_tail
        super().__init__(text)

    @property
    def exit_status(self) -> str | None:
        """How ffmpeg ended, in words; None when it was stopped by us or never started.

        ``"ffmpeg exit code 1"``, or ``"ffmpeg killed by signal 9 (SIGKILL)"``.
        """
        if self.returncode is None:
            return None
        if self.returncode >= 0:
            return f"ffmpeg exit code {self.returncode}"
        number = -self.returncode
        try:
            return f"ffmpeg killed by signal {number} ({signal.Signals(number).name})"
        except ValueError:  # a signal Python has no name for
            return f"ffmpeg killed by signal {number}"

    def __reduce__(self):
        return (type(self), (self.message, self.command, self.returncode, self.stderr_tail))


class PluginLoadWarning(UserWarning):
    """A reader registered in the ``pims.readers`` entry-point group failed to load."""


class ReaderFallbackWarning(UserWarning):
    """``pims.open`` gave a TIFF file to another reader because ours could not read it.

    The message says why ``TiffStackND`` refused the file (truncated, corrupt, an incomplete
    dataset...), a reason the reader it got instead (often pims's flat ``TiffStack``) may
    only show later, or never.
    """


class IncompleteDatasetWarning(UserWarning):
    """A dataset was opened with part of it gone, and read as what is left.

    Such is the file (or files) of one position of a multi-position Micro-Manager acquisition
    whose other positions' files are not there (a copy of one position, or files lost): it
    reads as that position alone, and ``reader.metadata['missing_positions']`` counts the
    others.
    """
