"""Start-up hook of pims-videoutils: wrap ``pims.open`` when pims is imported.

pims finds readers only among classes that are already imported. This module is imported at
every interpreter start-up by the one-line ``pims_videoutils-autoload.pth`` file that the
package installs into site-packages. It only puts a small finder on :data:`sys.meta_path` that
waits for ``import pims``. Right after pims's own module has run, it replaces ``pims.open`` (and
``pims.api.open``) by the thin wrapper of :func:`pims_videoutils._open.wrap_pims_open`, which
imports the registered readers at its first call and sends folders and globs of TIFF files to
``TiffSequenceND``. No reader is imported in the middle of someone else's import. Nothing else
is imported at start-up (no numpy, no pims, no :mod:`importlib.metadata`), so interpreters that
never import pims pay almost nothing. Whatever happens while wrapping (``pims_videoutils`` no
longer importable, a pims without ``pims.api``), ``import pims`` succeeds: pims's own ``open``
is kept, with a :class:`RuntimeWarning` saying why.

Set the environment variable ``PIMS_VIDEOUTILS_NO_AUTOLOAD=1`` to switch the hook off (checked
at start-up and again when pims is imported): ``pims.open`` is then left as it is, and our
readers are imported only when used (after which pims, which considers every imported reader
class, picks ``TiffStackND`` for ``.tif`` files).
"""

# No ``from __future__ import annotations``: it imports the __future__ module at start-up.
import os
import sys

DISABLE_VARIABLE = "PIMS_VIDEOUTILS_NO_AUTOLOAD"
_OFF_VALUES = ("", "0", "false", "no", "off")  # values that leave the hook on


def autoload_disabled() -> bool:
    """Tell whether the user switched automatic loading off.

    Returns
    -------
    bool
        True when ``PIMS_VIDEOUTILS_NO_AUTOLOAD`` is set, to anything but ``""``, ``"0"``,
        ``"false"``, ``"no"`` or ``"off"`` (in any case, spaces around ignored).
    """
    return os.environ.get(DISABLE_VARIABLE, "").strip().lower() not in _OFF_VALUES


class _LoaderThenWrap:
    """Wraps pims's loader: runs pims's module, then wraps its ``open``."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def exec_module(self, module) -> None:
        """Execute ``pims`` with its own loader, then replace ``pims.open`` by the wrapper."""
        # pims and everything after it see the real loader, never this wrapper.
        module.__loader__ = module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _remove_finder()
        if autoload_disabled():
            return
        try:
            from pims_videoutils._open import wrap_pims_open

            wrap_pims_open(module)
        except Exception as exc:  # e.g. the package removed but this hook left: pims still imports
            import warnings

            warnings.warn(
                f"pims-videoutils could not wrap pims.open, which stays pims's own "
                f"({type(exc).__name__}: {exc}); its start-up hook {__file__} runs from "
                f"pims_videoutils-autoload.pth in site-packages: reinstall pims-videoutils, "
                f"or delete both files",
                RuntimeWarning,
                stacklevel=2,
            )


class PimsImportFinder:
    """A :data:`sys.meta_path` finder that answers for ``pims`` only, and only once.

    It asks the finders after it for pims's spec and wraps the loader, so that ``pims.open``
    is wrapped as soon as pims's own module has finished executing. A ``find_spec`` probe
    without import leaves the finder in place.
    """

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None):
        """Return pims's spec with a wrapped loader; None for every other module."""
        if fullname != "pims" or cls not in sys.meta_path or autoload_disabled():
            return None
        for finder in sys.meta_path[sys.meta_path.index(cls) + 1 :]:
            find_spec = getattr(finder, "find_spec", None)
            spec = None if find_spec is None else find_spec(fullname, path, target)
            if spec is None:
                continue
            if hasattr(spec.loader, "exec_module"):
                spec.loader = _LoaderThenWrap(spec.loader)
            return spec
        return None


def _remove_finder() -> None:
    """Take the finder off :data:`sys.meta_path` (pims is imported once per process)."""
    if PimsImportFinder in sys.meta_path:
        sys.meta_path.remove(PimsImportFinder)


def install() -> None:
    """Put the finder first on :data:`sys.meta_path`, unless switched off or already there."""
    if autoload_disabled() or PimsImportFinder in sys.meta_path:
        return
    sys.meta_path.insert(0, PimsImportFinder)


install()
