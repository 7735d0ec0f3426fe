"""Read benchmark: TiffStackND against the physical limit and its peers, fresh process per run.

Generates stacks in a scratch folder (deleted afterwards), then for every (file, reader) runs
fresh subprocesses, readers interleaved within each repeat:

- warm cache: open time and first frame, then alternating rounds of 200 random frames and a
  full pass, of the reader and of the limits in the same process; a ratio is the median over
  rounds of the reader's time over the faster limit's in the same round (paired);
- cold cache: alternating rounds again, in one process, but each run (the reader's or a
  limit's, random frames or full pass) opens afresh right after the file is dropped from the
  page cache (posix_fadvise(DONTNEED), checked with mincore); a ratio is the median over rounds
  of the reader's time over the faster limit's in the same round (paired, like warm);
- memory: the reader alone in a process, growth of anonymous memory over a cold full pass.

The cold open's limit: reading, cold, the file pages that hold the IFDs (which any open that
checks every page must read), their places known and all announced to the kernel at once.

The limit: reading each plane's bytes with os.preadv into a fresh array, or copying it out of a
raw np.memmap, whichever is faster (compressed files: tifffile's own ``TiffPage.asarray()`` of
pages all parsed at open, so that the limit is the decode alone). The "floor" row reads as the
pread limit does, into a new ``pims.Frame`` given its ``frame_no`` and ``axes``/``coords``
metadata: the least any reader returning TiffStackND's frames pays (uncompressed files).

Usage::

    python benchmarks/bench_read.py    # full size: 2000 x 512 x 512 uint16, 100k pages
    python benchmarks/bench_read.py --frames 200 --size 256 --pages 10000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_RANDOM = 200

# --- readers (run inside the child process) ---------------------------------------------------


def _plane_offsets(path):
    """Data offset of every page, and the runs of file pages that hold the IFDs (computed once
    in the parent, not timed)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        offsets = [p.dataoffsets[0] for p in tif.pages]
        tiff = tif.tiff
        ifds = [(p.offset, tiff.tagnosize + len(p.tags) * tiff.tagsize + tiff.offsetsize)
                for p in tif.pages]
        return offsets, list(page.shape), str(page.dtype), _ifd_runs(ifds)


def _ifd_runs(ifds, gap=1):
    """The 4 KiB file pages holding the IFDs ``(offset, size)``, as ``[start, end]`` runs
    (pages less than ``gap`` apart merged): what any open that checks every IFD reads."""
    runs = []
    for offset, size in sorted(ifds):
        start, end = offset // 4096 * 4096, -(-(offset + size) // 4096) * 4096
        if runs and start - runs[-1][1] < gap:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    return runs


def _read_ifd_pages(path, runs):
    """The open's limit: read the pages that hold the IFDs, with their places known, all
    announced to the kernel first (``WILLNEED``), then read in order, 8 MiB at most a call."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, end in runs:
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_WILLNEED)
        buffer = bytearray(8 << 20)
        for start, end in runs:
            for offset in range(start, end, len(buffer)):
                os.preadv(fd, [memoryview(buffer)[: min(len(buffer), end - offset)]], offset)
    finally:
        os.close(fd)


def _open_reader(name, path, spec):
    """Return (get(i) -> in-memory ndarray, number of frames, close)."""
    if name in ("limit-pread", "limit-memmap", "floor: pims.Frame by preadv"):
        offsets, shape, dtype = spec["offsets"], tuple(spec["shape"]), np.dtype(spec["dtype"])
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if name == "limit-pread":
            fd = os.open(path, os.O_RDONLY)

            def get(i):
                out = np.empty(shape, dtype)
                os.preadv(fd, [out], offsets[i])
                return out

            return get, len(offsets), lambda: os.close(fd)
        if name == "floor: pims.Frame by preadv":
            # what any reader that returns pims Frames as TiffStackND does must do on top of
            # the limit: a new Frame, its frame_no and the axes/coords metadata (no checks)
            from pims import Frame

            fd = os.open(path, os.O_RDONLY)

            def get(i):
                out = np.ndarray.__new__(Frame, shape, dtype)
                os.preadv(fd, [out], offsets[i])
                out.frame_no = i
                out.metadata = {"axes": ["y", "x"], "coords": {"t": i}}
                return out

            return get, len(offsets), lambda: os.close(fd)
        mm = np.memmap(path, np.uint8, mode="r")
        return (lambda i: np.array(mm[offsets[i]: offsets[i] + nbytes]).view(dtype)
                .reshape(shape)), len(offsets), lambda: None
    if name == "tifffile-page-decode":
        import tifffile

        tif = tifffile.TiffFile(path)
        pages = tif.pages
        pages.cache = True
        parsed = [pages[i] for i in range(len(pages))]  # every page parsed at open: the
        return (lambda i: parsed[i].asarray()), len(pages), tif.close  # limit is the decode
    if name.startswith("TiffStackND"):
        from pims_videoutils.readers import TiffStackND

        reader = TiffStackND(path, copy=name != "TiffStackND copy=False")
        if name == "TiffStackND copy=False":
            return (lambda i: np.array(reader[i])), len(reader), reader.close
        return (lambda i: reader[i]), len(reader), reader.close
    if name == "pims TiffStack":
        import pims

        reader = pims.TiffStack(path)
        return (lambda i: reader[i]), len(reader), reader.close
    if name == "tifffile.memmap":
        import tifffile

        mm = tifffile.memmap(path, mode="r")
        return (lambda i: np.array(mm[i])), len(mm), lambda: None
    if name == "tifffile imread(key=i)":
        import tifffile

        with tifffile.TiffFile(path) as tif:
            n = len(tif.pages)
        return (lambda i: tifffile.imread(path, key=i)), n, lambda: None
    if name == "tifffile zarr store":
        import tifffile
        import zarr

        store = tifffile.imread(path, aszarr=True)
        z = zarr.open(store, mode="r")
        return (lambda i: z[i]), z.shape[0], store.close
    raise ValueError(name)


def _rss_anon():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _disk_read_bytes():
    """Bytes this process has made the disk read so far (its read-ahead and advice included),
    or None where /proc/self/io is missing: unlike times, the same in every cold run."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _drop_cache(path):
    """Drop the file from the page cache; return the fraction of its pages still cached."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return _cached_fraction(fd)
    finally:
        os.close(fd)


def _cached_fraction(fd):
    """Fraction of the file's pages in the page cache (mincore on a mapping: reads nothing)."""
    import ctypes
    import mmap

    size = os.fstat(fd).st_size
    mapping = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        view = np.frombuffer(mapping, np.uint8)
        pages = -(-size // mmap.PAGESIZE)
        vector = np.zeros(pages, np.uint8)
        mincore = ctypes.CDLL(None, use_errno=True).mincore
        mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        if mincore(view.ctypes.data, size, vector.ctypes.data) != 0:
            return float("nan")
        del view
        return float(np.count_nonzero(vector & 1)) / pages
    finally:
        mapping.close()


def _import_for(name):
    """Import what a reader needs, so that open times exclude module imports."""
    import importlib

    sys.path.insert(0, str(ROOT))
    modules = {"TiffStackND": ["pims_videoutils.readers"], "pims": ["pims"], "floor": ["pims"],
               "tifffile": ["tifffile"], "tifffile zarr": ["tifffile", "zarr"]}
    for prefix in sorted(modules, key=len, reverse=True):
        if name.startswith(prefix):
            for module in modules[prefix]:
                importlib.import_module(module)
            return


def _passes(get, n, kinds, sample_memory=False):
    """Time ``kinds`` of passes: 200 random frames (seeded: the same for every reader) and/or
    a full pass. Returns the times and the peak anonymous memory, sampled during the full pass
    only if ``sample_memory`` (reading /proc costs time inside the timed loop), else after."""
    times, peak = {}, _rss_anon()
    if "random" in kinds:
        picks = np.random.default_rng(0).integers(0, n, N_RANDOM)
        t0 = time.perf_counter()
        for i in picks:
            get(int(i))
        times["random"] = time.perf_counter() - t0
        peak = max(peak, _rss_anon())
    if "full" in kinds:
        t0 = time.perf_counter()
        for i in range(n):
            get(i)
            if sample_memory and i % 256 == 0:
                peak = max(peak, _rss_anon())
        times["full"] = time.perf_counter() - t0
    return times, max(peak, _rss_anon())


def child(args):
    """One measurement in a fresh process; prints a JSON dict."""
    job = json.loads(args)
    job.update(json.loads(Path(job.pop("spec")).read_text()))
    path, name, mode = job["path"], job["reader"], job["mode"]
    _import_for(name)
    base = _rss_anon()
    if mode == "warm":
        result = warm_rounds(job)
    elif mode == "cold":
        result = cold_rounds(job)
    else:  # memory: the reader alone, over a cold pass
        _drop_cache(path)
        get, n, close = _open_reader(name, path, job)
        _, peak = _passes(get, n, ["random"] if job["skip_full"] else ["full"],
                          sample_memory=True)
        result = {"anon_mb": (peak - base) / 2**20}
        close()
    print(json.dumps(result))


def warm_rounds(job):
    """Warm cache: open the reader, then time it and the limits in alternating rounds.

    The limits run in the same process as the reader, round after round (every other round in
    reverse order), so that the reader's and the limit's times in one round met the same
    machine load, heap and cache state: the parent takes the ratios round by round. One-time
    costs (the reader's open and first frame) are timed apart. (Anonymous memory is measured
    in the cold runs, where the reader is alone in its process.)
    """
    path, name = job["path"], job["reader"]
    t0 = time.perf_counter()
    get, n, close = _open_reader(name, path, job)
    result = {"open": time.perf_counter() - t0}
    t0 = time.perf_counter()
    get(0)
    result["first"] = time.perf_counter() - t0
    runners = {name: (get, ["random"] if job["skip_full"] else ["random", "full"])}
    closers = [close]
    for limit in job["limits"]:
        if limit != name:
            limit_get, _, limit_close = _open_reader(limit, path, job)
            runners[limit] = (limit_get, ["random", "full"])
            closers.append(limit_close)
    order = list(runners.items())
    rounds = []
    for number in range(job["rounds"]):
        times = {}
        for runner, (runner_get, kinds) in order if number % 2 == 0 else order[::-1]:
            times[runner], _ = _passes(runner_get, n, kinds)
        rounds.append(times)
    for close_one in closers:
        close_one()
    return result | {"rounds": rounds}


def cold_rounds(job):
    """Cold cache: the reader and the limits in alternating rounds, each run opened afresh.

    Before each run (a reader or a limit; 200 random frames or a full pass) the file is
    dropped from the page cache twice, 0.1 s apart (read-ahead still in flight from the run
    before would otherwise land in the cache, or compete for the disk), so every run starts
    cold and pays its own open; the parent
    takes the ratios round by round, as for warm. Each round also records the largest fraction
    of the file still cached after a drop (mapped pages cannot be dropped: each run is closed
    and released before the next drop), and the bytes each pass made the disk read.
    """
    import gc

    path, name = job["path"], job["reader"]
    runners = [name] + [limit for limit in job["limits"] if limit != name]
    kinds = ["random"] if job["skip_full"] else ["random", "full"]
    rounds = []
    for number in range(job["rounds"]):
        times = {runner: {} for runner in runners}
        _drop_cache(path)
        time.sleep(0.1)
        still_cached = _drop_cache(path)
        t0 = time.perf_counter()
        _read_ifd_pages(path, job["ifd_runs"])
        times["ifd pages"] = time.perf_counter() - t0
        for kind in kinds:
            for runner in runners if number % 2 == 0 else runners[::-1]:
                _drop_cache(path)
                time.sleep(0.1)
                still_cached = max(still_cached, _drop_cache(path))
                t0 = time.perf_counter()
                get, n, close = _open_reader(runner, path, job)
                opened = time.perf_counter() - t0
                disk_before = _disk_read_bytes()
                passed = _passes(get, n, [kind])[0][kind]
                times[runner].update({kind: passed, f"open {kind}": opened,
                                      f"{kind} with open": opened + passed})
                if disk_before is not None:
                    times[runner][f"disk {kind}"] = _disk_read_bytes() - disk_before
                close()
                del get, close
                gc.collect()  # a peer's mapping goes with its last reference
        rounds.append(times | {"still cached": still_cached})
    return {"rounds": rounds}


# --- parent -------------------------------------------------------------------------------------


def _stack(frames, size, dtype="u2"):
    """Smooth-ish frames (compressible like real images) with a per-frame signature."""
    yy, xx = np.mgrid[:size, :size]
    base = ((yy * 7 + xx * 3) % 4096).astype(dtype)
    rng = np.random.default_rng(1)
    for k in range(frames):
        frame = base + rng.integers(0, 16, (size, size), dtype=dtype)
        frame[0, 0] = k % 65536
        yield frame


def _write_pages(path, frames, bigtiff=False):
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        for frame in frames:
            tif.write(frame, contiguous=False, metadata=None)


def make_files(folder, frames, size, pages, only=()):
    """Write the benchmark files (all kinds, or those in ``only``); return {kind: path}."""
    import tifffile

    def stack():
        return np.stack(list(_stack(frames, size)))

    writers = {
        "shaped": lambda p: tifffile.imwrite(p, stack()),
        "interleaved": lambda p: _write_pages(p, _stack(frames, size)),
        "imagej": lambda p: tifffile.imwrite(p, stack(), imagej=True, metadata={"axes": "TYX"}),
        "bigtiff": lambda p: _write_pages(p, _stack(frames, size), bigtiff=True),
        "deflate": lambda p: tifffile.imwrite(p, stack(), compression="zlib"),
        "pages": lambda p: _write_pages(p, _stack(pages, 32)),
    }
    files = {}
    for kind, write in writers.items():
        if only and kind not in only:
            continue
        path = folder / f"{kind}.tif"
        write(path)
        files[f"{pages // 1000}k pages 32x32" if kind == "pages" else kind] = path
    return files


READERS = ["limit-pread", "limit-memmap", "tifffile-page-decode",
           "floor: pims.Frame by preadv", "TiffStackND", "TiffStackND copy=False",
           "pims TiffStack", "tifffile.memmap", "tifffile imread(key=i)", "tifffile zarr store"]


def _readers_for(kind):
    if kind == "deflate":
        return ["tifffile-page-decode", "TiffStackND", "pims TiffStack",
                "tifffile imread(key=i)", "tifffile zarr store"]
    if "pages" in kind:  # imread(key=i) walks the chain per call: quadratic on 100k pages
        return [r for r in READERS if r not in ("tifffile imread(key=i)",
                                                "tifffile-page-decode")]
    return [r for r in READERS if r != "tifffile-page-decode"]


def _skip_full(kind, name):
    """Full passes that take minutes and say nothing new: imread(key=i) re-walks the IFD chain
    on every call (quadratic); the zarr store's per-chunk overhead on 100k tiny pages."""
    return name == "tifffile imread(key=i)" or ("pages" in kind and "zarr" in name)


def run_one(job):
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:60]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames of the big stacks")
    parser.add_argument("--size", type=int, default=512, help="frame width and height")
    parser.add_argument("--pages", type=int, default=100_000, help="pages of the many-page file")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per reader, "
                        "file and mode")
    parser.add_argument("--rounds", type=int, default=5, help="warm: alternating rounds of "
                        "the reader and the limits in each process")
    parser.add_argument("--cold-rounds", type=int, default=3, help="cold: alternating rounds "
                        "of the reader and the limits in each process")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="scratch folder")
    parser.add_argument("--only", default="", help="comma-separated subset of: shaped, "
                        "interleaved, imagej, bigtiff, deflate, pages")
    parser.add_argument("--raw", help="also write every run's measurements to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    folder = Path(tempfile.mkdtemp(prefix="bench_read_", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        only = {k.strip() for k in args.only.split(",") if k.strip()}
        files = make_files(folder, args.frames, args.size, args.pages, only)
        print(f"# generated {len(files)} files in {time.perf_counter() - t0:.0f} s "
              f"({args.frames} x {args.size} x {args.size} uint16; {args.pages} pages 32x32)")
        print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cpus; {args.repeats} fresh "
              f"processes per reader and mode, {args.rounds} warm and {args.cold_rounds} cold "
              "rounds in each; ratio = time / limit (lower is better)")
        raw = {}
        for kind, path in files.items():
            raw[kind] = report(kind, path, args.repeats,
                               {"warm": args.rounds, "cold": args.cold_rounds})
            if args.raw:
                Path(args.raw).write_text(json.dumps(raw))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(kind, path, repeats, rounds):
    """Measure every reader on one file, print its table and return the runs' results.

    ``rounds``: the number of rounds per mode.
    """
    offsets, shape, dtype, ifd_runs = _plane_offsets(path)
    spec_file = path.with_suffix(".json")  # plane offsets: too long for a command line
    spec_file.write_text(json.dumps({"offsets": offsets, "shape": shape, "dtype": dtype,
                                     "ifd_runs": ifd_runs}))
    spec = {"spec": str(spec_file)}
    limit_names = ["tifffile-page-decode"] if kind == "deflate" else ["limit-pread",
                                                                      "limit-memmap"]
    results = {name: {"warm": [], "cold": [], "memory": []} for name in _readers_for(kind)}
    for _ in range(repeats):  # readers interleaved: the machine's drift hits them alike
        for name, runs in results.items():
            for mode in runs:
                if mode == "warm":
                    _warm(path)
                runs[mode].append(run_one({**spec, "path": str(path), "reader": name,
                                           "mode": mode, "skip_full": _skip_full(kind, name),
                                           "limits": limit_names,
                                           "rounds": rounds.get(mode, 0)}))
    rounds_of = {name: {mode: [r for run in runs[mode] for r in run.get("rounds", [])]
                        for mode in ("warm", "cold")} for name, runs in results.items()}
    limit_rounds = rounds_of[limit_names[0]]
    still_cached = max((r["still cached"] for runs in rounds_of.values() for r in runs["cold"]),
                       default=float("nan"))
    print(f"\n## {kind}: {len(offsets)} frames, {path.stat().st_size / 2**20:.0f} MiB; "
          f"{limit_names[0]} full pass, median cold "
          f"{_median([r[limit_names[0]] for r in limit_rounds['cold']], 'full'):.3f} s vs warm "
          f"{_median([r[limit_names[0]] for r in limit_rounds['warm']], 'full'):.3f} s; "
          f"largest fraction of the file still cached after a drop: {still_cached:.1%}")
    ifd_mib = sum(end - start for start, end in ifd_runs) / 2**20
    print(f"ratio: median (quartiles) over {repeats} processes x {rounds['warm']} warm / "
          f"{rounds['cold']} cold rounds of the reader's "
          "time / the faster limit's in the same round; 'vs pread': / limit-pread's. Cold: "
          "every run opens afresh after a cache drop; '/ pread': over limit-pread's; 'with "
          "open': the open (a limit's: its plane offsets are given) added to both times. "
          "disk: bytes read from the disk during a cold pass (open excluded), over the "
          f"{limit_names[0]}'s in the same round. '/ IFD pages': the cold open over reading "
          f"the {ifd_mib:.1f} MiB of file pages that hold the IFDs (places known, all "
          "announced to the kernel first) in the same round. n/a: skipped (see _skip_full)")
    print("| reader | open ms warm | first frame ms | random warm | full warm | vs pread: "
          "random / full | random cold | full cold | disk cold: random / full | open ms cold "
          "(/ IFD pages) | anon MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        error = next((r["error"] for v in runs.values() for r in v if "error" in r), None)
        if error and not rounds_of[name]["warm"]:
            print(f"| {name} | fails: {error} | | | | | | | | | |")
            continue
        warm_rounds_, cold_rounds_ = rounds_of[name]["warm"], rounds_of[name]["cold"]
        warm = [_paired(warm_rounds_, name, limit_names, pass_) for pass_ in ("random", "full")]
        pread = [_paired(warm_rounds_, name, limit_names[:1], pass_, quartiles=False)
                 for pass_ in ("random", "full")]
        cold = [f"{_paired(cold_rounds_, name, limit_names, pass_)} / pread "
                f"{_paired(cold_rounds_, name, limit_names[:1], pass_, False)}; with open "
                f"{_paired(cold_rounds_, name, limit_names, f'{pass_} with open', False)}"
                for pass_ in ("random", "full")]
        disk = [_paired(cold_rounds_, name, limit_names[:1], f"disk {pass_}", False)
                for pass_ in ("random", "full")]
        open_cold = _median([r[name] for r in cold_rounds_], "open random")
        open_limit = statistics.median([r[name]["open random"] / r["ifd pages"]
                                        for r in cold_rounds_ if "open random" in r[name]]
                                       or [float("nan")])
        print(f"| {name} | {_median(runs['warm'], 'open') * 1e3:.1f} | "
              f"{_median(runs['warm'], 'first') * 1e3:.2f} | {warm[0]} | {warm[1]} | "
              f"{pread[0]} / {pread[1]} | {cold[0]} | {cold[1]} | {disk[0]} / {disk[1]} | "
              f"{open_cold * 1e3:.1f} ({open_limit:.2f}) | "
              f"{_median(runs['memory'], 'anon_mb'):.1f} |")
    sys.stdout.flush()
    return results


def _paired(rounds, name, limits, pass_, quartiles=True):
    """Median (and quartiles) over rounds of ``name``'s ``pass_`` time (or bytes: any key of
    the rounds' results) over the smallest limit's."""
    ratios = [r[name][pass_] / min(r[n][pass_] for n in limits)
              for r in rounds if pass_ in r[name] and all(r[n].get(pass_) for n in limits)]
    if not ratios:
        return "n/a"
    text = f"{statistics.median(ratios):.2f}"
    if quartiles and len(ratios) > 1:
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        text += f" ({q1:.2f}-{q3:.2f})"
    return text


def _median(runs, key):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else float("nan")


if __name__ == "__main__":
    main()
