"""Where the editor keeps its things: preferences, the log file, autosaves.

Preferences live in QSettings (recent files, the theme, the default method
and each method's last parameters, the audio output device, the export
format). Every location can be moved by an environment variable, so tests
and portable installs never touch the user's real ones:

- ``DEMIXSTUDIO_SETTINGS``: an INI file used instead of the platform store
- ``DEMIXSTUDIO_LOG_DIR``: the folder of ``demixstudio.log``
- ``DEMIXSTUDIO_DATA_DIR``: the folder of autosaves
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import platformdirs
from PySide6.QtCore import QSettings

APP_NAME = "DemixStudio"
ORG_NAME = "DemixStudio"
MAX_RECENT = 10
LOG_NAME = "demixstudio.log"
THEMES = ("dark", "light")

log = logging.getLogger("demixstudio.gui")


def log_dir() -> Path:
    return Path(os.environ.get("DEMIXSTUDIO_LOG_DIR")
                or platformdirs.user_log_dir(APP_NAME, ORG_NAME))


def data_dir() -> Path:
    return Path(os.environ.get("DEMIXSTUDIO_DATA_DIR")
                or platformdirs.user_data_dir(APP_NAME, ORG_NAME))


def log_path() -> Path:
    return log_dir() / LOG_NAME


def setup_logging() -> Path:
    """Send the GUI's log (errors with tracebacks) to ``log_path()``; idempotent.

    Returns the log file's path. The handler follows ``DEMIXSTUDIO_LOG_DIR``:
    if it changed since the last call (tests), the old handler is replaced.
    """
    path = log_path()
    root = logging.getLogger("demixstudio")
    for h in list(root.handlers):
        if getattr(h, "_demixstudio", False):
            if Path(h.baseFilename) == path:
                return path
            root.removeHandler(h)
            h.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2 << 20, backupCount=2,
                                                   encoding="utf-8", delay=True)
    handler._demixstudio = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def qsettings() -> QSettings:
    """The preferences store (an INI file when ``DEMIXSTUDIO_SETTINGS`` is set)."""
    ini = os.environ.get("DEMIXSTUDIO_SETTINGS")
    if ini:
        return QSettings(ini, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORG_NAME, APP_NAME)


class Preferences:
    """Typed access to the few preferences the editor keeps."""

    def __init__(self) -> None:
        self._s = qsettings()

    def _get(self, key: str, default):
        v = self._s.value(key, default)
        return default if v is None else v

    # recent files ---------------------------------------------------------------
    def recent_files(self) -> List[str]:
        v = self._s.value("files/recent", [])
        if isinstance(v, str):  # INI stores a one-element list as a plain string
            v = [v] if v else []
        return [str(x) for x in (v or [])]

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        items = [p for p in self.recent_files() if p != path]
        self._s.setValue("files/recent", [path, *items][:MAX_RECENT])
        self._s.sync()

    def clear_recent(self) -> None:
        self._s.setValue("files/recent", [])
        self._s.sync()

    # methods ----------------------------------------------------------------------
    def default_method(self) -> str:
        return str(self._get("methods/default", "ica"))

    def set_default_method(self, name: str) -> None:
        self._s.setValue("methods/default", name)

    def method_params(self, name: str) -> Dict[str, Any]:
        """The parameters ``name`` last ran with (a JSON-ready dict; empty if never)."""
        try:
            v = json.loads(str(self._get(f"methods/params/{name}", "{}")))
        except ValueError:
            return {}
        return v if isinstance(v, dict) else {}

    def set_method_params(self, name: str, values: Dict[str, Any]) -> None:
        # JSON in one string: INI files would turn numbers and lists into text.
        self._s.setValue(f"methods/params/{name}", json.dumps(values))
        self._s.sync()

    # look and sound -------------------------------------------------------------------
    def theme(self) -> str:
        v = str(self._get("view/theme", "dark"))
        return v if v in THEMES else "dark"

    def set_theme(self, name: str) -> None:
        self._s.setValue("view/theme", name if name in THEMES else "dark")
        self._s.sync()

    def audio_device(self) -> Optional[str]:
        """The output device's name, or None for the system default."""
        v = str(self._get("audio/output_device", ""))
        return v or None

    def set_audio_device(self, name: Optional[str]) -> None:
        self._s.setValue("audio/output_device", name or "")
        self._s.sync()

    # export -------------------------------------------------------------------------
    def export_format(self) -> str:
        return str(self._get("export/format", "wav"))

    def export_bits(self) -> str:
        return str(self._get("export/bits", "24"))

    def export_folder(self) -> Optional[str]:
        v = self._get("export/folder", "")
        return str(v) or None

    def set_export(self, fmt: str, bits: str, folder: str) -> None:
        self._s.setValue("export/format", fmt)
        self._s.setValue("export/bits", bits)
        self._s.setValue("export/folder", folder)
        self._s.sync()

    # autosave -----------------------------------------------------------------------
    def autosave_interval_s(self) -> int:
        try:
            return max(5, int(self._get("autosave/interval_s", 60)))
        except (TypeError, ValueError):
            return 60

    # view -----------------------------------------------------------------------------
    def value(self, key: str, default=None):
        return self._get(key, default)

    def set_value(self, key: str, value) -> None:
        self._s.setValue(key, value)

    def sync(self) -> None:
        """Write to disk now (QSettings otherwise writes later, or at exit)."""
        self._s.sync()
