"""Build shim: everything is in setup.cfg, except putting the start-up ``.pth`` into the wheel.

``pims_videoutils-autoload.pth`` must land at the root of site-packages, where the interpreter
runs it at start-up (see ``_pims_videoutils_autoload.py``). Wheels have no declarative way to
put a file there, so ``build_py`` writes it into the folder that becomes the wheel's root:
``build_lib`` for a regular wheel (``pip install .``), and the unpacked editable wheel (the
``install`` command's ``install_lib``) for ``pip install -e .``, whose build_lib is discarded.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "pims_videoutils-autoload.pth"
# Silent when the hook's module is gone (an editable install whose checkout was moved or
# deleted): a bare import would print a traceback at every interpreter start-up.
PTH_LINE = (
    'import sys; exec("try:\\n import _pims_videoutils_autoload\\n'
    'except ModuleNotFoundError:\\n pass")\n'
)


class build_py_with_pth(build_py):
    """``build_py`` that also writes the start-up ``.pth`` file into the wheel's root."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            root = self.get_finalized_command("install").install_lib
        else:
            root = self.build_lib
        self.mkpath(root)
        with open(os.path.join(root, PTH_NAME), "w", encoding="utf-8") as pth:
            pth.write(PTH_LINE)


setup(cmdclass={"build_py": build_py_with_pth})
