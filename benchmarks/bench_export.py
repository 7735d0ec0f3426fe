"""Benchmark ``to_video`` against the physical limit and the peers, side by side.

The limit is ffmpeg encoding the same already-converted pixels (what ``to_video`` sends on
its pipe) from a raw file with exactly the same output options. Every contender writes the
same frames with the same codec settings (crf 18, same preset); times are medians of
``--repeats`` runs, interleaved (every other repeat in reverse order) so machine noise hits
everyone alike, each after a ``sync`` (no run pays for writing back another's output). Ratios
are medians over the repeats of a run's time over the limit's time in the same repeat; each row
also shows their range (the noise of the machine), and the CPU ratio (median over the
repeats): user + system seconds of this process and its children (ffmpeg), the steadier
measure of the work a writer adds when the machine is shared. (Writers that omit
``-movflags +faststart``, which we and the limit use for .mp4, skip a final rewrite of the
file: imageio v2.)

Scenarios: uint8 gray and uint16 (default contrast: one range from percentiles) with libx264
ultrafast and medium; uint16 lossless ffv1 gray16le (-slices 4 -threads 2).

Peers: imageio.v2.mimwrite (imageio-ffmpeg), imageio v3's pyav plugin (preset/crf set on
the PyAV stream: the plugin has no argument for them), moviepy ImageSequenceClip (needs RGB
frames: the gray->RGB expansion is part of its time), pims.export (reported as failing when
it raises). Peers get the data as users hand it over; a note says when their output is not
the requested one (e.g. 16-bit data reduced to 8 bits).

Usage::

    PYTHONPATH=. python benchmarks/bench_export.py --frames 60 --size 256   # quick check
    PYTHONPATH=. python benchmarks/bench_export.py                          # 500 x 1024²
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import tempfile
import time
import warnings
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from pims_videoutils import to_video
from pims_videoutils._ffmpeg import build_command, ffmpeg_exe, output_pixel_format
from pims_videoutils.intensity import IntensityMap

FPS = 25
CRF = 18
NOISE = 0.01  # relative noise: about 2.5 gray levels in 8 bits, 30 counts in 12 bits
SCENARIOS = [
    # name, dtype, codec, preset
    ("uint8 gray, x264 ultrafast", "uint8", "libx264", "ultrafast"),
    ("uint16 auto contrast, x264 ultrafast", "uint16", "libx264", "ultrafast"),
    ("uint16 lossless ffv1 gray16le", "uint16", "ffv1", None),
    ("uint8 gray, x264 medium", "uint8", "libx264", "medium"),
    ("uint16 auto contrast, x264 medium", "uint16", "libx264", "medium"),
]
FFV1_OPTIONS = {"level": "3", "slices": "4", "threads": "2", "g": "1"}


def make_frames(n: int, size: int, dtype: str) -> list[np.ndarray]:
    """A drifting pattern with noise: 50 distinct frames, cycled (list of references)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = []
    for t in range(min(n, 50)):
        phase = 2 * np.pi * t / 50
        signal = 0.5 + 0.25 * np.sin(8 * x + phase) * np.cos(6 * y - phase)
        noisy = signal + rng.normal(0, NOISE, signal.shape)
        if dtype == "uint8":
            base.append(np.clip(noisy * 255, 0, 255).astype(np.uint8))
        else:  # 12-bit camera data with an offset
            base.append(np.clip(noisy * 3000 + 100, 0, 4095).astype(np.uint16))
    return [base[i % len(base)] for i in range(n)]


def _cpu_seconds() -> float:
    """User + system time of this process and of its finished children (ffmpeg)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds (all cores, ffmpeg included) of one call.

    The file system is synced first, so that no run pays for writing back the previous
    run's output (hundreds of MB of dirty pages).
    """
    os.sync()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    fn()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def limit_runner(frames, out: Path, raw: Path, codec: str, preset: str | None):
    """ffmpeg encoding the converted pixels from a raw file, with our output options."""
    sample = frames[0]
    if codec == "ffv1":
        pix, lut = "gray16le", None
    elif sample.dtype == np.uint8:
        pix, lut = "gray", None
    else:
        result = to_video(frames[:60], out, codec=codec, preset=preset, progress=False)
        pix, lut = "gray", IntensityMap.fixed(np.uint16, *result.intensity_range)
    with open(raw, "wb") as f:
        for frame in frames:
            f.write(np.ascontiguousarray(frame if lut is None else lut(frame)))
    height, width = sample.shape
    command = build_command(
        ffmpeg=ffmpeg_exe(),
        output=out,
        width=width,
        height=height,
        input_pixel_format=pix,
        fps=Fraction(FPS),
        codec=codec,
        output_pixel_format=output_pixel_format(codec, pix),
        preset=preset,
    )
    command[command.index("pipe:0")] = str(raw)
    return lambda: subprocess.run(command, check=True, capture_output=True)


def ours(frames, out, codec, preset):
    lossless = codec == "ffv1"
    return lambda: to_video(
        frames, out, codec=codec, preset=preset, lossless=lossless, fps=FPS, progress=False
    )


def imageio_v2(frames, out, codec, preset):
    import imageio.v2 as iio2

    if codec == "ffv1":
        params = [x for key, value in FFV1_OPTIONS.items() for x in (f"-{key}", value)]
        kwargs = dict(codec="ffv1", pixelformat="gray16le", ffmpeg_params=params)
    else:
        params = ["-preset", preset, "-crf", str(CRF)]
        kwargs = dict(codec=codec, pixelformat="yuv420p", ffmpeg_params=params)

    def run():
        logging.getLogger("imageio").setLevel(logging.ERROR)  # "lossy conversion" per frame
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iio2.mimwrite(
                out,
                frames,
                fps=FPS,
                quality=None,
                macro_block_size=1,
                ffmpeg_log_level="error",
                **kwargs,
            )

    note = "16-bit written as 8-bit (>>8)" if frames[0].dtype == np.uint16 else ""
    return run, note


def imageio_v3_pyav(frames, out, codec, preset):
    import imageio.v3 as iio3

    in_fmt = "gray" if frames[0].dtype == np.uint8 else "gray16le"
    out_fmt = "gray16le" if codec == "ffv1" else "yuv420p"
    options = FFV1_OPTIONS if codec == "ffv1" else {"preset": preset, "crf": str(CRF)}

    def run():
        with iio3.imopen(out, "w", plugin="pyav") as f:
            f.init_video_stream(codec, fps=FPS, pixel_format=out_fmt)
            f._video_stream.options = dict(options)
            f.write(frames, in_pixel_format=in_fmt)

    note = "no contrast: 16-bit range squeezed to 8 bits" if in_fmt != "gray" else ""
    return run, (note if codec != "ffv1" else "")


def moviepy_clip(frames, out, codec, preset):
    from moviepy import ImageSequenceClip

    def run():
        rgb = [np.dstack([f, f, f]) for f in frames]  # moviepy rejects gray frames
        clip = ImageSequenceClip(rgb, fps=FPS)
        params = ["-crf", str(CRF)] if codec != "ffv1" else []
        clip.write_videofile(
            str(out),
            codec=codec,
            preset=preset or "medium",
            audio=False,
            logger=None,
            ffmpeg_params=params,
            pixel_format="yuv420p" if codec != "ffv1" else None,
        )
        clip.close()

    note = "16-bit values wrapped mod 256" if frames[0].dtype == np.uint16 else ""
    return run, note


def pims_export(frames, out, codec, preset):
    import pims

    options = {"preset": preset, "crf": str(CRF)} if preset else dict(FFV1_OPTIONS)

    def run():
        pims.export(frames, str(out), rate=FPS, codec=codec, options=options)

    return run, "per-frame min/max rescaling"


PEERS = {
    "imageio.v2.mimwrite": imageio_v2,
    "imageio v3 pyav": imageio_v3_pyav,
    "moviepy": moviepy_clip,
    "pims.export": pims_export,
}


def run_scenario(name, dtype, codec, preset, n, size, repeats, peers, folder: Path):
    frames = make_frames(n, size, dtype)
    ext = ".mkv" if codec == "ffv1" else ".mp4"
    outputs = {"limit": folder / f"limit{ext}", "ours": folder / f"ours{ext}"}
    runners = {
        "limit": (limit_runner(frames, outputs["limit"], folder / "raw", codec, preset), ""),
        "ours": (ours(frames, outputs["ours"], codec, preset), ""),
    }
    failures: dict[str, str] = {}
    for peer in peers:
        outputs[peer] = folder / f"{peer.replace(' ', '_')}{ext}"
        try:
            runners[peer] = PEERS[peer](frames, outputs[peer], codec, preset)
        except ImportError as exc:  # a peer not installed is reported, not fatal
            runners[peer] = (None, "")
            failures[peer] = f"not installed ({exc.name})"
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    order = list(runners)
    for repeat in range(repeats):  # every other repeat in reverse order: no one always follows
        for label in order if repeat % 2 == 0 else order[::-1]:
            if label in failures:
                continue
            try:
                times[label].append(timed(runners[label][0]))
            except Exception as exc:  # a peer that cannot run is reported, not fatal
                failures[label] = f"fails: {type(exc).__name__}: {str(exc)[:80]}"
    (folder / "raw").unlink(missing_ok=True)
    rows = []
    for label, (_run, note) in runners.items():
        shown = LABELS.get(label, label)
        if label in failures:
            rows.append((name, shown, None, None, None, None, failures[label]))
            continue
        # each run against the limit's run of the same repeat (a peer that failed has fewer)
        pairs = list(zip(times[label], times["limit"], strict=False))
        walls, cpus = ([t[k] / limit[k] for t, limit in pairs] for k in (0, 1))
        wall = statistics.median(t[0] for t in times[label])
        spread = f"{min(walls):.2f}-{max(walls):.2f}"
        n_out = imageio_ffmpeg.count_frames_and_secs(str(outputs[label]))[0]
        rows.append((name, shown, wall, (statistics.median(walls), spread),
                     statistics.median(cpus), n_out, note))
    for path in outputs.values():
        path.unlink(missing_ok=True)
    return rows


LABELS = {"limit": "limit: ffmpeg from raw file", "ours": "pims_videoutils.to_video"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="comma-separated subset of: " + ", ".join(PEERS)
    )
    parser.add_argument(
        "--medium-peers",
        default="imageio.v2.mimwrite",
        help="peers for the x264 medium scenarios (slow: about 2 min per run at full size)",
    )
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    medium_peers = [p for p in args.medium_peers.split(",") if p]
    print(
        f"{args.frames} frames {args.size}x{args.size}, fps {FPS}, crf {CRF}, "
        f"{args.repeats} repeats; ratio = time / the limit's time in the same repeat "
        "(median, range of the repeats); "
        "CPU: user + system seconds of all processes, ffmpeg included"
    )
    print("| scenario | writer | median s | x limit | x limit, runs | CPU x limit | frames out "
          "| note |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        for name, dtype, codec, preset in SCENARIOS:
            if args.only not in name:
                continue
            rows = run_scenario(
                name,
                dtype,
                codec,
                preset,
                args.frames,
                args.size,
                args.repeats,
                medium_peers if preset == "medium" else peers,
                Path(tmp),
            )
            for scenario, label, median, ratio, cpu_ratio, n_out, note in rows:
                med = "" if median is None else f"{median:.2f}"
                rat, spread = ("", "") if ratio is None else (f"{ratio[0]:.2f}", ratio[1])
                cpu = "" if cpu_ratio is None else f"{cpu_ratio:.2f}"
                n_txt = "" if n_out is None else str(n_out)
                print(f"| {scenario} | {label} | {med} | {rat} | {spread} | {cpu} | {n_txt} "
                      f"| {note} |", flush=True)


if __name__ == "__main__":
    main()
