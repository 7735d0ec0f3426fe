"""Wording shared by the messages of the package."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, noun: str) -> str:
    """Return ``count`` and ``noun``, plural unless the count is 1: ``"1 frame"``, ``"2 frames"``.

    Parameters
    ----------
    count : int
        How many.
    noun : str
        The singular noun; its plural adds an "s" (``frame``, ``channel``, ``colour``).
    """
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
