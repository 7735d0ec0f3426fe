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
   ``xy``, ``series`` -> ``p``. A ``-`` or ``+`` between a key and its number is a sign where
   the names differ in it (``img_z-1``, ``img_z0``, ``img_z1``); one in every name may be a
   separator (``t-1``, ``t-2``) and is not read as a sign.
3. Plain numbering, e.g. ``banana0002.tif``: the one number that differs between files (with no
   key in front) numbers the files along ``t`` (:class:`~pims_videoutils.TiffSequenceND`
   makes it ``p`` when the files are time series themselves).

All names must follow one template (the same text around the numbers); numbers that are the
same in every file (``exp2_t001``) are ignored.

Arranging scales with the number of names (only the distinct coordinates of an axis are
sorted) and avoids per-name Python work where it can: the names are joined into one string and
matched against the first name's template by one regular expression, then placed on the grid by
a counting sort of their flat C-order index.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, count, pairwise, product
from operator import itemgetter

from ._fork import renew_cached_property_locks, renew_locks_after_fork

__all__ = [
    "FileGrid",
    "FileNameError",
    "absolute_path",
    "arrange_files",
    "is_micromanager_image_name",
    "natural_key",
    "natural_sorted",
    "shortened_to",
]

#: Order of the file-name axes in a reader (outermost first).
AXIS_ORDER = "ptzc"
#: Endings of TIFF file names (compared in lower case).
TIFF_SUFFIXES = (".tif", ".tiff")
#: Bytes in a file name (Linux, macOS, Windows).
NAME_MAX = 255

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
_INTEGER = re.compile(r"[+-]?\d+")
_SIGNED = re.compile(r"[+-]\d")
_MM14 = re.compile(r"^img_(?P<t>\d{9})_(?P<c>.+)_(?P<z>\d{3})$")
#: Micro-Manager 2's name of one image of a "separate image files" acquisition.
_MM2_IMAGE = re.compile(r"^img_channel\d+_position\d+_time\d+_z\d+$")
#: Longest first: a name ending in ``.ome.tif`` also ends in ``.tif``.
_EXTENSIONS = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
#: A grid may hold at most this many cells per existing file (guards against numbers that are
#: time stamps, whose "gaps" would allocate millions of missing frames).
_MAX_FILL_RATIO = 16
#: Separates the names joined to match them all at once (no file name can hold it).
_SEP = "\0"


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


def absolute_path(path: str | os.PathLike[str]) -> str:
    """Return ``path`` as an absolute path naming what the system opens for it.

    Like ``os.path.abspath``, but a path with a ``..`` component is not normalised: after a
    symbolic link to a folder, ``link/..`` is the parent of the link's target, not the folder
    holding the link (which ``abspath`` would name).
    """
    path = os.path.join(os.getcwd(), os.fspath(path))  # (an absolute path stays as it is)
    if os.pardir in path.split(os.sep):
        return path
    return os.path.normpath(path)


def _renew_locks_after_fork() -> None:
    """In a forked child: new locks for :class:`FileGrid`'s cached properties (see ``_fork``)."""
    renew_cached_property_locks(sys.modules[__name__])


renew_locks_after_fork(sys.modules[__name__])


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
    files : tuple of str
        The names, in the C order of their grid index (for numbered names, natural order).
    slots : sequence of int
        For each grid cell in C order, the position of its file in ``files``, or -1 for a
        gap (a ``range`` when there is no gap).
    pattern : str
        Which convention arranged the files: ``"micromanager1.4"``, ``"tokens"``,
        ``"numbered"``, ``"single"`` or ``"regex"``.
    """

    axes: tuple[str, ...]
    values: dict[str, tuple]
    constants: dict[str, int | str]
    files: tuple[str, ...]
    slots: Sequence[int]
    pattern: str

    @cached_property
    def shape(self) -> tuple[int, ...]:
        """Number of coordinates along each axis of :attr:`axes`."""
        return tuple(len(self.values[axis]) for axis in self.axes)

    @cached_property
    def cells(self) -> dict[tuple[int, ...], int]:
        """Grid index (one int per axis of :attr:`axes`) -> position of its file in ``files``."""
        return {index: slot for index, slot in self._slot_items() if slot >= 0}

    @cached_property
    def missing(self) -> tuple[tuple[int, ...], ...]:
        """Grid indices with no file (gaps), in C order."""
        if len(self.slots) == len(self.files):
            return ()
        return tuple(index for index, slot in self._slot_items() if slot < 0)

    def _slot_items(self) -> Iterator[tuple[tuple[int, ...], int]]:
        """Each grid index, in C order, with its slot."""
        return zip(product(*map(range, self.shape)), self.slots, strict=True)

    @cached_property
    def _sizes(self) -> tuple[tuple[str, int], ...]:
        return tuple(zip(self.axes, self.shape, strict=True))

    def file_number(self, coords: Mapping[str, int]) -> int | None:
        """Return the position in :attr:`files` of the file at some coordinates (None: a gap).

        Parameters
        ----------
        coords : mapping of str to int
            The index along each axis of :attr:`axes` (other keys are ignored), e.g.
            ``{"t": 3, "c": 1}``.

        Returns
        -------
        int or None
            The position of the file, or None if the cell is a gap.

        Raises
        ------
        IndexError
            An index outside the grid.
        KeyError
            An axis of :attr:`axes` missing from ``coords``.
        """
        cell = 0
        for axis, size in self._sizes:
            i = coords[axis]
            if not 0 <= i < size:
                raise IndexError(f"{axis}={i} is out of range 0..{size - 1} of the file grid")
            cell = cell * size + i
        number = self.slots[cell]
        return None if number < 0 else number

    def renamed(self, axis: str, name: str) -> FileGrid:
        """Return this grid with ``axis`` called ``name`` (a name no axis or constant has).

        Raises
        ------
        ValueError
            ``name`` is taken, or would move the axis in the ``p, t, z, c`` order (the order
            of :attr:`slots`).
        """
        axes = tuple(name if a == axis else a for a in self.axes)
        if name in self.axes or name in self.constants or axes != tuple(
            a for a in AXIS_ORDER if a in axes
        ):
            raise ValueError(f"cannot rename file-name axis {axis!r} to {name!r}")
        values = {name if a == axis else a: v for a, v in self.values.items()}
        return FileGrid(axes, values, self.constants, self.files, self.slots, self.pattern)

    def describe(self, index: tuple[int, ...]) -> str:
        """Coordinates of a grid cell as text, e.g. ``"t=3, c=1"``."""
        return ", ".join(f"{a}={self.values[a][i]}" for a, i in zip(self.axes, index, strict=True))


def _joined(texts: Sequence[str]) -> str:
    """Join texts between NUL characters, to match them all with one regular expression.

    Raises
    ------
    FileNameError
        A text holds a NUL character (no file name can).
    """
    joined = _SEP.join(texts)
    if joined.count(_SEP) != len(texts) - 1:
        bad = next(text for text in texts if _SEP in text)
        raise FileNameError(f"file name {bad!r} holds a NUL character")
    return f"{_SEP}{joined}{_SEP}"


def _strip_extension(name: str) -> str:
    """File name without its TIFF extension (the first of ``_EXTENSIONS``, ignoring case)."""
    lower = name.lower()
    for suffix in _EXTENSIONS:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_micromanager_image_name(path: str) -> bool:
    """Tell whether a file name is Micro-Manager's for one image of an acquisition.

    Parameters
    ----------
    path : str
        A file name or path (only the last component counts).

    Returns
    -------
    bool
        True for Micro-Manager 1.4 ``img_000000012_DAPI_003.tif`` and Micro-Manager 2
        ``img_channel000_position000_time000000000_z000.tif`` names.
    """
    stem = _strip_extension(os.path.basename(path))
    return bool(_MM14.match(stem) or _MM2_IMAGE.match(stem))


def _stems(names: Sequence[str]) -> list[str]:
    """File names without folder and TIFF extension (see :func:`_strip_extension`)."""
    lowered = _joined(names).lower()
    endings: dict[str, int] = {}  # how many names have each extension
    for suffix in _EXTENSIONS:
        longer = sum(n for other, n in endings.items() if other.endswith(suffix))
        endings[suffix] = lowered.count(suffix + _SEP) - longer
    endings[""] = len(names) - sum(endings.values())
    common = [suffix for suffix, n in endings.items() if n == len(names)]
    if common:  # the usual case: one extension for all, cut without testing each name
        cut = len(common[0])
        return [name[name.rfind(os.sep) + 1 : len(name) - cut] for name in names]
    return [_strip_extension(name[name.rfind(os.sep) + 1 :]) for name in names]


def _coordinates(texts: list[str]) -> list[int | str]:
    """Coordinates from matched texts: an int for (signed) decimal digits, else the text."""
    if all(texts) and "".join(texts).isdecimal():  # all numbers: convert without testing each
        return list(map(int, texts))
    return [int(text) if _INTEGER.fullmatch(text) else text for text in texts]


def _by_regex(stems: Sequence[str], regex: re.Pattern[str]) -> dict[str, list]:
    """Coordinates per axis from the named groups of ``regex`` (searched in each stem)."""
    unknown = set(regex.groupindex) - set(AXIS_ORDER)
    if not regex.groupindex or unknown:
        raise ValueError(
            f"pattern {regex.pattern!r} must have named groups among t, z, c, p "
            f"(found {sorted(regex.groupindex) or 'none'})"
        )
    matches = list(map(regex.search, stems))
    if None in matches:
        stem = stems[matches.index(None)]
        raise FileNameError(f"file name {stem!r} does not match pattern {regex.pattern!r}")
    columns: dict[str, list] = {}
    for axis in regex.groupindex:
        texts = list(map(itemgetter(axis), matches))
        if None in texts:
            raise FileNameError(f"file name {stems[texts.index(None)]!r} has no {axis} coordinate")
        columns[axis] = _coordinates(texts)
    return columns


def _template_numbers(stems: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Split the stems into the text around their numbers (the same in all) and the numbers.

    Returns the first stem's literal parts and one column of numbers per gap between them.
    """
    literals = _DIGITS.split(stems[0])[0::2]
    template = re.compile(r"(\d+)".join(map(re.escape, literals)))
    found = re.findall(f"{_SEP}{template.pattern}(?={_SEP})", _joined(stems))
    if len(found) != len(stems):
        signed = _signed_numbers(stems, literals)
        if signed is not None:
            return signed
        other = next(stem for stem in stems if template.fullmatch(stem) is None)
        hint = ""
        if _SIGNED.search(stems[0]) or _SIGNED.search(other):
            hint = r' (signed numbers: e.g. pattern=r"z(?P<z>[+-]?\d+)")'
        raise FileNameError(
            f"file names follow different patterns ({stems[0]!r} and {other!r}); "
            f"select the files with a glob or list, or give pattern={hint}"
        )
    groups = len(literals) - 1
    if groups > 1:  # one tuple per stem: flatten, then every groups-th number is one column
        found = list(chain.from_iterable(found))
    return literals, [list(map(int, found[i::groups])) for i in range(groups)]


def _signed_numbers(
    stems: Sequence[str], literals: list[str]
) -> tuple[list[str], list[list[int]]] | None:
    """Read the numbers after an axis key with their sign, where the names differ in it.

    ``img_z-1``, ``img_z0``, ``img_z1``: the names follow one template once a ``+`` or ``-``
    between a key and its number is read as a sign. One that every name has there
    (``t-1``, ``t-2``) may be a separator: it is not read as a sign, as before. Returns what
    :func:`_template_numbers` returns, or None if the names still differ.
    """
    bare = [literal.removesuffix("-").removesuffix("+") for literal in literals[:-1]]
    keyed = [_KEY_AT_END.search(literal.lower()) is not None for literal in bare]
    if not any(keyed):
        return None
    groups = [r"([+-]?)(\d+)" if key else r"()(\d+)" for key in keyed]
    pattern = "".join(
        re.escape(bare[i] if key else literals[i]) + group
        for i, (key, group) in enumerate(zip(keyed, groups, strict=True))
    ) + re.escape(literals[-1])
    found = re.findall(f"{_SEP}{pattern}(?={_SEP})", _joined(stems))
    if len(found) != len(stems):
        return None
    template, numbers = list(literals), []
    for i in range(len(keyed)):
        signs = [match[2 * i] for match in found]
        digits = [match[2 * i + 1] for match in found]
        if len(set(signs)) > 1:  # a sign in some names only: a sign
            template[i] = bare[i]
            numbers.append([int(sign + text) for sign, text in zip(signs, digits, strict=True)])
        else:
            numbers.append(list(map(int, digits)))
    return template, numbers


def _by_numbers(stems: Sequence[str]) -> tuple[dict[str, list], str]:
    """Coordinates per axis from the numbers in the stems: keyed tokens, else the varying one."""
    template, numbers = _template_numbers(stems)
    labels: list[str | None] = []
    for literal in template[:-1]:
        match = _KEY_AT_END.search(literal.lower())
        labels.append(_KEY_TO_AXIS[match.group(1)] if match else None)
    used = [label for label in labels if label is not None]
    if len(used) != len(set(used)):
        raise FileNameError(f"file name {stems[0]!r} names an axis twice; give pattern=")
    varying = [i for i, column in enumerate(numbers) if len(set(column)) > 1]
    unnamed = [i for i in varying if labels[i] is None]
    if len(unnamed) == 1 and "t" in used and labels.index("t") not in varying:
        labels[labels.index("t")] = None  # the same t in every file (exp_t1_001): ignored
    elif len(unnamed) > 1 or (unnamed and "t" in used):
        what = "several varying numbers" if len(unnamed) > 1 else "a varying number"
        raise FileNameError(
            f"file names such as {stems[0]!r} hold {what} without an axis key"
            f"{'' if len(unnamed) > 1 else ' besides the t numbers'}; give pattern= with "
            "named groups t, z, c, p"
        )
    if unnamed:
        labels[unnamed[0]] = "t"
    columns = {label: numbers[i] for i, label in enumerate(labels) if label is not None}
    kind = "numbered" if unnamed else "tokens" if varying else "single"
    return columns, kind


def _all_int(values: Iterable) -> bool:
    """Tell whether every value is an int (coordinates are ints or strs)."""
    return set(map(type, values)) == {int}


def _axis_values(axis: str, found: set, fill: bool, n_files: int) -> tuple:
    """Coordinates along one axis: the sorted values, completed to a regular step when filling."""
    if not _all_int(found):
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


def _progression(values: tuple) -> range | None:
    """Return the range equal to sorted, distinct coordinates (None if not evenly spaced ints)."""
    first, last = values[0], values[-1]
    if type(first) is not int or type(last) is not int:
        return None
    step, remainder = divmod(last - first, max(len(values) - 1, 1))
    if remainder:
        return None
    progression = range(first, last + 1, max(step, 1))
    return progression if tuple(progression) == values else None


def _flat_cells(
    columns: dict[str, list],
    values: dict[str, tuple],
    progressions: dict[str, range | None],
    n_files: int,
) -> list[int]:
    """C-order index of each file's grid cell over the axes of ``values`` (in their order)."""
    cells = None
    for axis, axis_values in values.items():
        progression = progressions[axis]
        if progression is None:
            index = {value: i for i, value in enumerate(axis_values)}.__getitem__
        else:  # evenly spaced numbers (the usual case): index by arithmetic, not by hashing
            index = progression.index
        indices = map(index, columns[axis])
        if cells is None:
            cells = list(indices)
        else:
            size = len(axis_values)
            cells = [cell * size + i for cell, i in zip(cells, indices, strict=True)]
    return [0] * n_files if cells is None else cells


def _check_unique(names: Sequence[str], cells: list[int]) -> None:
    """Raise FileNameError naming the first two files with the same grid cell."""
    first: dict[int, int] = {}
    for number, cell in enumerate(cells):
        earlier = first.setdefault(cell, number)
        if earlier != number:
            one, other = names[earlier], names[number]
            hint = ""
            if os.path.basename(one) == os.path.basename(other) and one != other:
                hint = " (only file names are read, not folder names: open each folder)"
            raise FileNameError(
                f"two files have the same coordinates: {one!r} and {other!r}{hint}"
            )


def _place(
    names: Sequence[str], cells: list[int], size: int
) -> tuple[tuple[str, ...], Sequence[int]]:
    """Order the names by grid cell (a counting sort); give each cell's position (-1: a gap)."""
    owner = [-1] * size  # grid cell -> position of its file in names
    for number, cell in enumerate(cells):
        owner[cell] = number
    if owner.count(-1) > size - len(names):
        _check_unique(names, cells)
    files = tuple([names[number] for number in owner if number >= 0])
    if size == len(names):
        return files, range(size)
    counter = count()
    return files, [next(counter) if number >= 0 else -1 for number in owner]


def arrange_files(
    names: Sequence[str],
    pattern: str | re.Pattern[str] | None = None,
    *,
    fill_missing: bool = False,
    folders: Sequence[str] | None = None,
) -> FileGrid:
    """Arrange file names on a grid of ``p``, ``t``, ``z``, ``c`` coordinates.

    Parameters
    ----------
    names : sequence of str
        File names or paths (only the last path component is parsed).
    pattern : str or re.Pattern, optional
        A regular expression with named groups among ``t``, ``z``, ``c``, ``p``, searched in
        each file name without its ``.tif``/``.tiff``/``.ome.tif`` extension. Groups of
        digits (with an optional sign, e.g. ``z-2``) give integer coordinates, other groups
        text (ordered naturally). By default the built-in conventions of the module
        docstring are used.
    fill_missing : bool, default False
        If False, a gap in the numbering (``t`` = 1, 2, 4) or a missing combination of
        coordinates raises. If True, gaps are kept in :attr:`FileGrid.missing`; integer
        axes are completed to their regular step.
    folders : sequence of str, optional
        The position folder of each name (e.g. Micro-Manager's ``Pos0``, ``Pos1``), for
        files gathered from several folders. Unless the names number positions themselves,
        the folder is each file's ``p`` coordinate (text, in natural order).

    Returns
    -------
    FileGrid
        The grid of files.

    Raises
    ------
    FileNameError
        (a ValueError) No names, names that follow different templates, several unnamed
        varying numbers, two files with the same coordinates, a name that does not match
        ``pattern``, gaps while ``fill_missing`` is False, a grid with more than 16 cells
        per file, or a name holding a NUL character.
    ValueError
        ``pattern`` is not a valid regular expression or has no or unknown named groups.
    """
    if not names:
        raise FileNameError("no files")
    stems = _stems(names)
    if pattern is not None:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from exc
        columns, kind = _by_regex(stems, regex), "regex"
    elif all(map(_MM14.match, stems)):
        columns, kind = _by_regex(stems, _MM14), "micromanager1.4"
    else:
        columns, kind = _by_numbers(stems)
    if folders is not None and len(set(columns.get("p", ()))) < 2:
        columns["p"] = list(folders)
    n_files = len(names)
    found = {axis: set(column) for axis, column in columns.items()}
    axes = tuple(a for a in AXIS_ORDER if len(found.get(a, ())) > 1)
    constants = {a: next(iter(found[a])) for a in AXIS_ORDER if len(found.get(a, ())) == 1}
    values = {a: _axis_values(a, found[a], fill_missing, n_files) for a in axes}
    size = math.prod(len(v) for v in values.values())
    if size > _MAX_FILL_RATIO * n_files:
        shape = " x ".join(f"{len(v)} {a}" for a, v in values.items())
        raise FileNameError(
            f"the {n_files} files cover few of the {size} combinations of their coordinates "
            f"({shape}); give pattern= or select the files"
        )
    progressions = {a: _progression(values[a]) for a in axes}
    cells = _flat_cells(columns, values, progressions, n_files)
    files, slots = _place(names, cells, size)
    grid = FileGrid(axes, values, constants, files, slots, kind)
    if not fill_missing:
        uneven = [a for a in axes if progressions[a] is None and _all_int(values[a])]
        if uneven:
            raise FileNameError(
                f"the {uneven[0]} numbering of the files has a gap "
                f"({_format_gap(values[uneven[0]])}); pass fill_missing= to fill it"
            )
        if grid.missing:
            raise FileNameError(
                f"no file for {grid.describe(grid.missing[0])} ({len(grid.missing)} missing "
                "in all); pass fill_missing= to fill it"
            )
    return grid


def _format_gap(values: tuple[int, ...]) -> str:
    """Text naming the first gap in unevenly spaced integers, e.g. ``"3 is followed by 5"``."""
    steps = [b - a for a, b in pairwise(values)]
    i = next(i for i, s in enumerate(steps) if s != min(steps))
    return f"{values[i]} is followed by {values[i + 1]}"


def shortened_to(name: str, room: int) -> str:
    """Return ``name`` without as many of its last characters as it takes to fit ``room`` bytes.

    Bytes as the file system sees them (``os.fsencode``), cut at whole characters: for a file
    name built around part of another one, such as a temporary file's beside its target.
    """
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return name
