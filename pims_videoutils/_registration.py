"""Registration of pims readers through the ``pims.readers`` entry-point group.

pims 0.7 chooses a reader for ``pims.open`` among the subclasses of ``FramesSequence`` that
are already imported; it never reads entry points. Any package (ours or another) declares its
readers in the ``pims.readers`` group, for example in ``setup.cfg``::

    [options.entry_points]
    pims.readers =
        TiffStackND = pims_videoutils.readers:TiffStackND

and :func:`load_readers` imports them all. :func:`ensure_readers_loaded` does so once per
process; it is called by ``pims.open`` (wrapped by the start-up hook ``_pims_videoutils_autoload``
when pims is imported, see :func:`pims_videoutils._open.wrap_pims_open`) and by
:func:`pims_videoutils.open`, at their first call: never in the middle of an import, so a reader
module is never loaded while another is half executed.

This module is the only place that knows the group name. It is cheap to import: pims and
:mod:`importlib.metadata` are imported only when readers are loaded.
"""

from __future__ import annotations

import sys
import threading
import warnings
from typing import TYPE_CHECKING

from ._errors import PluginLoadWarning
from ._fork import renew_locks_after_fork

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "pims.readers"

_lock = threading.RLock()
_loaded = False
#: The thread loading the readers, None when none is: a call it makes from inside the loading
#: (a plugin whose import opens a file) returns at once. Another thread waits on ``_lock``; a
#: child forked meanwhile (where that thread does not exist) loads them itself.
_loading_thread: int | None = None


def _renew_locks_after_fork() -> None:
    """In a forked child: a new ``_lock`` (see ``_fork``)."""
    global _lock
    _lock = threading.RLock()


renew_locks_after_fork(sys.modules[__name__])


def reader_entry_points() -> list[EntryPoint]:
    """List the entry points registered in the ``pims.readers`` group.

    Returns
    -------
    list of importlib.metadata.EntryPoint
        One per registered reader, in the order the installed distributions are found. An
        empty list, after a :class:`~pims_videoutils.PluginLoadWarning`, when the installed
        distributions' metadata cannot be read.
    """
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # any installed package's broken metadata must not break pims
        warnings.warn(
            f"could not list the {ENTRY_POINT_GROUP!r} entry points: {type(exc).__name__}: {exc}",
            PluginLoadWarning,
            stacklevel=2,
        )
        return []


def _describe(entry_point: EntryPoint) -> str:
    """Name an entry point and the distribution that declares it, for warnings."""
    dist = entry_point.dist
    origin = f" (from {dist.name} {dist.version})" if dist is not None else ""
    return f"{entry_point.name} = {entry_point.value}{origin}"


def load_readers() -> list[type]:
    """Import every reader registered in the ``pims.readers`` entry-point group.

    Importing a reader class is what makes ``pims.open`` consider it. A plugin that cannot be
    imported, or that does not name a pims reader class, is reported with a
    :class:`~pims_videoutils.PluginLoadWarning` and skipped; it never stops the others.

    Returns
    -------
    list of type
        The reader classes that were loaded.

    Warns
    -----
    PluginLoadWarning
        For each registered reader that fails to import or is not a subclass of
        ``pims.FramesSequence``.
    """
    from pims import FramesSequence

    readers, problems = [], []
    for entry_point in reader_entry_points():
        try:
            reader = entry_point.load()
        except Exception as exc:  # a third-party plugin may fail in any way; report it
            problems.append(f"pims reader {_describe(entry_point)} could not be loaded: "
                            f"{type(exc).__name__}: {exc}")
            continue
        if not (isinstance(reader, type) and issubclass(reader, FramesSequence)):
            problems.append(f"pims reader {_describe(entry_point)} is not a subclass of "
                            f"pims.FramesSequence, so pims.open cannot use it: {reader!r}")
            continue
        readers.append(reader)
    # Warned once every reader is imported: under ``-W error`` the first warning raises, and
    # the good readers must still be loaded for the calls after it.
    for problem in problems:
        warnings.warn(problem, PluginLoadWarning, stacklevel=2)
    return readers


def ensure_readers_loaded() -> None:
    """Run :func:`load_readers` once per process (thread-safe); later calls do nothing.

    Other threads calling meanwhile wait for the readers; a child forked meanwhile loads
    them itself (the thread loading them was not copied into it).

    Warns
    -----
    PluginLoadWarning
        On the first call, for each registered reader that cannot be loaded.
    """
    global _loaded, _loading_thread
    with _lock:
        if _loaded or _loading_thread == threading.get_ident():
            return
        _loading_thread = threading.get_ident()
        try:
            load_readers()
        finally:  # (once: a PluginLoadWarning raised under ``-W error`` is not repeated)
            _loading_thread = None
            _loaded = True
