"""Axis coordinates from file names: natural order, built-in naming conventions, user patterns.

Pure functions on strings (no file system access, no numpy or pims import), used by
:class:`~pims_videoutils.sequence.TiffSequenceND` to arrange a list of files on a grid of
``p`` (position), ``t``, ``z`` and ``c`` coordinates.

Built-in conventions, tried in this order:

1. Micro-Manager 1.4 ``img_000000012_DAPI_003.tif`` (time, channel name, z).
2. Tokens: a number preceded by an axis key at a word boundary, e.g. ``img_t0001_z003_c1.tif``,
   Micro-Manager 2 ``img_channel000_position000_time000000000_z000.tif``, MetaXpress
   ``A02_s9_w1.tif``. Keys (case-insensitive): ``t``, ``tp``, ``time``, ``timepoint``,
   ``frame`` -> ``t``; ``z``, ``zslice``, ``slice`` -> ``z``; ``c``, ``ch``, ``chan``,
   ``channel``, ``w``, ``wave`` -> ``c``; ``p``, ``pos``, ``position``, ``s``, ``site``,
   ``xy``, ``series`` -> ``p``.
3. Plain numbering, e.g. ``banana0002.tif``: the one number that differs between files (with no
   key in front) numbers the files along ``t``.

All names must follow one template (the same text around the numbers); numbers that are the
same in every file (``exp2_t001``) are ignored.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise, product

__all__ = ["FileGrid", "FileNameError", "arrange_files", "natural_key", "natural_sorted"]

#: Order of the file-name axes in a reader (outermost first).
AXIS_ORDER = "ptzc"

_KEYS = {
    "t": ("t", "tp", "time", "timepoint", "frame"),
    "z": ("z", "zslice", "slice"),
    "c": ("c", "ch", "chan", "channel", "w", "wave"),
    "p": ("p", "pos", "position", "s", "site", "xy", "series"),
}
_KEY_TO_AXIS = {key: axis for axis, keys in _KEYS.items() for key in keys}
_KEY_AT_END = re.compile(
    r"(?:^|[^a-z])(" + "|".join(sorted(_KEY_TO_AXIS, key=len, reverse=True)) + r")$"
)
_DIGITS = re.compile(r"(\d+)")
_MM14 = re.compile(r"^img_(?P<t>\d{9})_(?P<c>.+)_(?P<z>\d{3})$")
_EXTENSIONS = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
#: A filled grid may hold at most this many cells per existing file (guards against numbers
#: that are time stamps, whose "gaps" would allocate millions of missing frames).
_MAX_FILL_RATIO = 16


class FileNameError(ValueError):
    """File names cannot be arranged on a grid (the caller adds the dataset path)."""


def natural_key(text: str) -> tuple:
    """Sort key that orders the numbers inside strings by value (``img2`` before ``img10``).

    Parameters
    ----------
    text : str
        The string to sort.

    Returns
    -------
    tuple
        Alternating text (case-folded) and integer parts, then the original text as a
        tie-breaker.
    """
    parts: list = _DIGITS.split(text.casefold())
    parts[1::2] = map(int, parts[1::2])
    return (tuple(parts), text)


def natural_sorted(texts: Iterable[str]) -> list[str]:
    """Return the strings in natural order (see :func:`natural_key`).

    Parameters
    ----------
    texts : iterable of str
        The strings to sort.

    Returns
    -------
    list of str
        A new sorted list.
    """
    return sorted(texts, key=natural_key)


@dataclass(frozen=True)
class FileGrid:
    """Files arranged on a grid of file-name axes.

    Attributes
    ----------
    axes : tuple of str
        File-name axes with more than one coordinate, in the order ``p, t, z, c``.
    values : dict of str to tuple
        For each axis in ``axes``, the coordinate read from the file names at each index
        (int, or str for named channels), including filled gaps.
    constants : dict of str to int or str
        Axes named in the file names whose coordinate is the same in every file.
    cells : dict of tuple of int to int
        Grid index (one int per axis of ``axes``) -> position of the file in the input list.
    missing : tuple of tuple of int
        Grid indices with no file (gaps), in C order.
    pattern : str
        Which convention arranged the files: ``"micromanager1.4"``, ``"tokens"``,
        ``"numbered"``, ``"single"`` or ``"regex"``.
    """

    axes: tuple[str, ...]
    values: dict[str, tuple]
    constants: dict[str, int | str]
    cells: dict[tuple[int, ...], int]
    missing: tuple[tuple[int, ...], ...]
    pattern: str

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of coordinates along each axis of :attr:`axes`."""
        return tuple(len(self.values[axis]) for axis in self.axes)

    def describe(self, index: tuple[int, ...]) -> str:
        """Coordinates of a grid cell as text, e.g. ``"t=3, c=1"``."""
        return ", ".join(f"{a}={self.values[a][i]}" for a, i in zip(self.axes, index, strict=True))


def _stem(name: str) -> str:
    """File name without folder and TIFF extension."""
    name = name[name.rfind(os.sep) + 1 :]
    lower = name.lower()
    for suffix in _EXTENSIONS:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _value(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _by_regex(stems: Sequence[str], regex: re.Pattern[str]) -> dict[str, list]:
    """Coordinates per axis from the named groups of ``regex`` (searched in each stem)."""
    unknown = set(regex.groupindex) - set(AXIS_ORDER)
    if not regex.groupindex or unknown:
        raise ValueError(
            f"pattern {regex.pattern!r} must have named groups among t, z, c, p "
            f"(found {sorted(regex.groupindex) or 'none'})"
        )
    columns: dict[str, list] = {axis: [] for axis in regex.groupindex}
    for stem in stems:
        match = regex.search(stem)
        if match is None:
            raise FileNameError(f"file name {stem!r} does not match pattern {regex.pattern!r}")
        for axis, text in match.groupdict().items():
            if text is None:
                raise FileNameError(f"file name {stem!r} has no {axis} coordinate")
            columns[axis].append(_value(text))
    return columns


def _by_numbers(stems: Sequence[str]) -> tuple[dict[str, list], str]:
    """Coordinates per axis from the numbers in the stems: keyed tokens, else the varying one."""
    split = [_DIGITS.split(stem) for stem in stems]
    template = split[0][0::2]
    for stem, parts in zip(stems, split, strict=True):
        if parts[0::2] != template:
            raise FileNameError(
                f"file names follow different patterns ({stems[0]!r} and {stem!r}); "
                "select the files with a glob or list, or give pattern="
            )
    labels: list[str | None] = []
    for literal in template[:-1]:
        match = _KEY_AT_END.search(literal.lower())
        labels.append(_KEY_TO_AXIS[match.group(1)] if match else None)
    used = [label for label in labels if label is not None]
    if len(used) != len(set(used)):
        raise FileNameError(f"file name {stems[0]!r} names an axis twice; give pattern=")
    numbers = [list(map(int, column)) for column in list(zip(*split, strict=True))[1::2]]
    varying = [i for i, column in enumerate(numbers) if len(set(column)) > 1]
    unnamed = [i for i in varying if labels[i] is None]
    if len(unnamed) > 1 or (unnamed and "t" in used):
        raise FileNameError(
            f"file names such as {stems[0]!r} hold several varying numbers without an axis "
            "key; give pattern= with named groups t, z, c, p"
        )
    if unnamed:
        labels[unnamed[0]] = "t"
    columns = {label: numbers[i] for i, label in enumerate(labels) if label is not None}
    kind = "numbered" if unnamed else "tokens" if varying else "single"
    return columns, kind


def _axis_values(axis: str, found: set, fill: bool, n_files: int) -> tuple:
    """Coordinates along one axis: the sorted values, completed to a regular step when filling."""
    if not all(isinstance(v, int) for v in found):
        return tuple(sorted(found, key=lambda v: natural_key(str(v))))
    ordered = sorted(found)
    if not fill or len(ordered) < 2:
        return tuple(ordered)
    step = math.gcd(*(b - a for a, b in pairwise(ordered)))
    count = (ordered[-1] - ordered[0]) // step + 1
    if count > _MAX_FILL_RATIO * n_files:
        raise FileNameError(
            f"the {axis} numbers of the file names ({ordered[0]}..{ordered[-1]}) are too sparse "
            "to fill; give pattern= or select the files"
        )
    return tuple(range(ordered[0], ordered[-1] + 1, step))


def _has_gaps(values: tuple) -> bool:
    """Tell whether integer coordinates are unevenly spaced."""
    if len(values) < 3 or not all(isinstance(v, int) for v in values):
        return False
    steps = {b - a for a, b in pairwise(values)}
    return len(steps) > 1


def arrange_files(
    names: Sequence[str],
    pattern: str | re.Pattern[str] | None = None,
    *,
    fill_missing: bool = False,
) -> FileGrid:
    """Arrange file names on a grid of ``p``, ``t``, ``z``, ``c`` coordinates.

    Parameters
    ----------
    names : sequence of str
        File names or paths (only the last path component is parsed).
    pattern : str or re.Pattern, optional
        A regular expression with named groups among ``t``, ``z``, ``c``, ``p``, searched in
        each file name without its ``.tif``/``.tiff``/``.ome.tif`` extension. Groups of digits
        give integer coordinates, other groups text (ordered naturally). By default the
        built-in conventions of the module docstring are used.
    fill_missing : bool, default False
        If False, a gap in the numbering (``t`` = 1, 2, 4) or a missing combination of
        coordinates raises. If True, gaps are kept in :attr:`FileGrid.missing`; integer
        axes are completed to their regular step.

    Returns
    -------
    FileGrid
        The grid of files.

    Raises
    ------
    FileNameError
        (a ValueError) No names, names that follow different templates, several unnamed
        varying numbers, two files with the same coordinates, a name that does not match
        ``pattern``, or gaps while ``fill_missing`` is False.
    ValueError
        ``pattern`` is not a valid regular expression or has no or unknown named groups.
    """
    if not names:
        raise FileNameError("no files")
    stems = [_stem(name) for name in names]
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from exc
        columns, kind = _by_regex(stems, regex), "regex"
    elif all(_MM14.match(stem) for stem in stems):
        columns, kind = _by_regex(stems, _MM14), "micromanager1.4"
    else:
        columns, kind = _by_numbers(stems)
    found = {axis: set(column) for axis, column in columns.items()}
    axes = tuple(a for a in AXIS_ORDER if len(found.get(a, ())) > 1)
    constants = {a: next(iter(found[a])) for a in AXIS_ORDER if len(found.get(a, ())) == 1}
    values = {a: _axis_values(a, found[a], fill_missing, len(names)) for a in axes}
    indices = []
    for axis in axes:
        position = {v: i for i, v in enumerate(values[axis])}
        indices.append([position[v] for v in columns[axis]])
    keys = list(zip(*indices, strict=True)) if axes else [()] * len(names)
    cells = {key: number for number, key in enumerate(keys)}
    if len(cells) < len(names):
        seen: dict[tuple[int, ...], int] = {}
        for number, key in enumerate(keys):
            if key in seen:
                raise FileNameError(
                    f"two files have the same coordinates: {names[seen[key]]!r} and "
                    f"{names[number]!r}"
                )
            seen[key] = number
    shape = tuple(len(values[a]) for a in axes)
    missing: tuple[tuple[int, ...], ...] = ()
    if len(cells) < math.prod(shape):
        missing = tuple(i for i in product(*map(range, shape)) if i not in cells)
    grid = FileGrid(axes, values, constants, cells, missing, kind)
    if not fill_missing:
        uneven = [a for a in axes if _has_gaps(values[a])]
        if uneven:
            raise FileNameError(
                f"the {uneven[0]} numbering of the files has a gap "
                f"({_format_gap(values[uneven[0]])}); pass fill_missing= to fill it"
            )
        if missing:
            raise FileNameError(
                f"no file for {grid.describe(missing[0])} ({len(missing)} missing in all); "
                "pass fill_missing= to fill it"
            )
    return grid


def _format_gap(values: tuple[int, ...]) -> str:
    """Text naming the first gap in unevenly spaced integers, e.g. ``"3 is followed by 5"``."""
    steps = [b - a for a, b in pairwise(values)]
    i = next(i for i, s in enumerate(steps) if s != min(steps))
    return f"{values[i]} is followed by {values[i + 1]}"
