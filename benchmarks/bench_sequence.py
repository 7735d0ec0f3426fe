"""Open time and per-frame cost of a folder of numbered TIFF files, against the limit and peers.

For folders of N single-plane files (written once by tifffile into a temporary folder), this
prints medians of repeated runs (warm page cache) of:

* open: building the reader (listing and arranging the files, learning the layout), against
  the limit of listing the folder (``os.scandir``);
* per frame: reading frames in order, against the limit of one ``os.open`` + one ``os.preadv``
  into a preallocated buffer at the (known) pixel offset + ``os.close`` per file. Rows:
  ``reader[i]`` (through pims: Slicerator + ``pims.Frame``) and ``reader.get_plane(t=i)``
  (our reading alone: verification of each file's structure + one ``preadv``).

Peers measured side by side: ``pims.ImageSequence``, ``tifffile.TiffSequence`` (open; its
``asarray`` reads everything at once: per frame = total / N) and ``tifffile.imread`` per file.

Wall and CPU (user + system time of this process) medians are both printed: on a shared,
loaded machine the CPU ratios are the steadier measure.

Run: ``python benchmarks/bench_sequence.py`` (1,000 and 10,000 files of 256x256 uint16);
``--files 200 --repeats 2`` to validate quickly.
"""

from __future__ import annotations

import argparse
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

from pims_videoutils.sequence import TiffSequenceND


def write_folder(folder: Path, count: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 4096, shape, np.uint16)
    for i in range(count):
        tifffile.imwrite(folder / f"img_{i:06d}.tif", plane + np.uint16(i % 7))


def median_times(cases: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU (user + system of this process) time of each case.

    Cases run in interleaved rounds so that load from other processes on a shared machine
    falls on all of them alike; the CPU time is also insensitive to waiting for a core.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, func in cases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            func()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in times.items()
    }


def open_cases(folder: Path) -> dict[str, callable]:
    pattern = str(folder / "*.tif")

    def limit():
        with os.scandir(folder) as entries:
            [entry.name for entry in entries]

    def ours():
        TiffSequenceND(folder).close()

    def pims_sequence():
        pims.ImageSequence(pattern).close()

    def tifffile_sequence():
        with tifffile.TiffSequence(pattern) as sequence:
            sequence.shape  # noqa: B018 (parses the names)

    return {
        "limit: list the folder": limit,
        "TiffSequenceND": ours,
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
        "TiffSequenceND[i]": read_ours,
        "TiffSequenceND.get_plane(t=i)": read_ours_planes,
        "pims.ImageSequence[i]": read_pims,
        "tifffile.imread(file)": read_tifffile,
    }
    return cases, (ours, sequence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--shape", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", type=int, default=1000, help="frames read per repeat")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, tifffile {tifffile.__version__}, pims {pims.__version__}, "
        f"numpy {np.__version__}; planes {args.shape[0]}x{args.shape[1]} uint16; "
        f"medians of {args.repeats} runs, warm page cache"
    )
    for count in args.files:
        with tempfile.TemporaryDirectory(prefix="bench_sequence_") as tmp:
            folder = Path(tmp)
            write_folder(folder, count, tuple(args.shape))
            print(f"\n== {count} files ==")
            results = median_times(open_cases(folder), args.repeats)
            wall_limit, cpu_limit = results["limit: list the folder"]
            print(f"{'open':<34}{'wall':>12}{'x limit':>9}{'cpu':>12}{'x limit':>9}")
            for name, (wall, cpu) in results.items():
                print(
                    f"  {name:<32}{wall * 1e3:>9.1f} ms{wall / wall_limit:>9.1f}"
                    f"{cpu * 1e3:>9.1f} ms{cpu / cpu_limit:>9.1f}"
                )
            frames = np.linspace(0, count - 1, min(args.frames, count)).astype(int).tolist()
            cases, readers = frame_cases(folder, frames)
            try:
                if count <= 2000:  # reads every file into one array: per frame = total / N
                    cases["tifffile.imread(glob) all / N"] = lambda f=folder: tifffile.imread(
                        str(f / "*.tif")
                    )
                per_frame = {
                    name: tuple(t / (count if name.endswith("/ N") else len(frames)) for t in pair)
                    for name, pair in median_times(cases, args.repeats).items()
                }
            finally:
                for reader in readers:
                    reader.close()
            wall_limit, cpu_limit = per_frame["limit: open+preadv+close"]
            print(
                f"{'per frame (in order)':<34}{'wall':>12}{'x limit':>9}{'cpu':>12}{'x limit':>9}"
            )
            for name, (wall, cpu) in per_frame.items():
                print(
                    f"  {name:<32}{wall * 1e6:>9.1f} us{wall / wall_limit:>9.2f}"
                    f"{cpu * 1e6:>9.1f} us{cpu / cpu_limit:>9.2f}"
                )


if __name__ == "__main__":
    main()
