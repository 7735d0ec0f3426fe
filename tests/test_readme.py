"""Every command in README.md runs and does what the README says.

The shell blocks run with bash in a temporary folder (``pip install`` steps left out: the
package under test is this checkout), with small stand-ins for the user's own data in
``data/`` (stacks) and ``frames/`` (one plane per file). The Python example runs for real and
its printed values must equal the ``# comments`` after each ``print``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import tifffile

from pims_videoutils.sample import write_sample

PROJECT_ROOT = Path(__file__).resolve().parents[1]
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
QUICKSTART = (
    "pip install . && pims-video sample sample.tif && pims-video convert sample.tif sample.mp4"
)
TEST_COMMAND = 'pip install -e ".[test]" && pytest'


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def marked_block(marker: str) -> str:
    """The first fenced block after ``<!-- marker -->``, as .ci/run extracts it."""
    after = README.split(f"<!-- {marker} -->", 1)[1]
    return re.search(r"^```\w*\n(.*?)^```", after, flags=re.M | re.S).group(1).strip()


def env_with_checkout() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *sys.path])}


def test_setup_commands_are_the_fixed_ones():
    assert marked_block("quickstart") == QUICKSTART
    assert marked_block("test-command") == TEST_COMMAND


def test_every_shell_command_runs(tmp_path):
    # Stand-ins for the user's own data that the README's examples name.
    (tmp_path / "data").mkdir()
    for name, seed in (("cells1", 1), ("cells2", 2)):
        write_sample(tmp_path / "data" / f"{name}.tif", seed=seed, n_frames=6, n_z=2,
                     height=64, width=64, n_spots=6)
    (tmp_path / "frames").mkdir()
    for t in range(4):
        plane = tifffile.imread(tmp_path / "data" / "cells1.tif")[t, 0, 0]
        tifffile.imwrite(tmp_path / "frames" / f"img_{t:03d}.tif", plane)

    blocks = [b for b in code_blocks("bash") if b.strip() != TEST_COMMAND]
    assert any(QUICKSTART in b for b in blocks)
    script = "\n".join(blocks)
    script = re.sub(r"pip install \S+ && ", "", script)
    assert "pip " not in script
    prelude = "set -euo pipefail\n"
    if shutil.which("pims-video") is None:  # not installed: the same entry point via -m
        prelude += f'pims-video() {{ "{sys.executable}" -m pims_videoutils "$@"; }}\n'
    result = subprocess.run(
        ["bash", "-c", prelude + script], cwd=tmp_path, env=env_with_checkout(),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    # Every file the commands name was written, with the frames the options select.
    commands = [line.split("#")[0].split() for line in script.splitlines()]
    outputs = [c[3] for c in commands if c[:2] == ["pims-video", "convert"] and len(c) > 3]
    outputs += [c[2] for c in commands if c[:2] == ["pims-video", "sample"]]
    assert len(outputs) >= 8
    for name in outputs:
        assert (tmp_path / name).is_file(), name
    expected_frames = {
        "sample.mp4": 50,  # the sample's 50 time points
        "zstack.mp4": 3,  # its 3 z planes
        "part.mp4": len(range(10, 40, 2)),
        "frames.mp4": 4,  # the 4 files in frames/
    }
    for name, n_frames in expected_frames.items():
        assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / name))[0] == n_frames, name
    assert tifffile.imread(tmp_path / "small.tif").shape == (20, 3, 2, 128, 128)
    movies = sorted(p.name for p in (tmp_path / "movies").iterdir())
    assert movies == ["cells1.mp4", "cells2.mp4"]


def test_python_example_prints_what_the_readme_says(tmp_path):
    try:
        distribution("pims-videoutils")
    except PackageNotFoundError:
        pytest.skip("pims.open finds our readers only once installed (pip install -e .)")
    (example,) = code_blocks("python")
    expected = [
        line.split("#", 1)[1].strip()
        for line in example.splitlines()
        if line.strip().startswith("print(")
    ]
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, env=env_with_checkout(),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
    n_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "movie.mp4"))
    assert n_frames == 50


def test_codecs_the_readme_says_need_no_imagecodecs(tmp_path):
    """The codecs the README lists as working without ``imagecodecs`` do (it is blocked)."""
    claim = re.search(r"for codecs beyond (.+?)(?:, such as|\))", README.replace("\n  ", " "))
    assert claim, "README no longer says which codecs need no imagecodecs"
    names = re.split(r", | and ", claim.group(1))
    compression = {"deflate": "zlib", "LZW": "lzw", "PackBits": "packbits"}
    data = np.arange(3 * 16 * 20, dtype=np.uint16).reshape(3, 16, 20) % 1000
    for name in names:  # written here, where imagecodecs may be installed
        tifffile.imwrite(tmp_path / f"{name}.tif", data, compression=compression[name],
                         photometric="minisblack")
    np.save(tmp_path / "data.npy", data)
    code = f"""
import sys
sys.modules["imagecodecs"] = None  # not installed
import numpy as np
from pims_videoutils import TiffStackND
data = np.load({str(tmp_path / "data.npy")!r})
for name in {names!r}:
    with TiffStackND({str(tmp_path)!r} + "/" + name + ".tif") as reader:
        assert reader.metadata["storage"] == "decoded"
        np.testing.assert_array_equal(np.stack([reader[i] for i in range(3)]), data), name
"""
    result = subprocess.run([sys.executable, "-c", code], env=env_with_checkout(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_not_a_tiff_is_a_stack_read_error_with_older_tifffile(tmp_path):
    """On Python 3.10 (the README's minimum) pip installs a tifffile whose TiffFileError is a
    bare Exception, not yet a ValueError: it must still become our StackReadError."""
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"this is not a TIFF file at all" * 10)
    code = f"""
import tifffile

class TiffFileError(Exception):  # as tifffile 2025.5.10 defines it
    pass

tifffile.TiffFileError = tifffile.tifffile.TiffFileError = TiffFileError
from pims_videoutils import StackReadError, TiffSequenceND, TiffStackND
for reader in (TiffStackND, TiffSequenceND):
    try:
        reader({str(bad)!r})
    except StackReadError as exc:
        assert "bad.tif" in str(exc)
"""
    result = subprocess.run([sys.executable, "-c", code], env=env_with_checkout(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_gif_frame_rates_the_readme_gives_are_those_to_video_takes(tmp_path):
    """The README said 'outside 0.0015-100 fps for .gif', but 0.0015 fps is refused: the
    slowest rate is one frame per 655.35 s (GIF's longest delay), 0.0015259 fps."""
    from pims_videoutils import ExportArgumentError, to_video

    claim = re.search(r"slower than one frame per ([\d.]+) s or faster than (\d+) fps for "
                      r"`\.gif`", README.replace("\n  ", " "))
    assert claim, "README no longer gives the frame rates a .gif can take"
    slowest, fastest = 1 / float(claim.group(1)), float(claim.group(2))
    movie = np.zeros((2, 8, 8), np.uint8)
    for fps in (slowest, fastest):  # (1 / 655.35, a little under 100 / 65535, was refused)
        to_video(movie, tmp_path / "ok.gif", fps=fps, progress=False)
    for fps in (slowest * 0.999, fastest * 1.001):
        with pytest.raises(ExportArgumentError, match=r"than \.gif files can time"):
            to_video(movie, tmp_path / "refused.gif", fps=fps, progress=False)
