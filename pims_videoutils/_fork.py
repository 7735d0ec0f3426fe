"""Fresh locks in forked children: a lock that another thread held at the fork stays held.

``fork`` copies only the thread that calls it, so in the child a lock that another thread held
at that moment (a reader's, while decoding a page; a module's, while opening a file) is never
released: the child's first use of it waited forever. Objects registered here renew their
locks in every child forked after (``os.register_at_fork``; systems without ``fork`` need
nothing). A module registers itself (``renew_locks_after_fork(sys.modules[__name__])``) to have
its function ``_renew_locks_after_fork`` replace its module-level locks, and those of the
cached properties of its classes or of a library's (:func:`renew_cached_property_locks`).
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from types import ModuleType
from typing import Protocol

__all__ = ["renew_cached_property_locks", "renew_locks_after_fork"]


class _RenewsLocks(Protocol):
    def _renew_locks_after_fork(self) -> None: ...


_OWNERS: weakref.WeakSet[_RenewsLocks | ModuleType] = weakref.WeakSet()


def renew_locks_after_fork(owner: _RenewsLocks | ModuleType) -> None:
    """Have ``owner._renew_locks_after_fork()`` called in each child forked while it lives.

    ``owner`` is an object whose locks are attributes (a reader), or a module whose locks are
    globals, renewed by its module-level function ``_renew_locks_after_fork``.
    """
    _OWNERS.add(owner)


def renew_cached_property_locks(*modules: ModuleType) -> None:
    """Give each ``functools.cached_property`` of the classes in ``modules`` a new lock.

    Before Python 3.12, a cached property is computed under one lock shared by every
    instance of its class (tifffile's ``TiffFile.series`` parses a file under it): held by
    another thread at a fork, the child's first computation of that property, for any file,
    waited forever. Python 3.12 dropped the lock: nothing to do there.
    """
    for module in modules:
        for cls in [value for value in vars(module).values() if isinstance(value, type)]:
            for attribute in vars(cls).values():
                if isinstance(attribute, functools.cached_property) and hasattr(attribute,
                                                                                "lock"):
                    attribute.lock = threading.RLock()


def _renew_in_child() -> None:
    for owner in list(_OWNERS):
        owner._renew_locks_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_in_child)
