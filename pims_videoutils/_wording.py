"""Wording shared by the messages of the package."""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """Return ``count`` and ``noun``, plural unless the count is 1: ``"1 frame"``, ``"2 frames"``.

    Parameters
    ----------
    count : int
        How many.
    noun : str
        The singular noun (``frame``, ``channel``, ``colour``).
    plural : str, optional
        The plural noun, where it is not ``noun`` and an "s" (``entries``).
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}s" if plural is None else f"{count} {plural}"
