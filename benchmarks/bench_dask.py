"""Dask benchmark: every plane of a stack as a dask array, computed, against the limit and peers.

Writes an ImageJ TZCYX hyperstack and a plain "IFD, data, IFD, data" stack (the layout
``tifffile.memmap`` refuses) to a scratch folder, warms them, then in one process runs
alternating rounds (every other round in reverse order) of:

- the limit: one ``os.preadv`` of each plane's bytes into its place in a preallocated array;
- ``TiffStackND(path).to_dask().compute()`` (default chunks of up to 8 MiB, and one plane
  per chunk), open and graph building included;
- ``dask_image.imread.imread(path).compute()``: dask-image follows the reader's default axes,
  so of a hyperstack it delivers the time points only (z and c at index 0);
- ``dask.array.from_zarr(tifffile.imread(path, aszarr=True)).compute()``: tifffile's zarr store.

All with dask's threads scheduler (its processes scheduler is dominated by starting its worker
pool). A ratio is the median over rounds of a contender's time per delivered plane over the
limit's time per plane in the same round (quartiles in brackets).

Usage::

    python benchmarks/bench_dask.py                         # 200 x 4 x 2 x 256 x 256, 9 rounds
    python benchmarks/bench_dask.py --t 20 --rounds 2       # smoke
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_read import _plane_offsets  # a sibling script (benchmarks/ is on sys.path)


def _limit(path: str, shape: tuple[int, ...], dtype: np.dtype, offsets: list[int]) -> np.ndarray:
    out = np.empty(shape, dtype)
    planes = out.reshape(-1, *shape[-2:])
    fd = os.open(path, os.O_RDONLY)
    try:
        for plane, offset in zip(planes, offsets, strict=True):
            os.preadv(fd, [plane], offset)
    finally:
        os.close(fd)
    return out


def _ours(path: str, chunks: dict[str, int] | None = None) -> np.ndarray:
    from pims_videoutils import TiffStackND

    with TiffStackND(path) as reader:
        return reader.to_dask(chunks).compute(scheduler="threads")


def _dask_image(path: str) -> np.ndarray:
    from dask_image.imread import imread

    return imread(path).compute(scheduler="threads")


def _zarr_store(path: str) -> np.ndarray:
    import dask.array as da
    import tifffile
    import zarr

    with tifffile.imread(path, aszarr=True) as store:
        return da.from_zarr(zarr.open(store, mode="r")).compute(scheduler="threads")


def _write(folder: Path, t: int, z: int, c: int, size: int) -> dict[str, tuple[Path, np.ndarray]]:
    import tifffile

    data = np.random.default_rng(0).integers(0, 4096, (t, z, c, size, size), dtype=np.uint16)
    hyperstack = folder / "tzcyx_imagej.tif"
    tifffile.imwrite(hyperstack, data, imagej=True, metadata={"axes": "TZCYX"})
    plain = folder / "interleaved.tif"
    flat = data.reshape(-1, size, size)
    with tifffile.TiffWriter(plain) as tif:
        for plane in flat:
            tif.write(plane, contiguous=False, metadata=None)
    return {"ImageJ TZCYX": (hyperstack, data), "interleaved plain": (plain, flat)}


def run(path: Path, data: np.ndarray, rounds: int) -> None:
    """Print one table row per contender for ``path``."""
    offsets, _, _ = _plane_offsets(path)  # every page's data, as tifffile reads it
    one_plane = {axis: 1 for axis in "tzc"[: data.ndim - 2]}
    contenders = {
        "to_dask()": lambda: _ours(str(path)),
        "to_dask(one plane per chunk)": lambda: _ours(str(path), one_plane),
        "dask_image.imread": lambda: _dask_image(str(path)),
        "tifffile zarr store": lambda: _zarr_store(str(path)),
    }
    planes = data.size // (data.shape[-1] * data.shape[-2])
    limit = _limit(str(path), data.shape, data.dtype, offsets)
    assert np.array_equal(limit, data)
    delivered = {}
    for name, compute in contenders.items():  # correct, and how many planes each delivers
        result = compute()
        delivered[name] = result.size // (data.shape[-1] * data.shape[-2])
        # every plane, or (dask-image, hyperstack) the time points at z = c = 0
        expected = data if result.shape == data.shape else data[:, 0, 0]
        assert np.array_equal(result, expected), name
    ratios: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders.items())
    for number in range(rounds):
        t0 = time.perf_counter()
        _limit(str(path), data.shape, data.dtype, offsets)
        limit_per_plane = (time.perf_counter() - t0) / planes
        for name, compute in order if number % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            compute()
            per_plane = (time.perf_counter() - t0) / delivered[name]
            ratios[name].append(per_plane / limit_per_plane)
    for name, values in ratios.items():
        q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        print(f"| {name} | {delivered[name]} of {planes} | {median:.2f} ({q1:.2f}-{q3:.2f}) |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--t", type=int, default=200, help="time points")
    parser.add_argument("--z", type=int, default=4, help="z planes")
    parser.add_argument("--c", type=int, default=2, help="channels")
    parser.add_argument("--size", type=int, default=256, help="plane width and height")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="scratch folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench_dask_", dir=args.tmp))
    try:
        files = _write(folder, args.t, args.z, args.c, args.size)
        print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cpus; {args.t} x {args.z} "
              f"x {args.c} x {args.size} x {args.size} uint16, warm cache, threads scheduler, "
              f"{args.rounds} rounds; ratio = time per delivered plane / the limit's "
              "(median, quartiles)")
        for kind, (path, data) in files.items():
            path.read_bytes()  # warm
            print(f"\n## {kind} ({path.stat().st_size / 2**20:.0f} MiB)")
            print("| contender | planes delivered | per plane / limit |")
            print("|---|---|---|")
            run(path, data, args.rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
