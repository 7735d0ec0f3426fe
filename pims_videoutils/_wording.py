"""Wording shared by the messages of the package."""

from __future__ import annotations

import decimal
import numbers
from fractions import Fraction
from typing import Any

__all__ = ["counted", "shown"]

#: Integers and fractions with a part of more bits than this (about 39 digits) are shown to
#: 6 significant digits; ``repr`` fails for over 4300 digits (ValueError).
_LONGEST_NUMBER_BITS = 128


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


def shown(value: Any) -> str:
    """Return ``value`` as a message shows it: numbers as ``str``, other values as ``repr``.

    Numbers read as written (``5``, ``2.5``, ``2/3``, not ``np.int64(5)``), and an integer or
    fraction of more than about 39 digits (``10**400``) to 6 significant digits
    (``1e+400``), also inside a tuple or list.
    """
    if isinstance(value, tuple | list):
        items = [shown(item) for item in value]
        if isinstance(value, list):
            return f"[{', '.join(items)}]"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if not isinstance(value, numbers.Number):
        return repr(value)
    if not isinstance(value, numbers.Rational):
        return str(value)
    fraction = Fraction(int(value.numerator), int(value.denominator))
    if max(abs(fraction.numerator), fraction.denominator).bit_length() <= _LONGEST_NUMBER_BITS:
        return str(value)
    quotient = decimal.Decimal(fraction.numerator) / fraction.denominator
    mantissa, exponent = f"{quotient:.5e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
