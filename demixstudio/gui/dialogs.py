"""Dialogs: export (stems and/or remix, format, bit depth, folder) and errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QMessageBox, QPushButton, QVBoxLayout, QWidget)

from demixstudio.gui.settings import log_path, setup_logging

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
