from __future__ import annotations

import contextlib
import re
import sys
import time
from fractions import Fraction

import imageio_ffmpeg
import numpy as np
import pytest
import tifffile

from pims_videoutils import ExportArgumentError, FFmpegError
from pims_videoutils._ffmpeg import (
    FFmpegProcess,
    build_command,
    check_extra_args,
    choose_codec,
    ffmpeg_exe,
    ffv1_slices,
    output_pixel_format,
    size_multiple,
)


@pytest.mark.parametrize(
    ("ext", "codec", "lossless", "expected"),
    [
        (".mp4", None, False, "libx264"),
        (".MP4", None, False, "libx264"),
        (".mkv", None, False, "libx264"),
        (".mkv", None, True, "ffv1"),
        (".avi", None, True, "ffv1"),
        (".webm", None, False, "libvpx-vp9"),
        (".mov", None, False, "prores_ks"),
        (".gif", None, False, "gif"),
        (".mp4", "libx265", False, "libx265"),
        (".mkv", "ffv1", False, "ffv1"),
    ],
)
def test_choose_codec(ext, codec, lossless, expected):
    assert choose_codec(ext, codec, lossless) == expected


@pytest.mark.parametrize(
    ("ext", "codec", "lossless"),
    [
        (".png", None, False),
        ("", None, False),
        (".mp4", "ffv1", False),
        (".mp4", None, True),
        (".webm", "libx264", False),
        (".mkv", "libx264", True),
        (".mkv", "no-such-codec", False),
    ],
)
def test_choose_codec_rejects(ext, codec, lossless):
    with pytest.raises(ExportArgumentError):
        choose_codec(ext, codec, lossless)


def test_output_pixel_formats():
    assert output_pixel_format("libx264", "gray") == "yuv420p"
    assert output_pixel_format("libx264", "rgb24") == "yuv420p"
    assert output_pixel_format("ffv1", "gray") == "gray"
    assert output_pixel_format("ffv1", "gray16le") == "gray16le"
    assert output_pixel_format("ffv1", "rgb24") == "gbrp"
    assert output_pixel_format("prores_ks", "gray") == "yuv422p10le"
    assert output_pixel_format("gif", "rgb24") == "pal8"
    with pytest.raises(ExportArgumentError):
        output_pixel_format("libx264", "gray16le")
    assert size_multiple("yuv420p") == (2, 2)
    assert size_multiple("yuv422p10le") == (1, 2)
    assert size_multiple("gray16le") == (1, 1)


def command(**kw):
    base = dict(
        ffmpeg="ffmpeg",
        output="out.mp4",
        width=41,
        height=31,
        input_pixel_format="gray",
        fps=Fraction(30000, 1001),
        codec="libx264",
        output_pixel_format="yuv420p",
    )
    base.update(kw)
    return build_command(**base)


def option(cmd, name, nth=0):
    positions = [i for i, a in enumerate(cmd) if a == name]
    return cmd[positions[nth] + 1]


def test_build_command_input_and_timing():
    cmd = command(padded_size=(32, 42))
    i = cmd.index("-i")
    assert cmd[i + 1] == "pipe:0"
    assert option(cmd, "-f") == "rawvideo"
    assert option(cmd, "-pix_fmt", 0) == "gray"  # input: gray stays gray
    assert option(cmd, "-s") == "41x31"
    assert option(cmd, "-r") == "30000/1001"
    assert cmd.index("-r") < i  # a constant rate on the input
    assert option(cmd, "-fps_mode") == "passthrough"
    assert option(cmd, "-pix_fmt", 1) == "yuv420p"
    assert option(cmd, "-vf") == "pad=42:32:0:0:black"
    assert option(cmd, "-c:v") == "libx264"
    assert option(cmd, "-crf") == "18" and option(cmd, "-preset") == "medium"
    assert cmd[-2:] == ["-y", "out.mp4"]


def test_build_command_options():
    cmd = command(crf=23, preset="ultrafast", extra_args=["-tune", "film"])
    assert option(cmd, "-crf") == "23" and option(cmd, "-preset") == "ultrafast"
    assert cmd[-4:] == ["-tune", "film", "-y", "out.mp4"]
    assert "-vf" not in cmd
    up = command(scale=2, padded_size=(62, 82))
    assert option(up, "-vf") == "scale=82:62:flags=neighbor"
    down = command(scale=Fraction(1, 2), padded_size=(16, 20))
    assert option(down, "-vf") == "crop=40:30:0:0,scale=20:15:flags=area,pad=20:16:0:0:black"
    ffv1 = command(codec="ffv1", output_pixel_format="gray16le", output="a.mkv")
    assert option(ffv1, "-slices") == "4" and option(ffv1, "-threads") == "2"
    assert "-crf" not in ffv1 and "-movflags" not in ffv1
    gif = command(codec="gif", output_pixel_format="pal8", output="a.gif")
    assert "palettegen" in option(gif, "-vf") and "paletteuse" in option(gif, "-vf")
    for bad in (dict(codec="ffv1", crf=3), dict(codec="libvpx-vp9", preset="fast")):
        with pytest.raises(ExportArgumentError):
            command(**bad)


def real_command(tmp_path, *extra, fps=5, name="a.mkv"):
    return build_command(
        ffmpeg=ffmpeg_exe(),
        output=tmp_path / name,
        width=16,
        height=8,
        input_pixel_format="gray",
        fps=Fraction(fps),
        codec="ffv1",
        output_pixel_format="gray",
        extra_args=extra,
    )


@pytest.mark.parametrize(
    "extra_args",
    [[], ["-tune", "film"], ["-vf", "scale=2:2,setsar=1"], ["-frames:a", "1"],
     ["-vf", "drawtext=text='a,fps=3'"], ["-vf", r"drawtext=text=a\,fps=3"],
     ["-filter:a", "atrim=end=1"], ["-filter_complex", "[0:v]null"],
     ["-metadata", "comment=-t 5"]],
)
def test_extra_args_that_keep_the_frames_pass(extra_args):
    assert check_extra_args(iter(extra_args)) == extra_args


@pytest.mark.parametrize(
    ("extra_args", "named"),
    [(["-r:0", "5"], "'-r:0'"), (["-frames:v:0", "1"], "'-frames:v:0'"),
     (["-vf", "[in] scale=4:4 , fps@slow=2 [out]"], "the filter 'fps' in '-vf'"),
     (["-filter", "select='gt(scene,0.1)'"], "the filter 'select' in '-filter'"),
     (["-filter:v:0", "null;[a]trim=1"], "the filter 'trim' in '-filter:v:0'")],
)
def test_extra_args_that_change_the_frame_count_are_refused(extra_args, named):
    with pytest.raises(ExportArgumentError, match=f"^extra_args: {re.escape(named)} can change"):
        check_extra_args(extra_args)


def test_process_writes_every_frame(tmp_path):
    frames = np.arange(12 * 8 * 16, dtype=np.uint8).reshape(12, 8, 16)
    with FFmpegProcess(real_command(tmp_path)) as proc:
        for frame in frames:
            proc.write(frame)
        proc.finish()
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "a.mkv")) == (12, 2.4)


def test_process_drains_verbose_stderr(tmp_path):
    # ffmpeg at debug level writes far more than a 64 KiB pipe: it must not stall
    frame = np.zeros((8, 16), np.uint8)
    with FFmpegProcess(real_command(tmp_path, "-loglevel", "debug")) as proc:
        for _ in range(200):
            proc.write(frame)
        proc.finish()
    assert proc.stderr_tail  # the tail was kept
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "a.mkv"))[0] == 200


def test_process_failure_carries_command_and_stderr(tmp_path):
    cmd = real_command(tmp_path, "-no-such-option", "1")
    frame = np.zeros((8, 16), np.uint8)
    with pytest.raises(FFmpegError) as info, FFmpegProcess(cmd) as proc:
        for _ in range(1000):
            proc.write(frame)
        proc.finish()
    err = info.value
    assert err.command == cmd
    assert err.returncode not in (0, None)
    assert "no-such-option" in err.stderr_tail
    assert "no-such-option" in str(err)
    assert proc._proc.poll() is not None


def test_process_is_killed_on_exception(tmp_path):
    frame = np.zeros((8, 16), np.uint8)
    with pytest.raises(KeyboardInterrupt), FFmpegProcess(real_command(tmp_path)) as proc:
        proc.write(frame)
        raise KeyboardInterrupt
    assert proc._proc.returncode is not None


def test_missing_binary():
    with pytest.raises(FFmpegError):
        FFmpegProcess(["/no/such/ffmpeg", "-version"])


def test_no_ffmpeg_found_is_an_ffmpeg_error(tmp_path, monkeypatch):
    """imageio-ffmpeg raises a bare RuntimeError when it finds no binary (a source install
    without one); to_video passed it on, and pims-video printed a traceback."""
    from pims_videoutils import cli, to_video

    def no_ffmpeg():
        raise RuntimeError("No ffmpeg exe could be found. Install ffmpeg on your system, "
                           "or set the IMAGEIO_FFMPEG_EXE environment variable.")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_ffmpeg)
    monkeypatch.setattr(cli, "_skip_display_imports", lambda: None)  # (for this process)
    with pytest.raises(FFmpegError, match="No ffmpeg exe could be found"):
        to_video(np.zeros((2, 8, 8), np.uint8), tmp_path / "m.mp4", progress=False)
    assert list(tmp_path.iterdir()) == []
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((2, 8, 8), np.uint8), imagej=True)
    assert cli.main(["convert", str(tmp_path / "s.tif"), str(tmp_path / "m.mp4")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_pipe_is_grown_to_a_frame(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_GETPIPE_SZ"):
        pytest.skip("pipe sizes are Linux-only")
    with FFmpegProcess(real_command(tmp_path), pipe_bytes=1 << 20) as proc:
        size = fcntl.fcntl(proc._proc.stdin.fileno(), fcntl.F_GETPIPE_SZ)
        proc.write(np.zeros((8, 16), np.uint8))
        proc.finish()
    assert size > 65536


@pytest.mark.parametrize("where", ["pipe", "thread", "thread started"])
def test_ctrl_c_during_start_kills_ffmpeg(tmp_path, monkeypatch, where):
    import subprocess
    import threading

    from pims_videoutils import _ffmpeg

    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    real_start = threading.Thread.start

    def start_then_interrupt(thread):  # Ctrl-C while start() waits for the thread to run
        real_start(thread)
        raise KeyboardInterrupt

    real_drain = _ffmpeg.FFmpegProcess._drain

    def late_drain(self):  # the thread reads only after the clean-up closed the pipe
        time.sleep(0.2)
        real_drain(self)

    command = real_command(tmp_path)  # (imageio-ffmpeg's first look runs ffmpeg -version)
    monkeypatch.setattr(_ffmpeg.subprocess, "Popen", popen)
    if where == "pipe":
        monkeypatch.setattr(_ffmpeg, "_grow_pipe", interrupt)
    elif where == "thread":
        monkeypatch.setattr(threading.Thread, "start", interrupt)
    else:  # the stderr thread must not fail on the pipe closed under it
        monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
        monkeypatch.setattr(_ffmpeg.FFmpegProcess, "_drain", late_drain)
    with pytest.raises(KeyboardInterrupt):
        FFmpegProcess(command, pipe_bytes=1 << 20)
    monkeypatch.undo()
    for thread in threading.enumerate():
        if thread.name == "ffmpeg-stderr":
            thread.join()  # (an exception in it fails the test)
    try:
        assert started[0].returncode is not None  # killed and reaped: no orphan, no zombie
        assert started[0].stdin.closed and started[0].stderr.closed
    finally:
        if started[0].poll() is None:
            started[0].kill()
            started[0].wait()
    assert not (tmp_path / "a.mkv").exists()


@pytest.mark.skipif(not hasattr(__import__("subprocess"), "_fork_exec"), reason="POSIX only")
def test_ctrl_c_inside_popen_kills_ffmpeg(tmp_path, monkeypatch):
    """Ctrl-C (in Jupyter: SIGINT to the kernel alone) while Popen waits for the forked
    ffmpeg to start made Popen raise with ffmpeg running and no object to stop it: ffmpeg
    went on, wrote its (empty) file after the export had removed it, and was never reaped."""
    import os
    import signal
    import subprocess

    real_fork_exec = subprocess._fork_exec
    children = []

    def fork_exec(*args, **kwargs):
        children.append(real_fork_exec(*args, **kwargs))
        signal.raise_signal(signal.SIGINT)  # Ctrl-C, just after the fork
        return children[-1]

    monkeypatch.setattr(subprocess, "_fork_exec", fork_exec)
    with pytest.raises(KeyboardInterrupt):
        FFmpegProcess(real_command(tmp_path))
    monkeypatch.undo()
    try:
        with pytest.raises(ChildProcessError):  # already reaped: killed and waited for
            os.waitpid(children[0], os.WNOHANG)
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):  # without the fix
            os.kill(children[0], signal.SIGKILL)
            os.waitpid(children[0], 0)
    assert not (tmp_path / "a.mkv").exists()


def encodes_one_frame(width, height, pixel_format):
    """Let ffmpeg itself say whether our ffv1 command takes one frame of this size."""
    import subprocess

    cmd = build_command(
        ffmpeg=ffmpeg_exe(), output="out.mkv", width=width, height=height,
        input_pixel_format="rgb24" if pixel_format == "gbrp" else pixel_format,
        fps=Fraction(5), codec="ffv1", output_pixel_format=pixel_format,
    )
    cmd[-2:] = ["-f", "null", "-"]  # encode, write nothing
    size = width * height * {"gray": 1, "gray16le": 2, "gbrp": 3}[pixel_format]
    result = subprocess.run(cmd, input=bytes(size), capture_output=True, timeout=120)
    return result.returncode == 0, result.stderr.decode(errors="replace")[-300:]


@pytest.mark.parametrize("pixel_format", ["gray", "gray16le", "gbrp"])
@pytest.mark.parametrize(
    ("width", "height"),
    [(1, 1), (1, 7), (7, 1), (2, 2), (1, 288), (1, 289), (400, 1), (353, 2), (41, 31)],
)
def test_ffv1_takes_thin_and_tiny_frames(width, height, pixel_format):
    ok, stderr = encodes_one_frame(width, height, pixel_format)
    assert ok, stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("width", "height", "pixel_format"),
    [(5640, 5640, "gray16le"), (8000, 8000, "gray16le"), (4480, 4480, "gbrp"),
     (7760, 7760, "gray")],
)
def test_ffv1_takes_frames_too_large_for_four_slices(width, height, pixel_format):
    ok, stderr = encodes_one_frame(width, height, pixel_format)
    assert ok, stderr


def test_ffv1_slices():
    assert ffv1_slices(1024, 1024, "gray16le") == 4  # the fast default
    assert ffv1_slices(1, 100, "gray") == 1
    assert ffv1_slices(1, 300, "gray") is None  # only level 1 (no slices) takes it
    assert ffv1_slices(8000, 8000, "gray16le") > 4


def test_frame_count_of_a_progress_report_written_into_a_log_line():
    """ffmpeg writes a progress block in one piece, but a log message in parts (context,
    level, text): a block can land after the context of a message, on its line."""
    report = ("[mp4 @ 0x5f] frame=30\nfps=0.00\nprogress=end\n"
              "[warning] a message\n")
    command = [sys.executable, "-c", f"import sys; sys.stderr.write({report!r})"]
    with FFmpegProcess(command) as proc:
        proc.finish()
    assert proc.frames_encoded == 30
    assert proc.stderr_tail.splitlines() == ["[mp4 @ 0x5f] frame=30", "[warning] a message"]


@pytest.mark.parametrize(
    ("returncode", "words"),
    [(1, "(ffmpeg exit code 1)"), (-9, "(ffmpeg killed by signal 9 (SIGKILL))"),
     (-15, "(ffmpeg killed by signal 15 (SIGTERM))")],
)
def test_error_says_how_ffmpeg_ended(returncode, words):
    error = FFmpegError("ffmpeg failed", ["ffmpeg"], returncode)
    assert str(error) == f"ffmpeg failed {words}"


def test_error_of_an_ffmpeg_that_ended_well_does_not_say_exit_code_0():
    """An error found after ffmpeg exited 0 (a file left empty...) ended with "(ffmpeg exit
    code 0)", as if ffmpeg had failed."""
    error = FFmpegError("ffmpeg wrote nothing to the file", ["ffmpeg"], 0)
    assert str(error) == "ffmpeg wrote nothing to the file"
    assert error.returncode == 0 and error.exit_status == "ffmpeg exit code 0"
