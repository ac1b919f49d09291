#!/bin/sh
# Build the one-folder app: packaging/dist/demixstudio/demixstudio
#   packaging/build.sh            (uses .venv, installing PyInstaller into it if missing)
# Env: PYTHON (default .venv/bin/python), NICE (default 10: builds are long and CPU-bound).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
NICE="${NICE:-10}"
if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet -c constraints.txt "pyinstaller==6.22.3"
fi
# The PNG icons are committed; re-render them only when the SVG is newer.
if [ resources/icons/demixstudio.svg -nt resources/icons/demixstudio-512.png ]; then
  QT_QPA_PLATFORM=offscreen "$PYTHON" packaging/render_icons.py
fi
exec nice -n "$NICE" "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
  --distpath packaging/dist --workpath packaging/build packaging/demixstudio.spec
