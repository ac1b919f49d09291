"""The frozen build's one executable, ``demixstudio``: the editor or the command line.

- no arguments, a file that exists, ``--no-recovery`` or ``--smoke-test …``:
  the editor window (``demixstudio.gui.app.main``), so the desktop entry's
  ``demixstudio %f`` opens the file;
- anything else (``--version``, ``separate …``, ``methods``, ``gui FILE``):
  the command line (``demixstudio.cli.main``).
"""

from __future__ import annotations

import multiprocessing
import os
import sys

GUI_FLAGS = ("--smoke-test", "--no-recovery")


def wants_gui(argv: list[str]) -> bool:
    if not argv:
        return True
    first = argv[0]
    if first.startswith(GUI_FLAGS):
        return True
    return not first.startswith("-") and os.path.exists(first)


def main() -> int:
    argv = sys.argv[1:]
    if wants_gui(argv):
        from demixstudio.gui.app import main as gui

        return gui(argv)
    from demixstudio.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    # dask/distributed and torch may start worker processes: in a frozen
    # build those re-run this executable, which must then act as the worker.
    multiprocessing.freeze_support()
    sys.exit(main())
