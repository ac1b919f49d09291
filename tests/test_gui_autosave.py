"""Saving, closing, autosave and crash recovery in the editor, and the export
dialog's overwrite question: the ways an editor can lose a user's work.

Offscreen Qt (pytest-qt); the documents are ICA layers of a real speech mixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from gui_support import ica_separation, ica_session, isolated_env, open_editor

from PySide6.QtGui import QCloseEvent  # noqa: E402

import demixstudio.gui.autosave as autosave  # noqa: E402
import demixstudio.gui.main_window as mw  # noqa: E402
from demixstudio.audio import atomic  # noqa: E402
from demixstudio.gui.dialogs import ExportChoice, ExportDialog  # noqa: E402
from demixstudio.session.project import load_project, save_project  # noqa: E402
from demixstudio.session.session import Session  # noqa: E402

JOB_MS = 120000


@pytest.fixture(scope="module")
def separated():
    """The speech mixture and ICA's proposals for it (computed once)."""
    return ica_separation()


def fresh(separated) -> Session:
    """A new session with the ICA layers (2 layers + residual) and an empty history."""
    return ica_session(source_path="/nowhere/speech.wav")


@pytest.fixture
def win(qtbot, monkeypatch, tmp_path):
    w = open_editor(qtbot, monkeypatch, tmp_path, autosave=True)
    yield w
    w.shutdown()


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def crash_autosave(session, token: str, **record) -> autosave.RecoveryEntry:
    """The files a crashed editor leaves in the autosave folder."""
    d = autosave.autosave_dir()
    d.mkdir(parents=True, exist_ok=True)
    save_project(session, d / f"{token}.dsproj")
    doc = {"pid": dead_pid(), "name": session.name, "source": session.source_path,
           "saved_at": 1.7e9, **record}
    (d / f"{token}.json").write_text(json.dumps(doc), encoding="utf-8")
    found = [e for e in autosave.recoverable() if e.project.stem == token]
    assert len(found) == 1
    return found[0]


# -- 1. a failed save never closes the window ------------------------------------------------
@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("Error opening 'x': System error")])
def test_close_then_save_that_fails_keeps_the_window_and_the_changes(qtbot, win, separated,
                                                                    monkeypatch, tmp_path, error):
    win.set_session(fresh(separated))
    win.session.set(win.session.layers[0], gain_db=-5.0)
    assert win.modified
    win.project_path = tmp_path / "song.dsproj"
    win.ask_save_changes = lambda: "save"

    def boom(session, path):
        raise error
    monkeypatch.setattr(mw, "save_project", boom)
    ev = QCloseEvent()
    win.closeEvent(ev)
    assert not ev.isAccepted()
    assert not win.close()  # the window's close button: the same path through Qt
    assert win.isVisible() and win.modified and win.session is not None
    assert win.autosaver.session is win.session  # not shut down
    assert [e[0] for e in win.errors] == ["Save failed", "Save failed"]
    assert "nothing was closed" in win.errors[0][1]
    assert not (tmp_path / "song.dsproj").exists()


def test_ctrl_s_that_fails_shows_why_and_keeps_the_document_modified(qtbot, win, separated,
                                                                    monkeypatch, tmp_path):
    win.set_session(fresh(separated))
    win.session.set(win.session.layers[0], gain_db=-5.0)
    win.project_path = tmp_path / "song.dsproj"

    def boom(session, path):
        raise MemoryError()
    monkeypatch.setattr(mw, "save_project", boom)
    with qtbot.waitSignal(win.runner.finished, timeout=JOB_MS):
        win.act_save.trigger()
    assert win.modified and "•" in win.windowTitle()
    assert len(win.errors) == 1 and "memory" in win.errors[0][1]


# -- 2, 3. recovery keeps the crash's autosave until its own exists; keeps the project path ---
def test_recovery_keeps_the_crash_autosave_until_its_own_is_written(qtbot, win, separated,
                                                                    tmp_path):
    s = fresh(separated)
    s.set(s.layers[0], gain_db=-9.0)
    proj = tmp_path / "my song.dsproj"
    entry = crash_autosave(s, "1-crashed", project=str(proj))
    win.autosaver._debounce.setInterval(3600 * 1000)  # autosaved below, when the test says
    assert entry.project_path == str(proj)

    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.recover(entry)
    r = win.session
    assert r.layers[0].gain_db == pytest.approx(-9.0) and win.modified
    # 3. the document is the project it was, not a new file beside the audio
    assert win.project_path == proj and win.windowTitle().startswith("my song.dsproj")
    # 2. nothing of ours is on disk yet: the crash's autosave is still there, claimed
    assert not win.autosaver.project_path.exists()
    assert entry.project.is_file() and entry.record.is_file()
    doc = json.loads(entry.record.read_text())
    assert doc["pid"] == os.getpid() and doc["proc"] == autosave.process_identity(os.getpid())
    assert autosave.recoverable() == []  # not offered while this process runs...
    # ...but offered again if this process dies now (a second crash)
    doc_dead = dict(doc, pid=dead_pid())
    entry.record.write_text(json.dumps(doc_dead))
    assert [e.project for e in autosave.recoverable()] == [entry.project]
    entry.record.write_text(json.dumps(doc))

    with qtbot.waitSignal(win.autosaver.saved, timeout=JOB_MS):
        win.autosaver.save_now()
    assert win.autosaver.project_path.is_file()
    assert not entry.project.exists() and not entry.record.exists()
    rec = json.loads(win.autosaver.record_path.read_text())
    assert rec["project"] == str(proj)  # a crash now would still know the project

    # Ctrl+S writes the project it came from
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.act_save.trigger()
    assert proj.is_file() and not win.modified
    assert load_project(proj).layers[0].gain_db == pytest.approx(-9.0)
    assert not win.autosaver.project_path.exists()


def test_a_save_or_a_clean_exit_right_after_recovery_removes_the_crash_autosave(
        qtbot, win, separated):
    entry = crash_autosave(fresh(separated), "2-crashed")
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.recover(entry)
    assert entry.project.is_file()
    assert win.project_path is None  # it was never saved as a project
    win.shutdown()  # the user closed and chose Discard
    assert not entry.project.exists() and not entry.record.exists()
    assert autosave.recoverable() == []


# -- 4. a failed autosave is shown -----------------------------------------------------------
def test_a_failed_autosave_is_shown_in_the_status_bar_until_one_works(qtbot, win, separated,
                                                                     monkeypatch):
    win.set_session(fresh(separated))
    real = autosave.save_project

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(autosave, "save_project", disk_full)
    win.session.set(win.session.layers[0], gain_db=-2.0)
    with qtbot.waitSignal(win.autosaver.failed, timeout=JOB_MS):
        win.autosaver.save_now()
    assert win.autosave_warning.isVisible()
    assert "Autosave failed" in win.autosave_warning.text()
    assert "no space left on the disk" in win.autosave_warning.text()
    assert win.errors == []  # no dialog

    monkeypatch.setattr(autosave, "save_project", real)
    with qtbot.waitSignal(win.autosaver.saved, timeout=JOB_MS):
        win.autosaver.save_now()
    assert not win.autosave_warning.isVisible()


# -- 5. a reused process id -------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc identity")
def test_an_autosave_whose_pid_now_belongs_to_another_process_is_offered(env_dir, separated):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ident = autosave.process_identity(live.pid)
        assert ident is not None
        s = fresh(separated)
        d = autosave.autosave_dir()
        d.mkdir(parents=True)
        project = save_project(s, d / "t.dsproj").read_bytes()

        def write(token, **rec):
            (d / f"{token}.dsproj").write_bytes(project)
            (d / f"{token}.json").write_text(json.dumps({"pid": live.pid, "name": token, **rec}))
        write("same", proc=ident)                                    # its writer still runs
        write("old_record")                                          # only a pid: trusted
        write("reused", proc=dict(ident, start=ident["start"] - 1))  # another process now
        write("rebooted", proc=dict(ident, boot="another boot"))
        (d / "t.dsproj").unlink()
        assert sorted(e.name for e in autosave.recoverable()) == ["rebooted", "reused"]
    finally:
        live.kill()
        live.wait()


@pytest.fixture
def env_dir(monkeypatch, tmp_path):
    return isolated_env(monkeypatch, tmp_path)


# -- 8. stale temporaries --------------------------------------------------------------------
def test_start_up_removes_the_temporaries_of_killed_writers(env_dir, monkeypatch):
    d = autosave.autosave_dir()
    d.mkdir(parents=True)
    dead = d / f".{dead_pid()}-0badf00d.k2j3h4.dsproj.part"
    mine = d / f".{os.getpid()}-0badf00d.k2j3h4.dsproj.part"
    other = d / "notes.txt.part"  # not an autosave's
    for p in (dead, mine, other):
        p.write_bytes(b"half")
    monkeypatch.delattr(atomic, "remove_stale_parts", raising=False)
    autosave.Autosaver()
    assert not dead.exists() and mine.exists() and other.exists()

    calls = []
    monkeypatch.setattr(atomic, "remove_stale_parts", calls.append, raising=False)
    autosave.Autosaver()
    assert calls == [d]  # the shared helper, where it exists

    def broken(folder):
        raise OSError("busy")
    monkeypatch.setattr(atomic, "remove_stale_parts", broken, raising=False)
    autosave.Autosaver()  # a failed cleanup never stops the editor


# -- 6. export asks before writing over files ------------------------------------------------
def test_export_dialog_asks_once_before_writing_over_files(qtbot, env_dir, separated, tmp_path):
    s = fresh(separated)
    out = tmp_path / "out"
    out.mkdir()
    dlg = ExportDialog(s, None, folder=str(out))
    qtbot.addWidget(dlg)
    dlg.remix.setChecked(True)
    planned = dlg.choice().planned_files(s)
    assert [p.name for p in planned] == [f"speech - {x.name}.wav" for x in s.layers] \
        + ["speech - remix.wav"]
    asked = []
    dlg.ask_overwrite = lambda files: asked.append(files) or False
    dlg.accept()  # nothing there: no question
    assert asked == [] and dlg.result() == ExportDialog.DialogCode.Accepted

    for p in planned[:2]:
        p.write_bytes(b"an earlier export")
    dlg.setResult(ExportDialog.DialogCode.Rejected)
    dlg.accept()
    assert asked == [planned[:2]] and dlg.result() == ExportDialog.DialogCode.Rejected
    dlg.ask_overwrite = lambda files: asked.append(files) or True
    dlg.accept()
    assert len(asked) == 2 and dlg.result() == ExportDialog.DialogCode.Accepted

    from demixstudio.gui.dialogs import overwrite_question
    assert overwrite_question(planned[:2]).startswith("2 of the files")
    assert "already exists" in overwrite_question(planned[:1])


def test_the_overwrite_question_is_a_real_message_box(qtbot, env_dir, separated, tmp_path):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    s = fresh(separated)
    dlg = ExportDialog(s, None, folder=str(tmp_path))
    qtbot.addWidget(dlg)
    dlg.remix.setChecked(True)
    (tmp_path / "speech - remix.wav").write_bytes(b"x")
    seen = []

    def answer():
        box = QApplication.activeModalWidget()
        seen.append((box.text(), box.informativeText()))
        box.button(QMessageBox.StandardButton.Cancel).click()
    QTimer.singleShot(100, answer)
    assert dlg.ask_overwrite([tmp_path / "speech - remix.wav"]) is False
    assert "Replace it?" in seen[0][0] and "speech - remix.wav" in seen[0][1]


# -- 7. labels, the close question, a failed export's folder ---------------------------------
def test_undo_labels_are_words_not_field_names(qtbot, win, separated):
    win.set_session(fresh(separated))
    s = win.session
    s.set(s.layers[0], gain_db=-3.0)
    assert win.act_undo.text() == "&Undo gain"
    s.set(s.layers[0], mute=True, pan=0.5)
    assert win.act_undo.text() in ("&Undo mute and pan", "&Undo pan and mute")
    s.undo()
    assert win.act_redo.text() in ("&Redo mute and pan", "&Redo pan and mute")
    assert mw.human_step_label("remove voice from A & B") == "remove voice from A && B"


def test_the_close_question_says_what_save_writes(qtbot, win, separated, tmp_path):
    win.set_session(fresh(separated))
    q = win.save_changes_question()
    assert "speech.wav" in q and ".dsproj" in q and "not changed" in q
    win.project_path = tmp_path / "song.dsproj"
    assert win.save_changes_question() == "Save the changes to song.dsproj?"


def test_a_failed_export_does_not_remember_its_folder(qtbot, win, separated, tmp_path):
    win.set_session(fresh(separated))
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with qtbot.waitSignal(win.runner.finished, timeout=JOB_MS):
        assert win.export(ExportChoice(folder=str(blocker / "stems"), remix=True))
    assert win.errors and win.prefs.export_folder() is None
    good = tmp_path / "stems"
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.export(ExportChoice(folder=str(good), stems=False, remix=True))
    assert win.prefs.export_folder() == str(good)


# -- 9. modified means "not the state opened or last saved" ------------------------------------
def closing_asks(win) -> bool:
    """Whether closing the window now would ask to save (answered Cancel). What
    closeEvent asks, without shutting the window down when it would close."""
    asked = []
    win.ask_save_changes = lambda: (asked.append(1), "cancel")[1]
    assert win._may_discard() == (not asked)
    return bool(asked)


def test_undo_or_redo_back_to_the_opened_or_saved_state_is_not_modified(qtbot, win, separated,
                                                                        tmp_path):
    win.autosaver._debounce.setInterval(3600 * 1000)  # autosaved below, when the test says
    win.set_session(fresh(separated))
    s = win.session
    s.set(s.layers[0], gain_db=-5.0)
    assert win.modified and "•" in win.windowTitle() and win.autosaver.dirty
    with qtbot.waitSignal(win.autosaver.saved, timeout=JOB_MS):
        win.autosaver.save_now()
    assert win.autosaver.project_path.is_file()
    win.act_undo.trigger()  # back to the state opened
    assert not win.modified and "•" not in win.windowTitle()
    # Autosave agrees: nothing to write, and no autosave of the undone edit to recover.
    assert not win.autosaver.dirty and not win.autosaver.project_path.exists()
    assert autosave.recoverable() == []
    win.act_redo.trigger()
    assert win.modified and win.autosaver.dirty

    proj = tmp_path / "song.dsproj"
    with qtbot.waitSignal(win.jobApplied, timeout=JOB_MS):
        win.save_to(proj)
    assert not win.modified
    s.set(s.layers[1], mute=True)
    assert win.modified
    win.act_undo.trigger()  # back to the state saved
    assert not win.modified and "•" not in win.windowTitle() and not closing_asks(win)


def test_redo_back_to_the_saved_state_and_past_it(qtbot, win, separated, tmp_path):
    win.set_session(fresh(separated))
    s = win.session
    s.set(s.layers[0], gain_db=-5.0)
    s.set(s.layers[0], gain_db=-7.0)
    win.project_path = tmp_path / "song.dsproj"
    win.ask_save_changes = lambda: "save"
    assert win._may_discard()  # saved here and now (the close question's Save)
    assert not win.modified
    win.act_undo.trigger()
    win.act_undo.trigger()
    assert win.modified  # the state opened is not the one saved
    win.act_redo.trigger()
    assert win.modified
    win.act_redo.trigger()
    assert not win.modified and not closing_asks(win)
    # A new edit after undoing past the save: the saved state can no longer come back.
    win.act_undo.trigger()
    s.set(s.layers[0], gain_db=-7.0)
    assert win.modified and closing_asks(win)


def test_a_saved_state_whose_undo_step_was_dropped_stays_modified(qtbot, win, separated):
    win.set_session(fresh(separated))
    s = win.session
    s.history.budget = 0  # only the most recent step is kept
    for value in (0.5, 0.25, 1.0):  # each stroke holds the tiles it replaced
        s.paint_stroke("target 1", slice(0, 64), slice(0, 32),
                       np.full((64, 32), value, np.float32))
    assert s.history.truncated and s.history.undo_steps == 1
    while win.act_undo.isEnabled():
        win.act_undo.trigger()
    assert win.modified and "•" in win.windowTitle() and closing_asks(win)


def test_a_new_paint_target_is_an_edit_that_is_saved(qtbot, win, separated, tmp_path):
    """A project keeps its paint targets, empty ones too: making one modifies it."""
    win.set_session(fresh(separated))
    proj = tmp_path / "song.dsproj"
    win.project_path = proj
    assert win.session.paint.targets() == ["target 1"] and not win.modified
    assert win.new_paint_target("drums") == "drums"
    assert win.current_target() == "drums"
    assert win.modified and "•" in win.windowTitle() and closing_asks(win)
    assert win.act_undo.text() == "&Undo new paint target drums"
    win.act_undo.trigger()
    assert win.session.paint.targets() == ["target 1"] and win.current_target() == "target 1"
    assert not win.modified and not closing_asks(win)
    win.act_redo.trigger()
    assert win.modified and win.target_combo.findText("drums") >= 0
    win.ask_save_changes = lambda: "save"
    assert win._may_discard()
    assert load_project(proj).paint.targets() == ["target 1", "drums"]
    assert not win.modified
