"""Fresh locks in forked children: a lock that another thread held at the fork stays held.

``fork`` copies only the thread that calls it, so in the child a reader's lock that another
thread held at that moment (while decoding a page, say) is never released: the child's first
read of that reader waited forever. Objects registered here renew their locks in every child
forked after (``os.register_at_fork``; systems without ``fork`` need nothing).
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["renew_locks_after_fork"]


class _RenewsLocks(Protocol):
    def _renew_locks_after_fork(self) -> None: ...


_OWNERS: weakref.WeakSet[_RenewsLocks] = weakref.WeakSet()


def renew_locks_after_fork(owner: _RenewsLocks) -> None:
    """Have ``owner._renew_locks_after_fork()`` called in each child forked while it lives."""
    _OWNERS.add(owner)


def _renew_in_child() -> None:
    for owner in list(_OWNERS):
        owner._renew_locks_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_in_child)
