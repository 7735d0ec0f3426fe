"""Tests of the pure file-name parsing in pims_videoutils._filenames."""

from __future__ import annotations

import os
import random
import re

import pytest

from pims_videoutils._filenames import FileNameError, arrange_files, natural_key, natural_sorted


def test_natural_order_puts_2_before_10():
    names = ["img10.tif", "img2.tif", "img1.tif", "IMG3.tif", "img0020.tif"]
    assert natural_sorted(names) == [
        "img1.tif",
        "img2.tif",
        "IMG3.tif",
        "img10.tif",
        "img0020.tif",
    ]


def test_natural_key_is_total_on_mixed_names():
    names = [
        f"{prefix}{n}{suffix}"
        for prefix in ("a", "a_", "b")
        for n in (1, 10, 2)
        for suffix in ("", ".tif", "x3")
    ]
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    assert natural_sorted(shuffled) == natural_sorted(names)
    assert natural_key("a2") < natural_key("a10") < natural_key("b1")


def test_plain_numbering_is_t_and_keeps_the_file_numbers():
    names = [f"banana{i:04d}.tif" for i in range(2, 27)]
    grid = arrange_files(names)
    assert grid.axes == ("t",)
    assert grid.values["t"] == tuple(range(2, 27))
    assert [grid.cells[(i,)] for i in range(25)] == list(range(25))
    assert grid.pattern == "numbered"


def test_input_order_does_not_matter():
    names = [f"Stack-{i}.tif" for i in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9)]
    grid = arrange_files(names)
    assert [grid.files[grid.cells[(i,)]] for i in range(10)] == [
        f"Stack-{i}.tif" for i in range(1, 11)
    ]


def test_tokens_t_z_c():
    names = [
        f"/data/run2/img_t{t:04d}_z{z:03d}_c{c}.tif"
        for c in (1, 2)
        for z in range(3)
        for t in range(5)
    ]
    grid = arrange_files(names)
    assert grid.axes == ("t", "z", "c")
    assert grid.shape == (5, 3, 2)
    assert grid.values["c"] == (1, 2)
    for (t, z, c), number in grid.cells.items():
        assert grid.files[number].endswith(f"img_t{t:04d}_z{z:03d}_c{c + 1}.tif")
    assert grid.missing == ()


def test_micromanager2_names_and_constant_axes():
    names = [
        f"img_channel{c:03d}_position{p:03d}_time{t:09d}_z000.tif"
        for c in range(2)
        for p in range(3)
        for t in range(4)
    ]
    grid = arrange_files(names)
    assert grid.axes == ("p", "t", "c")
    assert grid.shape == (3, 4, 2)
    assert grid.constants == {"z": 0}
    number = grid.cells[(2, 1, 0)]
    assert grid.files[number] == "img_channel000_position002_time000000001_z000.tif"


def test_micromanager14_named_channels():
    names = [
        f"img_{t:09d}_{ch}_{z:03d}.tif"
        for t in range(3)
        for ch in ("GFP", "DAPI")
        for z in range(2)
    ]
    grid = arrange_files(names)
    assert grid.pattern == "micromanager1.4"
    assert grid.axes == ("t", "z", "c")
    assert grid.values["c"] == ("DAPI", "GFP")
    assert grid.files[grid.cells[(2, 1, 0)]] == "img_000000002_DAPI_001.tif"


def test_tokens_without_separators_and_site_wave_keys():
    grid = arrange_files(["x_t1z2c3.tif", "x_t2z2c3.tif"])
    assert grid.axes == ("t",)
    assert grid.constants == {"z": 2, "c": 3}
    grid = arrange_files([f"IXM_A02_s{s}_w{w}.TIF" for s in (9, 10) for w in (1, 2)])
    assert grid.axes == ("p", "c")
    assert grid.values == {"p": (9, 10), "c": (1, 2)}


def test_user_regex_with_named_groups():
    names = [f"cell{p}-frame{t}-{ch}.tif" for p in (1, 2) for t in range(3) for ch in ("r", "g")]
    grid = arrange_files(names, pattern=r"cell(?P<p>\d+)-frame(?P<t>\d+)-(?P<c>[a-z])")
    assert grid.axes == ("p", "t", "c")
    assert grid.values["c"] == ("g", "r")
    assert grid.files[grid.cells[(1, 2, 0)]] == "cell2-frame2-g.tif"
    grid = arrange_files(names, pattern=re.compile(r"cell(?P<p>\d+)-frame(?P<t>\d+)-(?P<c>\w)"))
    assert grid.shape == (2, 3, 2)


@pytest.mark.parametrize(
    "pattern",
    [r"frame\d+", r"(?P<q>\d+)", r"(?P<t>\d+"],
    ids=["no-groups", "unknown-group", "invalid"],
)
def test_bad_user_regex(pattern):
    with pytest.raises(ValueError, match="pattern"):
        arrange_files(["frame1.tif", "frame2.tif"], pattern=pattern)


def test_name_not_matching_user_regex():
    with pytest.raises(FileNameError, match="does not match"):
        arrange_files(["frame1.tif", "other.tif"], pattern=r"frame(?P<t>\d+)")


def test_gap_in_numbering_is_an_error_naming_the_gap():
    with pytest.raises(FileNameError, match=r"gap \(3 is followed by 5\).*fill_missing"):
        arrange_files([f"a{i}.tif" for i in (1, 2, 3, 5, 6)])


def test_gap_filled_on_request():
    grid = arrange_files([f"a{i}.tif" for i in (1, 2, 3, 5, 6)], fill_missing=True)
    assert grid.values["t"] == (1, 2, 3, 4, 5, 6)
    assert grid.missing == ((3,),)
    assert grid.cells[(4,)] == 3


def test_regular_step_is_not_a_gap():
    grid = arrange_files([f"z{i}.tif" for i in (0, 10, 20, 30)])
    assert grid.values["z"] == (0, 10, 20, 30)


def test_missing_combination_error_and_fill():
    names = ["img_t1_c1.tif", "img_t2_c1.tif", "img_t1_c2.tif"]
    with pytest.raises(FileNameError, match="no file for t=2, c=2"):
        arrange_files(names)
    grid = arrange_files(names, fill_missing=True)
    assert grid.missing == ((1, 1),)


def test_sparse_numbers_refuse_to_fill():
    with pytest.raises(FileNameError, match="too sparse"):
        arrange_files(["a1.tif", "a2.tif", "a100000.tif"], fill_missing=True)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "no files"),
        (["a1.tif", "b1.tif"], "different patterns"),
        (["t1.tif", "t01.tif"], "same coordinates"),
        (["x1_2.tif", "x2_3.tif"], "several varying numbers"),
        (["a_t1_5.tif", "a_t2_6.tif"], "a varying number without an axis key besides the t"),
        (["a_t1_t2.tif", "a_t2_t3.tif"], "names an axis twice"),
    ],
    ids=["empty", "templates", "duplicates", "two-unnamed", "unnamed-and-t", "axis-twice"],
)
def test_ambiguous_names(names, message):
    with pytest.raises(FileNameError, match=message):
        arrange_files(names)


def test_the_same_t_in_every_name_is_ignored_like_other_constant_numbers():
    # "cells_t1_001.tif"...: t1 (a condition, the same everywhere) does not number the files
    names = [f"cells_t1_{i:03d}.tif" for i in (3, 1, 2)]
    grid = arrange_files(names)
    assert grid.axes == ("t",)
    assert grid.values == {"t": (1, 2, 3)}
    assert grid.files == tuple(natural_sorted(names))


def test_single_file_has_no_file_axes():
    grid = arrange_files(["only_t3.tif"])
    assert grid.axes == ()
    assert grid.constants == {"t": 3}
    assert grid.cells == {(): 0}


def test_constant_numbers_are_ignored_and_ome_extension_stripped():
    grid = arrange_files([f"exp2_{i}.ome.tif" for i in range(3)])
    assert grid.axes == ("t",)
    assert grid.values["t"] == (0, 1, 2)


# --- bulk parsing equals the simple per-name rules ---------------------------------------------


def _reference_stem(name: str) -> str:
    """The per-name rule: last path component, then the first TIFF extension it ends with."""
    base = os.path.basename(name)
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _by_last_number(name: str) -> int:
    return int(re.findall(r"\d+", _reference_stem(name))[-1])


@pytest.mark.parametrize("seed", range(30))
def test_grid_order_is_natural_order_on_tricky_names(seed):
    rng = random.Random(seed)
    prefix = rng.choice(["img", "Stack-", "exp2_", "a.b_", "ü", "x.ome_", ""])
    step = rng.choice([1, 3, 10])
    start = rng.randrange(rng.choice([10, 1000, 10**6]))
    numbers = range(start, start + step * rng.randint(2, 40), step)
    width = rng.choice([0, 3, 6])
    extensions = rng.choice([[".tif"], [".TIF", ".tif", ".Tiff"], [".ome.tif", ".tif", ""]])
    folder = rng.choice(["", "/data/run 2/", "rel/x.tif/"])
    names = [f"{folder}{prefix}{n:0{width}d}{rng.choice(extensions)}" for n in numbers]
    rng.shuffle(names)
    grid = arrange_files(names)
    assert list(grid.files) == natural_sorted(names) == sorted(names, key=_by_last_number)
    assert grid.values == {"t": tuple(numbers)}


@pytest.mark.parametrize("seed", range(20))
def test_mixed_extensions_parse_like_each_name_alone(seed):
    rng = random.Random(seed)
    extensions = [".tif", ".TIF", ".tiff", ".ome.tif", ".OME.TIFF", "", ".tif.tif", ".ome"]
    chosen = rng.sample(extensions, rng.randint(1, 3))
    names = [f"dir/cell_t{t}{rng.choice(chosen)}" for t in (3, 0, 5, 1, 4, 2)]
    stems = [_reference_stem(name) for name in names]
    if len({re.sub(r"\d+", "#", stem) for stem in stems}) == 1:
        grid = arrange_files(names)
        assert grid.values == {"t": tuple(range(6))}
        assert list(grid.files) == sorted(names, key=_by_last_number)
    else:
        with pytest.raises(FileNameError, match="different patterns"):
            arrange_files(names)


def test_tif_and_ome_tif_names_share_a_template():
    grid = arrange_files(["d/c_t2.ome.tif", "d/c_t1.tif", "d/c_t3.TIFF", "d/c_t0"])
    assert grid.files == ("d/c_t0", "d/c_t1.tif", "d/c_t2.ome.tif", "d/c_t3.TIFF")
    with pytest.raises(FileNameError, match="different patterns"):
        arrange_files(["c_t1.tif.tif", "c_t2.tif"])


def test_tokens_order_is_c_order_of_coordinates_at_scale():
    names = [
        f"run/img_t{t:03d}_z{z}_c{c}.tif" for t in range(250) for z in range(9) for c in (1, 2)
    ]
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    grid = arrange_files(shuffled)
    assert grid.shape == (250, 9, 2)
    assert list(grid.files) == names
    assert isinstance(grid.slots, range)
    assert grid.missing == ()


def test_hundred_thousand_numbered_names():
    names = [f"/data/frames/frame{i}.tif" for i in range(100_000)]
    shuffled = names[:]
    random.Random(4).shuffle(shuffled)
    grid = arrange_files(shuffled)
    assert grid.files == tuple(names)
    assert grid.values["t"] == tuple(range(100_000))
    assert grid.file_number({"t": 54_321}) == 54_321


def test_file_number_with_gaps_and_bounds():
    grid = arrange_files(["a_t1_c1.tif", "a_t3_c2.tif", "a_t3_c1.tif"], fill_missing=True)
    assert grid.files == ("a_t1_c1.tif", "a_t3_c1.tif", "a_t3_c2.tif")
    assert grid.values == {"t": (1, 3), "c": (1, 2)}
    assert list(grid.slots) == [0, -1, 1, 2]
    assert grid.missing == ((0, 1),)
    assert grid.cells == {(0, 0): 0, (1, 0): 1, (1, 1): 2}
    coords = ({"t": 0, "c": 0}, {"t": 0, "c": 1}, {"t": 1, "c": 1, "z": 5})
    assert [grid.file_number(c) for c in coords] == [0, None, 2]
    with pytest.raises(IndexError, match="t=2"):
        grid.file_number({"t": 2, "c": 0})
    with pytest.raises(IndexError, match="c=-1"):
        grid.file_number({"t": 0, "c": -1})
    with pytest.raises(KeyError):
        grid.file_number({"t": 0})


def test_sparse_grid_of_several_axes_is_refused():
    names = [f"img_t{i}_z{i}.tif" for i in range(200)]  # 200 files on a 200 x 200 grid
    for fill in (False, True):
        with pytest.raises(FileNameError, match="few of the 40000 combinations"):
            arrange_files(names, fill_missing=fill)


def test_nul_in_a_name_is_refused():
    with pytest.raises(FileNameError, match="NUL"):
        arrange_files(["a1.tif", "a\x002.tif"])


def test_regex_groups_mixing_numbers_and_text():
    names = ["s_1.tif", "s_DAPI.tif", "s_10.tif", "s_2.tif", "s_²"]
    grid = arrange_files(names, pattern=r"s_(?P<c>\w+)")
    assert grid.values["c"] == (1, 2, 10, "DAPI", "²")
    assert [grid.files[grid.cells[(i,)]] for i in range(5)] == [
        "s_1.tif",
        "s_2.tif",
        "s_10.tif",
        "s_DAPI.tif",
        "s_²",
    ]


def test_user_regex_with_signed_numbers_orders_them_by_value():
    # focus series named by their offset from the focal plane: z-2 ... z+2
    offsets = [-2, -1, 0, 1, 2]
    names = [f"bead_z{z:+d}.tif" if z else "bead_z0.tif" for z in offsets]
    random.Random(3).shuffle(names)
    grid = arrange_files(names, pattern=r"z(?P<z>[+-]?\d+)")
    assert grid.values == {"z": tuple(offsets)}
    assert [int(re.search(r"z([+-]?\d+)", n)[1]) for n in grid.files] == offsets


@pytest.mark.parametrize("style", ["img_z{z:d}", "img_z{z:+d}", "t5_z{z:d}_c1"])
def test_signed_keyed_numbers_are_read_by_value(style):
    # the sign is in some names only (z0 has none): it cannot be a separator
    offsets = [-2, -1, 0, 1, 2]
    names = [style.format(z=z) + ".tif" for z in offsets]
    names[2] = names[2].replace("+0", "0")
    expected = list(names)
    random.Random(4).shuffle(names)
    grid = arrange_files(names)
    assert grid.axes == ("z",)
    assert grid.values == {"z": tuple(offsets)}
    assert list(grid.files) == expected
    assert grid.files == arrange_files(names, pattern=r"z(?P<z>[+-]?\d+)").files


def test_a_dash_in_every_name_is_a_separator_not_a_sign():
    # t-1, t-2 number time points 1 and 2, not -1 and -2 (which would reverse them)
    names = ["cell_t-1_z-1.tif", "cell_t-2_z0.tif", "cell_t-1_z0.tif", "cell_t-2_z-1.tif"]
    grid = arrange_files(names)
    assert grid.values == {"t": (1, 2), "z": (-1, 0)}
    assert grid.files == (
        "cell_t-1_z-1.tif", "cell_t-1_z0.tif", "cell_t-2_z-1.tif", "cell_t-2_z0.tif")


def test_different_patterns_with_signs_hint_at_a_signed_pattern():
    with pytest.raises(FileNameError, match=r"different patterns.*\[\+-\]\?"):
        arrange_files(["img_1.tif", "img_-1.tif", "img_0.tif"])  # no axis key: ambiguous


def test_same_names_in_different_folders_say_folders_are_not_read():
    # Micro-Manager 1.4 writes each position's files, with the same names, in Pos0/, Pos1/...
    names = [f"Pos{p}/img_00000000{t}_DAPI_000.tif" for p in (0, 1) for t in (0, 1)]
    with pytest.raises(FileNameError, match=r"same coordinates.*open each folder"):
        arrange_files(names)
    with pytest.raises(FileNameError, match=r"same coordinates: 'a1\.tif' and 'a1\.tif'$"):
        arrange_files(["a1.tif", "a1.tif", "a2.tif"])
