"""Shared fixtures: the real files in ../shared/data/real and leak checks for every test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real third-party TIFF files; skips when ``../shared`` is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent")
    return REAL_DATA


@pytest.fixture
def lock_holder():
    """A function that starts a process creating a file and holding its ``flock`` (as a
    running export holds its temporary file's); the processes are killed after the test."""
    if sys.platform == "win32":
        pytest.skip("no flock on Windows")
    holders = []

    def hold(path: Path) -> None:
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, os, sys, time\n"
             f"fd = os.open({str(path)!r}, os.O_WRONLY | os.O_CREAT)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\n"
             "print('held', flush=True)\n"
             "time.sleep(600)\n"],
            stdout=subprocess.PIPE, text=True,
        )
        holders.append(holder)
        assert holder.stdout.readline() == "held\n"

    yield hold
    for holder in holders:
        holder.kill()
        holder.communicate()


@pytest.fixture
def ndtiff_index_reads(monkeypatch) -> list[tuple]:
    """The arguments of each call our code makes to ``tifffile.read_ndtiff_index`` (tifffile's
    own reading of the index, through its module's name, is not counted)."""
    import tifffile

    reads: list[tuple] = []
    read_index = tifffile.read_ndtiff_index

    def counted(*args, **kwargs):
        reads.append(args)
        return read_index(*args, **kwargs)

    monkeypatch.setattr(tifffile, "read_ndtiff_index", counted)
    return reads


def _open_image_files() -> set[str]:
    """Paths of image and video files this process holds open."""
    found = set()
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return found
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.lower().endswith((".tif", ".tiff", ".mp4", ".mkv", ".avi", ".webm", ".mov")):
            found.add(target)
    return found


def _ffmpeg_children() -> set[int]:
    """Process ids of ffmpeg processes whose parent is this process."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == me and "ffmpeg" in name:
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leaked_files_or_processes():
    """Fail a test that leaves an image file open or an ffmpeg process running."""
    files_before = _open_image_files()
    children_before = _ffmpeg_children()
    yield
    leaked_files = _open_image_files() - files_before
    leaked_children = _ffmpeg_children() - children_before
    assert not leaked_files, f"test left files open: {sorted(leaked_files)}"
    assert not leaked_children, f"test left ffmpeg processes running: {sorted(leaked_children)}"
