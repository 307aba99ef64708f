"""Build step (setuptools ``cmdclass``): ship the NVML switch's ``.pth`` file in site-packages.

Used only while building the package: ``build_py`` writes ``hook.PTH_NAME`` (one line,
``hook.PTH_LINE``) at the root of the wheel, which installs into site-packages, where Python runs
it at every start-up; for an editable install it goes to the root of the editable wheel. Either
way it is in the installation's RECORD, so ``pip uninstall`` removes it.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from setuptools.command.build_py import build_py

# the constants live in the hook (it needs them at run time); read them without importing
# wattbench, which is not installed while it is being built
_HOOK = runpy.run_path(str(Path(__file__).with_name("hook.py")), run_name="_wattbench_hook")
PTH_NAME: str = _HOOK["PTH_NAME"]
PTH_LINE: str = _HOOK["PTH_LINE"]


class BuildPy(build_py):
    """``build_py`` that also writes the NVML switch's ``.pth`` at the root of the wheel."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            # types-setuptools derives build_py from distutils' Command, whose
            # get_finalized_command lacks setuptools' per-command overloads (-> install here)
            root = self.get_finalized_command("install").install_lib  # type: ignore[attr-defined]
        else:
            root = self.build_lib
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, PTH_NAME), "w", encoding="utf-8") as f:
            f.write(PTH_LINE)
