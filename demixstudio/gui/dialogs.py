"""Dialogs: export (stems and/or remix, format, bit depth, folder) and errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QMessageBox, QPushButton, QVBoxLayout, QWidget)

from demixstudio.gui.settings import log_path, setup_logging
from demixstudio.session.export import safe_filename

log = logging.getLogger("demixstudio.gui")

BITS_BY_FORMAT = {"wav": ["16", "24", "float"], "flac": ["16", "24"]}
BITS_LABELS = {"16": "16-bit", "24": "24-bit", "float": "32-bit float"}


@dataclass
class ExportChoice:
    """What the export dialog asks for; ``layers`` are the ids of the layers to
    write as stems (None: every layer; the dialog always gives its ticked ones)."""

    folder: str
    stems: bool = True
    remix: bool = False
    layers: Optional[List[str]] = None
    ext: str = "wav"
    bits: str = "24"
    apply_settings: bool = True

    def planned_files(self, session) -> List[Path]:
        """The files an export of this choice writes (named as
        ``demixstudio.session.export.export`` names them by default)."""
        folder = Path(self.folder)
        song = safe_filename(session.name)
        ext = (self.ext or "wav").lower().lstrip(".")
        out: List[Path] = []
        if self.stems:
            chosen = (list(session.layers) if self.layers is None
                      else [x for x in session.layers if x.id in set(self.layers)])
            out += [folder / (safe_filename(f"{song} - {x.name}") + f".{ext}") for x in chosen]
        if self.remix:
            out.append(folder / f"{song} - remix.{ext}")
        return out


#: Existing files named in the overwrite question before "and N more".
OVERWRITE_LISTED = 8


class ExportDialog(QDialog):
    """Choose stems (which layers) and/or the remix, format, bit depth and folder."""

    def __init__(self, session, parent: Optional[QWidget] = None, *,
                 preselect: Optional[Sequence[str]] = None, folder: Optional[str] = None,
                 ext: str = "wav", bits: str = "24") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.session = session
        lay = QVBoxLayout(self)
        self.stems = QCheckBox("Stems: one file per layer")
        self.stems.setChecked(True)
        lay.addWidget(self.stems)
        self.layers = QListWidget()
        self.layers.setMaximumHeight(160)
        chosen = set(preselect) if preselect else None
        for layer in session.layers:
            item = QListWidgetItem(layer.name)
            item.setData(Qt.ItemDataRole.UserRole, layer.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if chosen is None or layer.id in chosen
                               else Qt.CheckState.Unchecked)
            self.layers.addItem(item)
        lay.addWidget(self.layers)
        self.stems.toggled.connect(self.layers.setEnabled)
        self.apply_settings = QCheckBox("Apply each layer's gain and pan to its stem")
        self.apply_settings.setChecked(True)
        lay.addWidget(self.apply_settings)
        self.remix = QCheckBox("Remix: the mix as you hear it (mute, solo, gain, pan)")
        self.remix.setChecked(chosen is None)
        lay.addWidget(self.remix)
        form = QFormLayout()
        self.format = QComboBox()
        self.format.addItem("WAV", "wav")
        self.format.addItem("FLAC", "flac")
        self.bits = QComboBox()
        self.format.currentIndexChanged.connect(self._fill_bits)
        self.format.setCurrentIndex(max(0, self.format.findData(ext)))
        self._fill_bits(prefer=bits)
        form.addRow("Format", self.format)
        form.addRow("Bit depth", self.bits)
        row = QHBoxLayout()
        self.folder = QLineEdit(folder or str(Path.home()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form.addRow("Folder", row)
        lay.addLayout(form)
        self.note = QLabel(f"Files are named “{session.name} - <layer>”.")
        self.note.setObjectName("dimLabel")
        lay.addWidget(self.note)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        #: Asked (once) with the files that exist already; True: write over them.
        #: Tests replace it.
        self.ask_overwrite: Callable[[List[Path]], bool] = self._ask_overwrite

    def existing_files(self) -> List[Path]:
        """Files this export would write over."""
        c = self.choice()
        if not c.folder:
            return []
        try:
            return [p for p in c.planned_files(self.session) if p.exists()]
        except OSError:  # an unreadable folder: the export itself will say why
            return []

    def accept(self) -> None:
        """Export, after asking once if files of the same names are there already."""
        existing = self.existing_files()
        if existing and not self.ask_overwrite(existing):
            return  # the dialog stays open: another folder or format can be chosen
        super().accept()

    def _ask_overwrite(self, existing: List[Path]) -> bool:
        box = QMessageBox(QMessageBox.Icon.Warning, "Replace files?",
                          overwrite_question(existing),
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                          self)
        box.button(QMessageBox.StandardButton.Yes).setText("Replace")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setInformativeText("\n".join(p.name for p in existing[:OVERWRITE_LISTED])
                               + (f"\n… and {len(existing) - OVERWRITE_LISTED} more"
                                  if len(existing) > OVERWRITE_LISTED else ""))
        return box.exec() == QMessageBox.StandardButton.Yes

    def _fill_bits(self, *_args, prefer: Optional[str] = None) -> None:
        keep = prefer or self.bits.currentData() or "24"
        self.bits.clear()
        for b in BITS_BY_FORMAT[self.format.currentData() or "wav"]:
            self.bits.addItem(BITS_LABELS[b], b)
        i = self.bits.findData(keep)
        self.bits.setCurrentIndex(i if i >= 0 else self.bits.findData("24"))

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export into", self.folder.text())
        if d:
            self.folder.setText(d)

    def choice(self) -> ExportChoice:
        ids = [self.layers.item(i).data(Qt.ItemDataRole.UserRole)
               for i in range(self.layers.count())
               if self.layers.item(i).checkState() == Qt.CheckState.Checked]
        return ExportChoice(folder=self.folder.text().strip(), stems=self.stems.isChecked(),
                            remix=self.remix.isChecked(), layers=ids,
                            ext=self.format.currentData(), bits=self.bits.currentData(),
                            apply_settings=self.apply_settings.isChecked())


def overwrite_question(existing: Sequence[Path]) -> str:
    n = len(existing)
    where = existing[0].parent if existing else ""
    if n == 1:
        return f"“{existing[0].name}” already exists in {where}. Replace it?"
    return f"{n} of the files to export already exist in {where}. Replace them?"


def error_dialog(parent: Optional[QWidget], title: str, reason: str, details: str = "",
                 *, modal: bool = True) -> QMessageBox:
    """Show ``reason`` (one line); the details go to the log file, whose path is named.

    Returns the box (shown non-modally when ``modal`` is False, for tests).
    """
    path = setup_logging()
    if details:
        log.error("%s: %s\n%s", title, reason, details)
    box = QMessageBox(QMessageBox.Icon.Warning, title, reason,
                      QMessageBox.StandardButton.Ok, parent)
    box.setInformativeText(f"Details are in the log: {path}")
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if modal:
        box.exec()
    else:
        box.setModal(False)
        box.show()
    return box


def log_file() -> Path:
    return log_path()
