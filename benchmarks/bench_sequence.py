"""Open time and per-frame cost of a folder of numbered TIFF files, against the limit and peers.

For folders of N single-plane files in a temporary folder (tifffile writes the first; the
others copy its header with other pixel bytes, so 100,000 files take seconds to write), this
prints medians of repeated runs (warm page cache) of:

* open: building the reader (listing and arranging the files, learning the layout), against
  the limit of listing the folder (``os.scandir``); the row "list + arrange names" is the
  part of our open spent on file names alone (no TIFF read);
* per frame: reading ``--frames`` frames spread evenly over the files, in order, against the
  limit of one ``os.open`` + one ``os.preadv``
  into a preallocated buffer at the (known) pixel offset + ``os.close`` per file. Rows:
  ``reader[i]`` (a ``pims.Frame`` with its axes and coordinates) and ``reader.get_plane(t=i)``
  (our reading alone: verification of each file's structure + one ``preadv``). The row
  "same into a fresh array" is the limit plus the new array per frame that every reader
  returning fresh frames (ours, pims, tifffile) must allocate; ratios stay against the
  strict limit.

Peers measured side by side: ``pims.ImageSequence``, ``tifffile.TiffSequence`` (open; its
``asarray`` reads everything at once: per frame = total / N) and ``tifffile.imread`` per file.

Cases run in interleaved rounds (every other round in reverse order). Wall and CPU (user +
system time of this process) medians are both printed; each ratio is the median over the
rounds of a case's time over the limit's time in the same round (paired, so that both met the
same load), with the quartiles of the wall ratios: the noise of the machine. On a shared,
loaded machine the CPU ratios are the steadier measure.

Run: ``python benchmarks/bench_sequence.py`` (1,000 and 10,000 files of 256x256 uint16);
``--files 200 --repeats 2`` to validate quickly; ``--files 100000 --repeats 9`` for the large
folder (planes default to 64x64 above 10,000 files: ~1 GB on disk instead of 13 GB).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pims
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pims_videoutils._filenames import arrange_files
from pims_videoutils.sequence import TiffSequenceND, _list_files

#: Default plane shape: 256x256 up to this many files, 64x64 above.
_LARGE_FOLDER = 10_000


def write_folder(folder: Path, count: int, shape: tuple[int, int]) -> None:
    """Write ``count`` files; file i holds ``plane + i % 7`` (checked on the last file)."""
    plane = np.random.default_rng(0).integers(0, 4096, shape, np.uint16)
    first = folder / f"img_{0:06d}.tif"
    tifffile.imwrite(first, plane)
    template = first.read_bytes()
    head = template[: len(template) - plane.nbytes]  # tifffile writes the pixels last
    contents = [head + (plane + np.uint16(k)).tobytes() for k in range(7)]
    for i in range(1, count):
        with open(folder / f"img_{i:06d}.tif", "wb") as file:
            file.write(contents[i % 7])
    last = count - 1
    assert np.array_equal(tifffile.imread(folder / f"img_{last:06d}.tif"), plane + last % 7)


def timed_rounds(cases: dict, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """Wall and CPU (user + system of this process) time of each case in each round.

    Cases run in interleaved rounds, every other round in reverse order, so that load from
    other processes on a shared machine falls on all of them alike and no case always follows
    another; the CPU time is also insensitive to waiting for a core. The garbage of one case
    is collected before the next starts, so no case pays for another's.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    order = list(cases.items())
    for round_number in range(repeats):
        for name, func in order if round_number % 2 == 0 else order[::-1]:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            func()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def print_table(title: str, times: dict, limit: str, per: dict[str, int], unit: str) -> None:
    """Print the median time of each case and its ratios to the limit.

    A ratio is the median over the rounds of the case's time over the limit's time in the
    same round (paired: both met the same load), shown with the quartiles of those ratios.
    ``per`` divides each case's times (e.g. by the frames read) to print them per item.
    """
    scale = {"ms": 1e3, "us": 1e6}[unit]
    print(f"{title:<34}{'wall':>12}{'x limit':>9}{'quartiles':>12}{'cpu':>12}{'x limit':>9}")
    for name, values in times.items():
        pairs = list(zip(values, times[limit], strict=True))
        ratios = [[t[k] / per[name] / (base[k] / per[limit]) for t, base in pairs] for k in (0, 1)]
        walls = ratios[0]
        wall_q1, wall_q3 = statistics.quantiles(walls, n=4)[::2] if len(walls) > 1 else walls * 2
        wall = statistics.median(w for w, _ in values) / per[name] * scale
        cpu = statistics.median(c for _, c in values) / per[name] * scale
        print(
            f"  {name:<32}{wall:>9.1f} {unit}{statistics.median(ratios[0]):>9.2f}"
            f"{f'{wall_q1:.2f}-{wall_q3:.2f}':>12}{cpu:>9.1f} {unit}"
            f"{statistics.median(ratios[1]):>9.2f}"
        )


def open_cases(folder: Path) -> dict[str, callable]:
    pattern = str(folder / "*.tif")

    def limit():
        with os.scandir(folder) as entries:
            [entry.name for entry in entries]

    def ours():
        TiffSequenceND(folder).close()

    def ours_names():
        arrange_files(_list_files(folder))

    def pims_sequence():
        pims.ImageSequence(pattern).close()

    def tifffile_sequence():
        with tifffile.TiffSequence(pattern) as sequence:
            sequence.shape  # noqa: B018 (parses the names)

    return {
        "limit: list the folder": limit,
        "TiffSequenceND": ours,
        "  list + arrange names": ours_names,
        "pims.ImageSequence": pims_sequence,
        "tifffile.TiffSequence": tifffile_sequence,
    }


def frame_cases(folder: Path, frames: list[int]) -> dict[str, callable]:
    files = sorted(str(path) for path in folder.glob("*.tif"))
    with tifffile.TiffFile(files[0]) as tif:
        page = tif.pages.first
        offset, shape, dtype = int(page.dataoffsets[0]), page.shape, page.dtype
    buffer = np.empty(shape, dtype)

    def limit():
        for i in frames:
            fd = os.open(files[i], os.O_RDONLY)
            os.preadv(fd, [buffer], offset)
            os.close(fd)

    def limit_fresh():
        for i in frames:
            fd = os.open(files[i], os.O_RDONLY)
            os.preadv(fd, [np.empty(shape, dtype)], offset)
            os.close(fd)

    ours = TiffSequenceND(folder)
    sequence = pims.ImageSequence(str(folder / "*.tif"))

    def read_ours():
        for i in frames:
            ours[i]

    def read_ours_planes():
        for i in frames:
            ours.get_plane(t=i)

    def read_pims():
        for i in frames:
            sequence[i]

    def read_tifffile():
        for i in frames:
            tifffile.imread(files[i])

    cases = {
        "limit: open+preadv+close": limit,
        "  same into a fresh array": limit_fresh,
        "TiffSequenceND[i]": read_ours,
        "TiffSequenceND.get_plane(t=i)": read_ours_planes,
        "pims.ImageSequence[i]": read_pims,
        "tifffile.imread(file)": read_tifffile,
    }
    return cases, (ours, sequence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        help=f"plane shape (default 256 256 up to {_LARGE_FOLDER} files, 64 64 above)",
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--frames", type=int, default=1000, help="frames read per repeat")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), tifffile "
        f"{tifffile.__version__}, pims {pims.__version__}, numpy {np.__version__}; "
        f"medians of {args.repeats} interleaved rounds, warm page cache; x limit: median of "
        "the ratios to the limit's time in the same round (wall: with their quartiles)"
    )
    for count in args.files:
        shape = args.shape or ([256, 256] if count <= _LARGE_FOLDER else [64, 64])
        with tempfile.TemporaryDirectory(prefix="bench_sequence_") as tmp:
            folder = Path(tmp)
            write_folder(folder, count, tuple(shape))
            print(f"\n== {count} files of {shape[0]}x{shape[1]} uint16 ==")
            cases = open_cases(folder)
            times = timed_rounds(cases, args.repeats)
            print_table("open", times, "limit: list the folder", dict.fromkeys(cases, 1), "ms")
            frames = np.linspace(0, count - 1, min(args.frames, count)).astype(int).tolist()
            cases, readers = frame_cases(folder, frames)
            try:
                if count <= 2000:  # reads every file into one array: per frame = total / N
                    cases["tifffile.imread(glob) all / N"] = lambda f=folder: tifffile.imread(
                        str(f / "*.tif")
                    )
                times = timed_rounds(cases, args.repeats)
            finally:
                for reader in readers:
                    reader.close()
            per = {name: count if name.endswith("/ N") else len(frames) for name in cases}
            title = f"per frame ({len(frames)} in order)"
            print_table(title, times, "limit: open+preadv+close", per, "us")

if __name__ == "__main__":
    main()
