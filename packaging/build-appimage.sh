#!/bin/sh
# Build dist/Backchain-<version>-x86_64.AppImage offline: PyInstaller one-dir bundle, an AppDir
# with desktop integration, a zstd squashfs, and a type-2 runtime in front of it.
#
# Usage: packaging/build-appimage.sh [--out DIR] [--work DIR] [--reuse-bundle] [--which-python]
#   --out DIR        where the AppImage goes (default: dist/)
#   --work DIR       scratch space (default: build/appimage/)
#   --reuse-bundle   keep an existing PyInstaller bundle in the work dir (faster rebuilds)
#   --which-python   print the Python the build would use, and exit
# Environment:
#   PYTHON                      the Python with backchain and pyinstaller (default: the
#                               .venv/bin/python that packaging/setup.sh made, else python3)
#   APPIMAGE_RUNTIME            an upstream type-2 runtime file to use instead of ours
#   BACKCHAIN_APPIMAGE_LIBVIRT  0 to leave out the libvirt binding (it is bundled by default,
#                               without libvirt.so.0: the host's is loaded at run time)
# If appimagetool is on PATH, it packs the AppDir instead of mksquashfs + our runtime.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/dist"
WORK="$ROOT/build/appimage"
REUSE=0
WHICH=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --reuse-bundle) REUSE=1; shift ;;
        --which-python) WHICH=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build-appimage: unknown option $1" >&2; exit 2 ;;
    esac
done
# packaging/setup.sh installs PyInstaller into .venv, not into the system's python3.
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
if [ "$WHICH" = 1 ]; then echo "$PYTHON"; exit 0; fi
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
WORK=$(cd "$WORK" && pwd)

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/gui/backchain/__init__.py")
[ -n "$VERSION" ] || { echo "build-appimage: no __version__ in gui/backchain/__init__.py" >&2; exit 1; }
TARGET="$OUT/Backchain-$VERSION-x86_64.AppImage"

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "build-appimage: $1 is missing; install $2 (see packaging/apt-packages.txt)" >&2
        exit 1
    }
}
need mksquashfs squashfs-tools
"$PYTHON" -c "import PyInstaller" 2>/dev/null || {
    echo "build-appimage: PyInstaller is missing; run: pip install '.[packaging]'" >&2
    exit 1
}

# 1. The one-dir bundle.
BUNDLE="$WORK/pyinstaller/dist/backchain"
if [ "$REUSE" = 1 ] && [ -x "$BUNDLE/backchain" ]; then
    echo "build-appimage: reusing $BUNDLE"
else
    echo "build-appimage: bundling with PyInstaller"
    (cd "$ROOT" && "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$WORK/pyinstaller/dist" --workpath "$WORK/pyinstaller/work" \
        packaging/backchain.spec)
fi

# 2. The AppDir.
APPDIR="$WORK/AppDir"
RES="$ROOT/resources"
rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr/lib" "$APPDIR/usr/bin" "$APPDIR/usr/share/applications" \
    "$APPDIR/usr/share/metainfo" "$APPDIR/usr/share/mime/packages" \
    "$APPDIR/usr/share/icons/hicolor/scalable/apps"
# cp -a keeps PyInstaller's symlinks; copies would double the size.
cp -a "$BUNDLE" "$APPDIR/usr/lib/backchain"
# PyInstaller leaves top-level links to the Qt libraries the spec filtered out; drop them.
find "$APPDIR/usr/lib/backchain" -xtype l -delete
ln -s ../lib/backchain/backchain "$APPDIR/usr/bin/backchain"
install -m 755 "$ROOT/packaging/AppRun" "$APPDIR/AppRun"
install -m 644 "$RES/backchain.desktop" "$APPDIR/backchain.desktop"
install -m 644 "$RES/backchain.desktop" "$APPDIR/usr/share/applications/backchain.desktop"
install -m 644 "$RES/backchain.svg" "$APPDIR/backchain.svg"
install -m 644 "$RES/backchain.svg" "$APPDIR/usr/share/icons/hicolor/scalable/apps/backchain.svg"
for size in 48 128 256; do
    dir="$APPDIR/usr/share/icons/hicolor/${size}x${size}/apps"
    mkdir -p "$dir"
    install -m 644 "$RES/backchain-$size.png" "$dir/backchain.png"
done
install -m 644 "$RES/backchain-256.png" "$APPDIR/.DirIcon"
install -m 644 "$RES/io.github.backchain.Backchain.metainfo.xml" "$APPDIR/usr/share/metainfo/"
install -m 644 "$RES/backchain-mime.xml" "$APPDIR/usr/share/mime/packages/backchain.xml"

# 3 and 4. Pack and prepend a runtime.
rm -f "$TARGET"
if command -v appimagetool >/dev/null 2>&1; then
    echo "build-appimage: packing with $(command -v appimagetool)"
    set -- --no-appstream
    [ -n "${APPIMAGE_RUNTIME:-}" ] && set -- "$@" --runtime-file "$APPIMAGE_RUNTIME"
    ARCH=x86_64 appimagetool "$@" "$APPDIR" "$TARGET"
else
    if [ -n "${APPIMAGE_RUNTIME:-}" ]; then
        RUNTIME=$APPIMAGE_RUNTIME
        echo "build-appimage: using the runtime $RUNTIME"
    else
        make -s -C "$ROOT/packaging/runtime" BUILD="$WORK/runtime"
        RUNTIME="$WORK/runtime/runtime"
    fi
    SQFS="$WORK/backchain.sqfs"
    mksquashfs "$APPDIR" "$SQFS" -root-owned -noappend -comp zstd -quiet -no-progress
    cat "$RUNTIME" "$SQFS" > "$TARGET.part"
    chmod 755 "$TARGET.part"
    mv "$TARGET.part" "$TARGET"
fi
echo "build-appimage: $TARGET ($(du -m "$TARGET" | cut -f1) MB)"
