"""Registration through the ``pims.readers`` entry points and the start-up hook.

Fresh interpreters run in subprocesses on a fake site-packages folder (see FakeSite) holding
what ``pip install`` would put there: the start-up ``.pth`` line read from setup.py, a
``*.dist-info`` with the entry points declared in setup.cfg, and fake plugins. No pip is needed,
except in the ``slow`` tests at the end, which really install the package into a throwaway venv.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pims
import pytest
import tifffile

import pims_videoutils
from pims_videoutils import (
    PluginLoadWarning,
    ReaderFallbackWarning,
    StackNotFoundError,
    StackReadError,
)
from pims_videoutils._open import opens_as_sequence
from pims_videoutils._registration import ENTRY_POINT_GROUP, load_readers

ROOT = Path(__file__).resolve().parents[1]
SWITCH = "PIMS_VIDEOUTILS_NO_AUTOLOAD"

FAKE_PLUGIN = '''
import pims

class FakeReader(pims.FramesSequence):
    """Claims the made-up extension .fakestack."""

    class_priority = 30

    @classmethod
    def class_exts(cls):
        return {"fakestack"}

    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 1

    def get_frame(self, i):
        return pims.Frame([[i]])

    @property
    def frame_shape(self):
        return (1, 1)

    @property
    def pixel_type(self):
        return "uint8"

NOT_A_READER = 42
'''


def _setup_py_constants() -> dict[str, str]:
    """PTH_NAME and PTH_LINE as written in setup.py (read, not executed)."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.startswith("PTH_")
    }


def _declared_reader_entry_points() -> str:
    """The ``pims.readers`` section of setup.cfg's entry points."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config["options.entry_points"][ENTRY_POINT_GROUP]


def _add_dist(site: Path, name: str, entry_points: str) -> None:
    """Write a minimal ``*.dist-info`` declaring ``entry_points`` in the pims.readers group."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


class FakeSite:
    """A site-packages folder with pims-videoutils 'installed' and optional fake plugins.

    Interpreters started with :meth:`env` process it at start-up like site-packages (its .pth
    files run): a ``sitecustomize`` module on ``PYTHONPATH`` calls ``site.addsitedir``. This
    works in venvs too (where user site-packages are off) and in spawned child processes.
    """

    def __init__(self, base: Path) -> None:
        self.site = base / "site-packages"
        self.site.mkdir()
        # The project on sys.path, as an editable install does (sorts before the hook's .pth).
        (self.site / "00-pims-videoutils-source.pth").write_text(f"{ROOT}\n")
        pth = _setup_py_constants()
        (self.site / pth["PTH_NAME"]).write_text(pth["PTH_LINE"])
        _add_dist(self.site, "pims_videoutils", _declared_reader_entry_points())
        self.startup = base / "startup"
        self.startup.mkdir()
        (self.startup / "sitecustomize.py").write_text(
            f"import site\nsite.addsitedir({str(self.site)!r})\n"
        )
        self.workdir = base

    def add_plugin(self, entry_points: str, module_source: str = FAKE_PLUGIN) -> None:
        """Install the module ``fakeplug`` and a dist declaring ``entry_points``."""
        (self.site / "fakeplug.py").write_text(module_source)
        _add_dist(self.site, "fakeplug", entry_points)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != SWITCH}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(self.startup), env.get("PYTHONPATH")])
        )
        env.update(extra)
        return env

    def run(self, code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a fresh interpreter; return the finished process (checked)."""
        proc = subprocess.run(
            [sys.executable, *args, "-c", textwrap.dedent(code)],
            cwd=self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc


@pytest.fixture
def fake_site(tmp_path: Path) -> FakeSite:
    return FakeSite(tmp_path)


@pytest.fixture
def stack_tif(tmp_path: Path) -> Path:
    path = tmp_path / "stack.tif"
    data = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX"})
    return path


# --------------------------------------------------------------------------- start-up hook


def test_hook_adds_one_small_module_at_startup(fake_site: FakeSite) -> None:
    code = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    with_hook = set(json.loads(fake_site.run(code).stdout))
    plain = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    without_site = set(json.loads(plain))
    assert "_pims_videoutils_autoload" in with_hook
    # nothing else (sitecustomize is this test's way of processing the fake site)
    assert with_hook - without_site <= {"_pims_videoutils_autoload", "sitecustomize"}
    for heavy in ("numpy", "pims", "importlib.metadata", "pims_videoutils"):
        assert heavy not in with_hook


def test_pth_line_is_silent_when_the_hook_module_is_gone(tmp_path: Path) -> None:
    """An editable install whose checkout was moved: no traceback at every start-up."""
    site = tmp_path / "site-packages"
    site.mkdir()
    pth = _setup_py_constants()
    (site / pth["PTH_NAME"]).write_text(pth["PTH_LINE"])
    code = f"import site, sys; site.addsitedir({str(site)!r}); print(len(sys.path))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", SWITCH)}
    proc = subprocess.run(  # -S: no site-packages, so the module cannot be found anywhere
        [sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip()
    assert proc.stderr == ""


def test_fresh_interpreter_pims_open_finds_registered_plugin(fake_site: FakeSite) -> None:
    fake_site.add_plugin("Fake = fakeplug:FakeReader")
    (fake_site.workdir / "x.fakestack").touch()
    out = fake_site.run(
        """
        import sys
        import _pims_videoutils_autoload as hook
        assert hook.PimsImportFinder in sys.meta_path
        import pims
        print("fakeplug" in sys.modules, "pims_videoutils.readers" in sys.modules)
        print(type(pims.open("x.fakestack")).__name__)
        print("fakeplug" in sys.modules, "pims_videoutils.readers" in sys.modules)
        print(type(pims.__loader__).__name__, type(pims.__spec__.loader).__name__)
        print(hook.PimsImportFinder in sys.meta_path)
        """
    ).stdout.split("\n")
    assert out[0] == "False False"  # importing pims imports no reader...
    assert out[1] == "FakeReader"
    assert out[2] == "True True"  # ...its first open imports them all
    assert out[3] == "SourceFileLoader SourceFileLoader"  # the loader wrapper never stays
    assert out[4] == "False"  # one shot


def test_fresh_interpreter_pims_open_gets_tiffstacknd(
    fake_site: FakeSite, stack_tif: Path
) -> None:
    code = f"""
        import pims
        reader = pims.open({str(stack_tif)!r})
        print(type(reader).__module__, type(reader).__name__)
        reader.close()
        """
    assert fake_site.run(code).stdout.split() == ["pims_videoutils.readers", "TiffStackND"]
    opted_out = fake_site.run(code, **{SWITCH: "1"}).stdout.split()
    assert opted_out == ["pims.tiff_stack", "TiffStack_tifffile"]
    assert fake_site.run(code, **{SWITCH: "0"}).stdout.split()[1] == "TiffStackND"


@pytest.mark.parametrize(
    ("value", "disabled"),
    [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("", False), ("false", False),
     (" Off ", False), ("no", False), ("NO", False)],
)
def test_opt_out_values(monkeypatch, value, disabled):
    import _pims_videoutils_autoload as hook

    monkeypatch.setenv(SWITCH, value)
    assert hook.autoload_disabled() is disabled


PIMS_OPEN_IDENTITY = """
    import sys
    import pims
    import pims.api
    original = getattr(pims.open, "__wrapped__", pims.open)
    print(original.__module__, original.__code__.co_filename.endswith("api.py"))
    print(pims.open is pims.api.open, original is pims.open)
    print(pims.open.__module__, pims.open.__name__, "pims_videoutils" in sys.modules)
    """


def test_pims_open_is_wrapped_and_opt_out_leaves_pims_untouched(fake_site: FakeSite) -> None:
    wrapped = fake_site.run(PIMS_OPEN_IDENTITY).stdout.splitlines()
    assert wrapped == ["pims.api True", "True False", "pims.api open True"]
    opted_out = fake_site.run(PIMS_OPEN_IDENTITY, **{SWITCH: "1"}).stdout.splitlines()
    # pims's own function object, in both of its places; nothing of ours imported
    assert opted_out == ["pims.api True", "True True", "pims.api open False"]


FAKE_PIMS_WITHOUT_API = """
class FramesSequence:
    pass

def open(sequence):
    return "pims's own open"
"""


@pytest.mark.parametrize("broken", ["package gone", "pims without pims.api"])
def test_import_pims_survives_a_hook_that_cannot_wrap(fake_site: FakeSite, broken: str) -> None:
    code = """
        import sys, warnings
        warnings.simplefilter("always")
        import pims
        print(pims.open.__name__, hasattr(pims.open, "__wrapped__"))
        """
    if broken == "package gone":  # the hook's module left behind, pims_videoutils not importable
        code = "import sys; sys.modules['pims_videoutils'] = None\n" + textwrap.dedent(code)
        expected = ["open False"]
    else:  # a pims laid out otherwise: wrapped where it can be
        (fake_site.workdir / "shadow" / "pims").mkdir(parents=True)
        (fake_site.workdir / "shadow" / "pims" / "__init__.py").write_text(FAKE_PIMS_WITHOUT_API)
        code = f"import sys; sys.path.insert(0, {str(fake_site.workdir / 'shadow')!r})\n" + (
            textwrap.dedent(code)
        )
        expected = ["open True"]
    proc = fake_site.run(code)
    assert proc.stdout.split("\n")[:1] == expected
    if broken == "package gone":
        assert "RuntimeWarning: pims-videoutils could not wrap pims.open" in proc.stderr
        assert "_pims_videoutils_autoload.py" in proc.stderr


def test_opt_out_until_our_readers_are_used(fake_site: FakeSite, stack_tif: Path) -> None:
    """As the README says: opted out, pims.open is pims's; once ours are imported (by using
    them), pims.open considers them for .tif files, as it does every imported reader."""
    out = fake_site.run(
        f"""
        import pims, pims_videoutils
        print(type(pims.open({str(stack_tif)!r})).__name__)
        pims_videoutils.open({str(stack_tif)!r}).close()
        print(type(pims.open({str(stack_tif)!r})).__name__, hasattr(pims.open, "__wrapped__"))
        """,
        "-W", "ignore::ResourceWarning",
        **{SWITCH: "1"},
    )
    assert out.stdout.split() == ["TiffStack_tifffile", "TiffStackND", "False"]


@pytest.mark.parametrize(
    ("modules", "expected"),
    [("pims_videoutils.readers", "TiffStack_tifffile"),
     ("pims_videoutils.readers, pims_videoutils.sequence", "TiffSequenceND")],
)
def test_opt_out_file_of_a_multifile_dataset_needs_the_sequence_module(
    fake_site: FakeSite, tmp_path: Path, modules: str, expected: str
) -> None:
    """As the README says: opted out (or where .pth files do not run), importing
    pims_videoutils.readers alone gives a file of a multi-file dataset to pims's TiffStack,
    which shows that file alone; with pims_videoutils.sequence imported too it is the
    dataset."""
    from mmwriter import write_mmstack

    (tmp_path / "acq").mkdir()
    data = np.arange(2 * 2 * 1 * 1 * 6 * 5, dtype=np.uint16).reshape(2, 2, 1, 1, 6, 5)
    first = write_mmstack(tmp_path / "acq", data)[0]
    out = fake_site.run(
        f"""
        import pims
        import {modules}
        print(type(pims.open({str(first)!r})).__name__)
        """,
        "-W", "ignore::ResourceWarning",
        **{SWITCH: "1"},
    )
    assert out.stdout.split() == [expected]


def test_switch_set_after_startup_still_disables(fake_site: FakeSite) -> None:
    fake_site.add_plugin("Fake = fakeplug:FakeReader")
    out = fake_site.run(
        f"""
        import os, sys
        os.environ[{SWITCH!r}] = "1"
        import pims
        print(hasattr(pims.open, "__wrapped__"), "pims_videoutils" in sys.modules)
        """
    )
    assert out.stdout.split() == ["False", "False"]


def test_find_spec_probe_does_not_consume_the_hook(fake_site: FakeSite) -> None:
    fake_site.add_plugin("Fake = fakeplug:FakeReader")
    (fake_site.workdir / "x.fakestack").touch()
    out = fake_site.run(
        """
        import importlib.util
        assert importlib.util.find_spec("pims") is not None  # "is pims installed?"
        import pims
        print(type(pims.open("x.fakestack")).__name__)
        """
    )
    assert out.stdout.strip() == "FakeReader"


def test_broken_plugins_warn_and_others_still_load(fake_site: FakeSite) -> None:
    fake_site.add_plugin(
        "Missing = nosuchmodule:Reader\n"
        "NotAReader = fakeplug:NOT_A_READER\n"
        "NoAttr = fakeplug:NoSuchClass\n"
        "Fake = fakeplug:FakeReader"
    )
    (fake_site.workdir / "x.fakestack").touch()
    proc = fake_site.run(
        """
        import pims
        print(type(pims.open("x.fakestack")).__name__)
        """,
        "-W",
        "always",
    )
    assert proc.stdout.strip() == "FakeReader"
    assert proc.stderr.count("PluginLoadWarning") == 3
    assert "Missing = nosuchmodule:Reader (from fakeplug 1.0)" in proc.stderr
    assert "ModuleNotFoundError" in proc.stderr
    assert "NotAReader = fakeplug:NOT_A_READER" in proc.stderr
    assert "is not a subclass of pims.FramesSequence" in proc.stderr
    assert "NoAttr = fakeplug:NoSuchClass" in proc.stderr


def test_plugin_raising_at_import_does_not_break_pims(
    fake_site: FakeSite, stack_tif: Path
) -> None:
    fake_site.add_plugin("Crash = fakeplug:FakeReader", "raise RuntimeError('plugin bug')\n")
    proc = fake_site.run(
        f"""
        import sys
        import pims
        print("imported", file=sys.stderr)
        with pims.open({str(stack_tif)!r}) as reader:
            print(type(reader).__name__)
        """,
        "-W",
        "always",
    )
    assert proc.stdout.strip() == "TiffStackND"
    imported, after = proc.stderr.split("imported", 1)
    assert "PluginLoadWarning" not in imported  # import pims loads nothing
    assert "PluginLoadWarning" in after
    assert "RuntimeError: plugin bug" in after


def test_broken_plugin_under_warnings_as_errors_keeps_our_readers(
    fake_site: FakeSite, stack_tif: Path
) -> None:
    # pytest's filterwarnings = error: the warning raises once, and pims.open then still
    # knows every good reader. The broken plugin sits on PYTHONPATH, so it is found first.
    _add_dist(fake_site.startup, "brokenplug", "Crash = brokenplug:Reader")
    (fake_site.startup / "brokenplug.py").write_text("raise RuntimeError('plugin bug')\n")
    proc = fake_site.run(
        f"""
        import pims
        from pims_videoutils import PluginLoadWarning
        try:
            pims.open({str(stack_tif)!r}).close()
        except PluginLoadWarning as warning:
            print("warned:", warning)
        with pims.open({str(stack_tif)!r}) as reader:
            print(type(reader).__name__)
        """,
        "-W",
        "error",
    )
    warned, opened = proc.stdout.strip().splitlines()
    assert warned.startswith("warned:") and "RuntimeError: plugin bug" in warned
    assert opened == "TiffStackND"


def test_plugin_module_imported_first_is_not_loaded_twice(fake_site: FakeSite) -> None:
    # The plugin module imports pims itself: the hook fires while it is half executed.
    fake_site.add_plugin("Fake = fakeplug:FakeReader")
    (fake_site.workdir / "x.fakestack").touch()
    proc = fake_site.run(
        """
        import fakeplug
        import pims
        print(type(pims.open("x.fakestack")).__name__)
        """,
        "-W",
        "error",
    )
    assert proc.stdout.strip() == "FakeReader"
    assert "PluginLoadWarning" not in proc.stderr


def test_first_import_of_our_reader_module(fake_site: FakeSite, stack_tif: Path) -> None:
    # readers.py imports pims: the hook fires while readers.py is half executed.
    proc = fake_site.run(
        f"""
        import sys
        from pims_videoutils.readers import TiffStackND
        print("pims_videoutils.sequence" in sys.modules)
        import pims
        reader = pims.open({str(stack_tif)!r})
        print(type(reader) is TiffStackND, "pims_videoutils.sequence" in sys.modules)
        reader.close()
        """,
        "-W",
        "error",
    )
    assert proc.stdout.split() == ["False", "True", "True"]


def test_first_open_from_many_threads_waits_for_the_readers(fake_site: FakeSite) -> None:
    # A slow plugin import: threads that arrive meanwhile must wait for it, not fall through
    # to pims.open before FakeReader exists (UnknownFormatError).
    fake_site.add_plugin(
        "Fake = fakeplug:FakeReader", "import time\ntime.sleep(0.5)\n" + FAKE_PLUGIN
    )
    (fake_site.workdir / "x.fakestack").touch()
    out = fake_site.run(
        """
        from concurrent.futures import ThreadPoolExecutor
        import pims
        with ThreadPoolExecutor(8) as pool:
            kinds = pool.map(lambda _: type(pims.open("x.fakestack")).__name__, range(8))
        print(sorted(set(kinds)))
        """,
        "-W",
        "error",
    )
    assert out.stdout.strip() == "['FakeReader']"


# ------------------------------------------------- pims.open on folders and globs (fresh)


@pytest.fixture
def numbered_tiffs(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A folder of 11 single-plane TIFFs numbered 1..11 unpadded (natural order matters)."""
    folder = tmp_path / "numbered"
    folder.mkdir()
    rng = np.random.default_rng(7)
    files = []
    for number in range(1, 12):
        files.append(folder / f"img{number}.tif")
        tifffile.imwrite(files[-1], rng.integers(0, 60000, (6, 9), dtype=np.uint16))
    return folder, files


def _check_sequence_code(source: str | list[str], files: list[Path]) -> str:
    """Code that opens ``source`` with pims.open and compares it with tifffile, file by file."""
    return f"""
        import numpy as np
        import pims
        import tifffile

        expected = np.stack([tifffile.imread(name) for name in {[str(f) for f in files]!r}])
        with pims.open({source!r}) as reader:
            np.testing.assert_array_equal(np.stack([np.asarray(f) for f in reader]), expected)
            print(type(reader).__module__, type(reader).__name__, len(reader))
        """


def test_pims_open_glob_naming_one_folder(
    fake_site: FakeSite, numbered_tiffs: tuple[Path, list[Path]]
) -> None:
    folder, files = numbered_tiffs
    source = str(folder.parent / "numb*")  # matches the folder only
    out = fake_site.run(_check_sequence_code(source, files), "-W", "error").stdout.split()
    assert out == ["pims_videoutils.sequence", "TiffSequenceND", "11"]


@pytest.mark.parametrize("form", ["folder", "glob", "list"])
def test_pims_open_folder_or_tiff_glob_is_tiff_sequence(
    fake_site: FakeSite, numbered_tiffs: tuple[Path, list[Path]], form: str
) -> None:
    folder, files = numbered_tiffs
    sources = {
        "folder": str(folder),
        "glob": str(folder / "img*.tif"),
        "list": [str(name) for name in reversed(files)],  # (pims alone fails on a list)
    }
    source = sources[form]
    out = fake_site.run(_check_sequence_code(source, files), "-W", "error").stdout.split()
    assert out == ["pims_videoutils.sequence", "TiffSequenceND", "11"]


def test_pims_open_glob_with_one_match_opens_that_file(
    fake_site: FakeSite, stack_tif: Path
) -> None:
    # as pims_videoutils.open does; pims alone hands the pattern itself to every reader
    import imageio.v3 as iio

    iio.imwrite(stack_tif.parent / "only.png", np.zeros((3, 4), np.uint8))
    out = fake_site.run(
        f"""
        import pims
        for pattern in ("stack*.tif", "on*.png"):
            with pims.open({str(stack_tif.parent)!r} + "/" + pattern) as reader:
                print(type(reader).__name__, reader.frame_shape)
        """,
        "-W",
        "error",
    ).stdout.splitlines()
    assert out == [f"TiffStackND {tifffile.imread(stack_tif).shape[1:]}", "ImageReader (3, 4)"]


def test_pims_open_png_glob_is_still_image_sequence(fake_site: FakeSite, tmp_path: Path) -> None:
    import imageio.v3 as iio

    planes = np.random.default_rng(8).integers(0, 255, (3, 7, 5), dtype=np.uint8)
    for i, plane in enumerate(planes):
        iio.imwrite(tmp_path / f"frame{i}.png", plane)
    out = fake_site.run(
        f"""
        import numpy as np
        import pims
        reader = pims.open({str(tmp_path / "frame*.png")!r})
        print(type(reader).__module__, type(reader).__name__)
        np.save({str(tmp_path / "read.npy")!r}, np.stack([np.asarray(f) for f in reader]))
        reader.close()
        """,
        "-W",
        "error",
    ).stdout.split()
    assert out == ["pims.image_sequence", "ImageSequence"]
    np.testing.assert_array_equal(np.load(tmp_path / "read.npy"), planes)


@pytest.mark.parametrize("layout", ["names", "folders"])
def test_pims_open_glob_of_tiffs_named_without_numbers_still_reads_them(
    tmp_path: Path, layout: str
) -> None:
    """pims read such a glob as an ImageSequence (name order); our package must not break it."""
    if not hasattr(pims.open, "__wrapped__"):
        pytest.skip("pims.open is not wrapped in this process")
    planes = np.random.default_rng(9).integers(0, 4096, (3, 6, 5), dtype=np.uint16)
    if layout == "names":  # no numbers at all
        files = [tmp_path / f"{name}.tif" for name in ("control", "drug", "wash")]
        pattern = tmp_path / "*.tif"
    else:  # one file of the same name per folder
        files = [tmp_path / f"cell{i}" / "frame.tif" for i in range(3)]
        pattern = tmp_path / "*" / "frame.tif"
    for file, plane in zip(files, planes, strict=True):
        file.parent.mkdir(exist_ok=True)
        tifffile.imwrite(file, plane)
    with pytest.warns(ReaderFallbackWarning, match="TiffSequenceND could not read it"):
        reader = pims.open(str(pattern))
    with reader:
        assert type(reader).__name__ == "ImageSequence"
        read = np.stack([np.asarray(frame) for frame in reader])
    np.testing.assert_array_equal(read, np.stack([tifffile.imread(f) for f in files]))
    with pytest.raises(StackReadError, match=r"patterns|same coordinates"):
        pims_videoutils.open(pattern)  # ours: documented to raise
    with pytest.raises(StackReadError, match=r"patterns|same coordinates"):
        pims.open(str(pattern), fill_missing=0)  # an option of ours: ours was asked for


def test_pims_open_glob_with_a_gap_is_still_our_error(tmp_path: Path) -> None:
    """A gap is an error of ours: pims's ImageSequence would renumber the frames after it."""
    if not hasattr(pims.open, "__wrapped__"):
        pytest.skip("pims.open is not wrapped in this process")
    for t in (1, 2, 4):
        tifffile.imwrite(tmp_path / f"img_{t}.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(StackReadError, match="gap"):
        pims.open(str(tmp_path / "img_*.tif"))


def test_pims_open_ndtiff_index_opens_its_dataset(real_data: Path) -> None:
    """The NDTiff.index file names its dataset, as for TiffSequenceND itself."""
    if not hasattr(pims.open, "__wrapped__"):
        pytest.skip("pims.open is not wrapped in this process")
    folder = real_data / "ndtiff" / "ndtiff3.2_multichannel"
    expected = tifffile.imread(folder / "NDTiff3.2_multichannel_NDTiffStack.tif")  # t c z y x
    for open_ in (pims.open, pims_videoutils.open):
        with open_(str(folder / "NDTiff.index")) as reader:
            assert type(reader).__name__ == "TiffSequenceND"
            reader.bundle_axes = "czyx"
            np.testing.assert_array_equal(reader[5], expected[5])


SPAWN_SCRIPT = """
import multiprocessing
import sys


def reader_kind(path):
    import pims

    reader = pims.open(path)
    try:
        return type(reader).__name__, sorted(m for m in sys.modules if m.startswith("fakeplug"))
    finally:
        reader.close()


if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        name, plugins = pool.apply(reader_kind, (sys.argv[1],))
    print(name, plugins, "pims" in sys.modules)
"""


def test_spawn_worker_gets_registered_readers(fake_site: FakeSite, stack_tif: Path) -> None:
    fake_site.add_plugin("Fake = fakeplug:FakeReader")
    script = fake_site.workdir / "spawn_check.py"
    script.write_text(SPAWN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(stack_tif)],
        cwd=fake_site.workdir,
        env=fake_site.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # The parent never imported pims: the worker found both readers on its own.
    assert proc.stdout.strip() == "TiffStackND ['fakeplug'] False"


# ------------------------------------------------------------------- load_readers in process


def test_load_readers_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fakeplug_inproc.py").write_text(FAKE_PLUGIN)
    _add_dist(
        tmp_path,
        "fakeplug_inproc",
        "Fake = fakeplug_inproc:FakeReader\nBad = fakeplug_inproc:NOT_A_READER",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fakeplug_inproc", raising=False)
    with pytest.warns(PluginLoadWarning, match="Bad = fakeplug_inproc:NOT_A_READER"):
        readers = load_readers()
    fake = sys.modules["fakeplug_inproc"].FakeReader
    assert fake in readers
    assert all(isinstance(reader, type) for reader in readers)
    monkeypatch.delitem(sys.modules, "fakeplug_inproc")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_forked_while_another_thread_loads_the_readers_loads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flag saying the readers are loaded was set before loading them: a child forked
    while another thread was loading them believed them loaded, and never loaded the rest
    (pims.open then did not know them)."""
    import threading

    from pims_videoutils import _registration

    parent = os.getpid()
    started, release = threading.Event(), threading.Event()
    loaded_in = []

    class SlowEntryPoint:  # a plugin whose import takes a while (in the parent only)
        name, value, dist = "Slow", "slowplug:Reader", None

        def load(self) -> type:
            if os.getpid() == parent:
                started.set()
                release.wait(60)
            loaded_in.append(os.getpid())
            return pims.FramesSequence

    monkeypatch.setattr(_registration, "_loaded", False)
    monkeypatch.setattr(_registration, "reader_entry_points", lambda: [SlowEntryPoint()])
    loader = threading.Thread(target=_registration.ensure_readers_loaded)
    loader.start()
    try:
        assert started.wait(60)
        with warnings.catch_warnings():  # (Python 3.12 warns of a fork with threads)
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:  # the child: only this thread, the loader's load is not in it
            try:
                _registration.ensure_readers_loaded()
                os._exit(0 if loaded_in == [os.getpid()] else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(child, 0)
    finally:
        release.set()
        loader.join(60)
    assert os.waitstatus_to_exitcode(status) == 0
    assert loaded_in == [parent] and _registration._loaded


# --------------------------------------------------------------------- pims_videoutils.open


def test_open_accepts_path_and_returns_our_reader(stack_tif: Path) -> None:
    with pims_videoutils.open(stack_tif) as reader:
        assert type(reader).__name__ == "TiffStackND"
        np.testing.assert_array_equal(np.asarray(reader[2]), tifffile.imread(stack_tif)[2])


def test_open_glob_with_one_match(stack_tif: Path) -> None:
    with pims_videoutils.open(stack_tif.parent / "st*.tif") as reader:
        assert reader.path == str(stack_tif)


def test_open_glob_naming_one_folder(numbered_tiffs: tuple[Path, list[Path]]) -> None:
    folder, files = numbered_tiffs
    with pims_videoutils.open(folder.parent / "numb*") as reader:
        assert isinstance(reader, pims_videoutils.TiffSequenceND)
        expected = np.stack([tifffile.imread(name) for name in files])
        np.testing.assert_array_equal(np.stack([np.asarray(f) for f in reader]), expected)


@pytest.mark.parametrize("form", ["folder", "glob", "list"])
def test_open_folder_or_tiff_glob_is_tiff_sequence(
    numbered_tiffs: tuple[Path, list[Path]], form: str
) -> None:
    """As pims.open: a list of TIFF files too (it raised os.fspath's TypeError)."""
    from pims_videoutils import TiffSequenceND

    folder, files = numbered_tiffs
    source = {"folder": folder, "glob": folder / "img*.tif", "list": files[::-1]}[form]
    with pims_videoutils.open(source) as reader:
        assert isinstance(reader, TiffSequenceND)
        expected = np.stack([tifffile.imread(name) for name in files])
        np.testing.assert_array_equal(np.stack([np.asarray(f) for f in reader]), expected)


def test_open_png_glob_is_pims_image_sequence(tmp_path: Path) -> None:
    import imageio.v3 as iio

    planes = np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4)
    for i, plane in enumerate(planes):
        iio.imwrite(tmp_path / f"img{i}.png", plane)
    sequence = pims_videoutils.open(tmp_path / "img*.png")
    try:
        assert isinstance(sequence, pims.ImageSequence)
        np.testing.assert_array_equal(np.stack(list(sequence)), planes)
    finally:
        sequence.close()


@pytest.mark.parametrize(
    ("names", "pattern", "expected"),
    [
        (["a1.tif", "a2.TIFF"], "a*", True),
        (["a1.tif", "a2.png"], "a*", False),  # not all TIFF: pims.open's ImageSequence
        (["a1.tif", "b1.tif"], "a*.tif", False),  # one match: a file
        (["a1.tif"], "", True),  # the folder itself
        ([".hidden.tif", "a.png"], "", False),  # a folder without visible TIFF files
        ([], "", False),
    ],
)
def test_opens_as_sequence(tmp_path: Path, names: list[str], pattern: str, expected: bool) -> None:
    for name in names:
        (tmp_path / name).touch()
    assert opens_as_sequence(os.path.join(tmp_path, pattern)) is expected


@pytest.mark.parametrize("source", [[1, 2], ["a.png", "b.png"], b"x.tif", None])
def test_open_of_what_is_no_path_nor_list_of_tiffs_is_a_type_error(source) -> None:
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        pims_videoutils.open(source)


def test_open_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StackNotFoundError) as info:
        pims_videoutils.open(tmp_path / "absent.tif")
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.path == str(tmp_path / "absent.tif")


def test_open_lists_why_every_reader_failed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"this is not a TIFF file at all" * 10)
    with pytest.raises(StackReadError) as info:
        pims_videoutils.open(bad)
    message = str(info.value)
    assert "pims_videoutils.readers.TiffStackND: StackReadError" in message
    assert "pims.tiff_stack.TiffStack_tifffile: " in message
    # highest priority first; the first failure is the cause
    assert message.index("TiffStackND") < message.index("TiffStack_tifffile")
    assert isinstance(info.value.__cause__, StackReadError)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("noextension", "no file extension"), ("x.unknownext", "no installed pims reader")],
)
def test_open_unusable_names(tmp_path: Path, name: str, reason: str) -> None:
    (tmp_path / name).write_bytes(b"data")
    with pytest.raises(StackReadError, match=reason):
        pims_videoutils.open(tmp_path / name)


def test_open_folder_without_tiff_files(tmp_path: Path) -> None:
    """The error says that the folder holds no TIFF file and what it holds instead (it said
    "pass a file"); the glob pattern it suggests opens the images."""
    import imageio.v3 as iio

    frames = np.arange(3 * 6 * 7, dtype=np.uint8).reshape(3, 6, 7)
    for k, frame in enumerate(frames):
        iio.imwrite(tmp_path / f"frame{k}.png", frame)
    (tmp_path / "notes.txt").touch()
    (tmp_path / ".hidden.tif").touch()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StackReadError, match=r"is a folder holding no \.tif or \.tiff file "
                       r"\(nor do its sub-folders\); it holds 3 \.png files, 1 \.txt file, "
                       r"1 sub-folder and 1 hidden entry \(not read\); open one of its files, "
                       r"or a glob pattern"):
        pims_videoutils.open(tmp_path)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "empty").rmdir()
    (tmp_path / ".hidden.tif").unlink()
    with pytest.raises(StackReadError, match=r"; it holds 3 \.png files; "):
        pims_videoutils.open(tmp_path)
    with pims_videoutils.open(tmp_path / "*.png") as images:
        np.testing.assert_array_equal(np.stack(list(images)), frames)


def test_open_empty_folder_says_it_is_empty(tmp_path: Path) -> None:
    with pytest.raises(StackReadError, match=r"no \.tif or \.tiff file .*; it holds nothing;"):
        pims_videoutils.open(tmp_path)
    (tmp_path / ".stack.tif").touch()  # not "nothing": a TIFF file, hidden
    with pytest.raises(StackReadError, match=r"; it holds 1 hidden entry \(not read\);"):
        pims_videoutils.open(tmp_path)


@pytest.mark.parametrize("path", [42, b"stack.tif"])
def test_open_rejects_non_paths(path: object) -> None:
    with pytest.raises(TypeError):
        pims_videoutils.open(path)


def test_open_passes_kwargs_to_the_reader(stack_tif: Path) -> None:
    with (
        pims_videoutils.open(stack_tif) as copying,
        pims_videoutils.open(stack_tif, copy=False) as viewing,
    ):
        assert copying[0].flags.writeable
        assert not viewing[0].flags.writeable  # a read-only view of the mapping
        np.testing.assert_array_equal(viewing[0], tifffile.imread(stack_tif)[0])


def test_home_folder_tilde(
    fake_site: FakeSite, stack_tif: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pims hands ``~/stack.tif`` to imageio (which expands it): our readers must get it too."""
    monkeypatch.setenv("HOME", str(stack_tif.parent))
    expected = tifffile.imread(stack_tif)
    with pims_videoutils.open("~/stack.tif") as reader:
        assert type(reader).__name__ == "TiffStackND"
        np.testing.assert_array_equal(reader[len(reader) - 1], expected[-1])
    code = """
        import warnings
        warnings.simplefilter("error")
        import pims
        with pims.open("~/stack.tif") as reader:
            print(type(reader).__name__, len(reader))
        """
    out = fake_site.run(code, HOME=str(stack_tif.parent)).stdout.split()
    assert out == ["TiffStackND", str(len(expected))]


def test_pims_open_agrees_with_our_open(stack_tif: Path) -> None:
    # pims.open needs the class imported when the hook is not installed in this interpreter
    from pims_videoutils import readers

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pims.open(str(stack_tif)) as theirs, pims_videoutils.open(stack_tif) as ours:
            assert type(theirs) is type(ours) is readers.TiffStackND


# ------------------------------------------------------------- real installs (slow, pip)


def _venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    return venv / "bin" / "python"


def _source_copy(tmp_path: Path) -> Path:
    """A copy of the project (no build litter in the shared checkout)."""
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests", "*.tif"
        ),
    )
    return source


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_pip_install_registers_reader(
    tmp_path: Path, stack_tif: Path, numbered_tiffs: tuple[Path, list[Path]], editable: bool
) -> None:
    python = _venv(tmp_path)
    source = _source_copy(tmp_path)
    target = ["-e", str(source)] if editable else [str(source)]
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if k not in (SWITCH, "PYTHONPATH")}
    subprocess.run([*pip, "install", "--quiet", "--no-deps", *target], check=True, env=env)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert (Path(site) / _setup_py_constants()["PTH_NAME"]).is_file()
    check = f"""
        import sys, pims, pims_videoutils
        reader = pims.open({str(stack_tif)!r})
        print(type(reader).__name__, pims_videoutils.__file__)
        reader.close()
        with pims.open({str(numbered_tiffs[0])!r}) as folder:
            print(type(folder).__name__)
        """
    out = subprocess.run(
        [str(python), "-c", textwrap.dedent(check)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    ).stdout.split()
    assert out[0] == "TiffStackND"
    assert out[1].startswith(str(source) if editable else site)
    assert out[2] == "TiffSequenceND"
    subprocess.run([*pip, "uninstall", "--quiet", "--yes", "pims-videoutils"], check=True, env=env)
    assert not (Path(site) / _setup_py_constants()["PTH_NAME"]).exists()


@pytest.fixture
def truncated_imagej(tmp_path: Path) -> Path:
    """An ImageJ stack of 5 planes cut after the second: pims's TiffStack shows one plane."""
    path = tmp_path / "truncated.tif"
    tifffile.imwrite(path, np.ones((5, 16, 16), np.uint16), imagej=True, metadata={"axes": "TYX"})
    path.write_bytes(path.read_bytes()[: -3 * 16 * 16 * 2])
    return path


@pytest.mark.parametrize("opener", ["pims.open", "pims_videoutils.open"])
def test_a_tiff_ours_refuses_goes_to_another_reader_with_a_warning(
    truncated_imagej: Path, opener: str
) -> None:
    path = truncated_imagej
    if opener == "pims.open" and not hasattr(pims.open, "__wrapped__"):
        pytest.skip("pims.open is not wrapped in this process")
    open_ = pims.open if opener == "pims.open" else pims_videoutils.open
    with pytest.warns(ReaderFallbackWarning, match=r"TiffStackND could not read it \(Stack"
                      r"ReadError: .*truncated.*\); TiffStack_tifffile opened it instead"):
        reader = open_(str(path))
    try:
        assert type(reader).__name__ == "TiffStack_tifffile"
    finally:
        reader.close()


def test_no_fallback_warning_when_ours_reads_the_file(stack_tif: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReaderFallbackWarning)
        for open_ in (pims.open, pims_videoutils.open):
            with open_(str(stack_tif)) as reader:
                assert type(reader).__name__ == "TiffStackND"


def test_fallback_warning_as_an_error_leaves_no_file_open(truncated_imagej: Path) -> None:
    """Under ``-W error`` the caller never gets the reader: it is closed (the autouse fixture
    fails the test on a file left open)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReaderFallbackWarning)
        with pytest.raises(ReaderFallbackWarning):
            pims_videoutils.open(truncated_imagej)
