#!/bin/sh
# Install the built app for the current user (or PREFIX) so it shows in the desktop's menu.
#   packaging/install_linux.sh [--uninstall]
# Env: PREFIX (default ~/.local). Puts the folder in $PREFIX/lib/demixstudio, a link
# $PREFIX/bin/demixstudio, the .desktop entry, the icons (hicolor theme) and the
# AppStream metainfo under $PREFIX/share.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
PREFIX="${PREFIX:-$HOME/.local}"
app="$PREFIX/lib/demixstudio"
share="$PREFIX/share"
if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$app" "$PREFIX/bin/demixstudio" "$share/applications/demixstudio.desktop" \
    "$share/metainfo/io.github.demixstudio.DemixStudio.metainfo.xml" \
    "$share/icons/hicolor/scalable/apps/demixstudio.svg"
  for n in 16 32 48 64 128 256 512; do rm -f "$share/icons/hicolor/${n}x${n}/apps/demixstudio.png"; done
  echo "uninstalled from $PREFIX"
  exit 0
fi
dist="$here/dist/demixstudio"
[ -x "$dist/demixstudio" ] || { echo "no build at $dist: run packaging/build.sh first" >&2; exit 1; }
mkdir -p "$PREFIX/bin" "$share/applications" "$share/metainfo" "$share/icons/hicolor/scalable/apps"
rm -rf "$app"
cp -a "$dist" "$app"
ln -sf "$app/demixstudio" "$PREFIX/bin/demixstudio"
install -m 644 "$here/demixstudio.desktop" "$share/applications/demixstudio.desktop"
install -m 644 "$here/io.github.demixstudio.DemixStudio.metainfo.xml" "$share/metainfo/"
install -m 644 "$repo/resources/icons/demixstudio.svg" "$share/icons/hicolor/scalable/apps/"
for n in 16 32 48 64 128 256 512; do
  mkdir -p "$share/icons/hicolor/${n}x${n}/apps"
  install -m 644 "$repo/resources/icons/demixstudio-$n.png" "$share/icons/hicolor/${n}x${n}/apps/demixstudio.png"
done
command -v update-desktop-database >/dev/null && update-desktop-database -q "$share/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$share/icons/hicolor" || true
echo "installed in $app; start it from the menu or with: $PREFIX/bin/demixstudio"
