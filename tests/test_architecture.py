"""The shape of the code: imports point downwards, no Qt outside gui/, CI runs the README's command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PKG = REPO / "demixstudio"
QT = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "qtpy", "shiboken6", "superqt")
# Each package may not import the ones listed (ARCHITECTURE.md: imports point downwards).
FORBIDDEN = {
    "audio": ("session", "separation", "metrics", "batch", "gui", "cli", "jobs"),
    "jobs": ("session", "separation", "metrics", "batch", "gui", "cli", "audio"),
    "metrics": ("session", "separation", "batch", "gui", "cli"),
    "separation": ("session", "batch", "gui", "cli"),
    "session": ("batch", "gui", "cli"),
    "batch": ("gui", "cli"),
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_qt_outside_gui():
    bad = []
    for path in PKG.rglob("*.py"):
        if "gui" in path.relative_to(PKG).parts:
            continue
        for mod in _imports(path):
            if mod.split(".")[0] in QT:
                bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def test_imports_point_downwards():
    bad = []
    for pkg, forbidden in FORBIDDEN.items():
        for path in (PKG / pkg).rglob("*.py"):
            for mod in _imports(path):
                parts = mod.split(".")
                if parts[0] == "demixstudio" and len(parts) > 1 and parts[1] in forbidden:
                    bad.append(f"{path.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = re.findall(r"^\s*(\./dev test)\s*$", readme, flags=re.M)
    assert commands, "README.md must give the test command on a line of its own"
    assert any(line.strip() == commands[0] for line in ci.splitlines())


def test_no_unsafe_loading():
    for path in PKG.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "allow_pickle=True" not in text, path
        assert "pickle.load" not in text, path
