"""What the start-up hook costs an interpreter that never imports pims, and one that does.

1. ``python -c pass`` in two bare venvs made here, identical except that one holds the hook
   (``pims_videoutils-autoload.pth`` + ``_pims_videoutils_autoload.py``, as pip installs them);
   runs alternate between the two. Also ``-X importtime``'s own figure for the hook module.
2. ``python -c "import pims"`` in this interpreter (which must have pims-videoutils
   installed), hook on vs ``PIMS_VIDEOUTILS_NO_AUTOLOAD=1``: the price of wrapping
   ``pims.open`` (no reader is imported yet), paid only by processes that import pims.
3. ``import pims; pims.open("stack.tif")`` (a small TIFF), hook on vs off: the first call
   also imports every registered reader, and then opens with ``TiffStackND`` instead of pims's
   ``TiffStack_tifffile``; paid once per process that opens a file.

Prints medians of wall time and of CPU time (user + sys, which a busy machine disturbs less)
and ratios (with / without). Usage::

    python benchmarks/startup_cost.py [--runs 200]
"""

from __future__ import annotations

import argparse
import ast
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWITCH = "PIMS_VIDEOUTILS_NO_AUTOLOAD"


def pth_file() -> tuple[str, str]:
    """(name, content) of the .pth file, read from setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    consts = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    return consts["PTH_NAME"], consts["PTH_LINE"]


def bare_venv(where: Path, with_hook: bool) -> str:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = str(where / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if with_hook:
        name, line = pth_file()
        Path(purelib, name).write_text(line)
        module = shutil.copy(ROOT / "_pims_videoutils_autoload.py", purelib)
        py_compile.compile(module, doraise=True)  # pip byte-compiles at install time too
    return python


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run; CPU time is robust to a busy machine."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return elapsed, usage.ru_utime + usage.ru_stime


def alternate(a: list[str], b: list[str], env_a, env_b, runs: int) -> tuple[list, list]:
    """Runs of a and b, interleaved: two lists of (wall, cpu) tuples."""
    ta, tb = [], []
    for _ in range(3):  # warm the page cache, write .pyc files
        run_once(a, env_a), run_once(b, env_b)
    for _ in range(runs):
        ta.append(run_once(a, env_a))
        tb.append(run_once(b, env_b))
    return ta, tb


def hook_importtime_us(python: str, runs: int) -> tuple[float, float]:
    """Median self and cumulative import time of the hook module, from -X importtime (us)."""
    selfs, cums = [], []
    for _ in range(runs):
        err = subprocess.run(
            [python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True
        ).stderr
        for row in err.splitlines():
            if row.rstrip().endswith("_pims_videoutils_autoload"):
                own, cumulative = row.split(":", 1)[1].split("|")[:2]
                selfs.append(int(own))
                cums.append(int(cumulative))
    return statistics.median(selfs), statistics.median(cums)


def line(label: str, without: list, with_: list) -> None:
    for kind, k in (("wall", 0), ("cpu", 1)):
        m0 = statistics.median(t[k] for t in without) * 1e3
        m1 = statistics.median(t[k] for t in with_) * 1e3
        name = f"{label} ({kind})"
        print(f"{name:<40} {m0:9.2f} {m1:9.2f} {m1 - m0:+9.2f} {m1 / m0:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    env = {k: v for k, v in os.environ.items() if k not in (SWITCH, "PYTHONPATH")}
    print(f"python {sys.version.split()[0]}, {runs} alternating runs each, medians in ms\n")
    print(f"{'command':<40} {'without':>9} {'with':>9} {'diff':>9} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        bare = bare_venv(Path(tmp, "bare"), with_hook=False)
        hooked = bare_venv(Path(tmp, "hooked"), with_hook=True)
        without, with_ = alternate([bare, "-c", "pass"], [hooked, "-c", "pass"], env, env, runs)
        line("python -c pass (bare venvs)", without, with_)
        own, cumulative = hook_importtime_us(hooked, min(runs, 50))
    off = {**env, SWITCH: "1"}
    pims_cmd = [sys.executable, "-c", "import pims"]
    without, with_ = alternate(pims_cmd, pims_cmd, off, env, max(runs // 10, 10))
    line("python -c 'import pims'", without, with_)
    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np
        import tifffile

        stack = Path(tmp, "stack.tif")
        tifffile.imwrite(stack, np.zeros((10, 64, 64), np.uint16), imagej=True)
        code = f"import pims; pims.open({str(stack)!r}).close()"
        open_cmd = [sys.executable, "-W", "ignore", "-c", code]
        without, with_ = alternate(open_cmd, open_cmd, off, env, max(runs // 10, 10))
        line("import pims; pims.open(tif)", without, with_)
    print(
        f"\n-X importtime, _pims_videoutils_autoload: self {own:.0f} us, cumulative "
        f"{cumulative:.0f} us (median)"
    )
    print(
        "'import pims' rows: 'without' = PIMS_VIDEOUTILS_NO_AUTOLOAD=1, 'with' = hook on; "
        "'import pims' only wraps pims.open, the first pims.open imports the registered readers"
    )


if __name__ == "__main__":
    main()
