#!/bin/sh
# Report (never assert) the AppImage's figures: size against the 90 MB target, glibc baseline, the
# oldest host libvirt the bundled binding loads, and start time to the first window on a virtual
# X screen, through FUSE and through extract-and-run.
#
# Usage: packaging/measure-appimage.sh [APPIMAGE] [RUNS]
# Needs: Xvfb, xwininfo (x11-utils), objdump (binutils). Root drops the page cache before each
# cold run; without root the runs are warm and say so.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/gui/backchain/__init__.py")
IMAGE=$(readlink -f "${1:-$ROOT/dist/Backchain-$VERSION-x86_64.AppImage}")
RUNS=${2:-3}
[ -x "$IMAGE" ] || { echo "measure-appimage: no AppImage at $IMAGE (build it first)" >&2; exit 1; }
SCRATCH=$(mktemp -d)
XPID=
cleanup() {
    [ -n "$XPID" ] && kill "$XPID" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT INT TERM

bytes=$(stat -c %s "$IMAGE")
echo "size: $bytes bytes ($(( bytes / 1000000 )) MB, $(( bytes / 1048576 )) MiB; target: under 90 MB)"

# glibc baseline: the highest GLIBC_x.y version any bundled ELF file (or the runtime) needs.
(cd "$SCRATCH" && "$IMAGE" --appimage-extract >/dev/null)
find "$SCRATCH/squashfs-root" -type f | while read -r f; do
    [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u | sed "s|$| ${f#"$SCRATCH"/squashfs-root/}|"
done > "$SCRATCH/glibc.txt"
objdump -T "$IMAGE" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u | sed 's/$/ (runtime)/' \
    >> "$SCRATCH/glibc.txt"
top=$(cut -d' ' -f1 "$SCRATCH/glibc.txt" | sort -u -V | tail -1)
echo "glibc baseline: $top, needed by: $(grep "^$top " "$SCRATCH/glibc.txt" | cut -d' ' -f2- | head -5 | tr '\n' ' ')"
# libvirt: the binding is bundled, the client library is the host's; the newest symbol version
# the binding needs is the oldest host libvirt it loads.
bundled=$(find "$SCRATCH/squashfs-root" -name 'libvirt*.so*' ! -name 'libvirtmod*' -printf '%f ')
echo "libvirt client libraries bundled: ${bundled:-none}"
for mod in "$SCRATCH"/squashfs-root/usr/lib/backchain/_internal/libvirtmod*.so; do
    [ -e "$mod" ] || { echo "libvirt binding: not bundled"; break; }
    need=$(objdump -T "$mod" | grep -o 'LIBVIRT[A-Z_]*_[0-9][0-9.]*' | sort -u -V | tail -1)
    echo "libvirt binding $(basename "$mod"): needs the host's ${need:-?}"
done
rm -rf "$SCRATCH/squashfs-root"

# Start time: from exec to a mapped top-level window titled Backchain (Qt paints it in the
# same event-loop pass that maps it).
DISPLAY_NUM=:$(( 90 + $$ % 100 ))
Xvfb "$DISPLAY_NUM" -screen 0 1400x900x24 -nolisten tcp >/dev/null 2>&1 &
XPID=$!
sleep 1
cold=warm
[ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ] && cold=cold
now() { date +%s.%N; }
for mode in fuse extract-and-run; do
    for run in $(seq "$RUNS"); do
        [ "$cold" = cold ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
        extra=
        [ "$mode" = extract-and-run ] && extra=--appimage-extract-and-run
        start=$(now)
        # shellcheck disable=SC2086  # $extra is empty or one word
        DISPLAY=$DISPLAY_NUM QT_QPA_PLATFORM=xcb "$IMAGE" $extra --demo >/dev/null 2>&1 &
        app=$!
        while ! DISPLAY=$DISPLAY_NUM xwininfo -root -tree 2>/dev/null | grep -q '"[^"]*Backchain'; do
            kill -0 "$app" 2>/dev/null || { echo "$mode: the app exited before a window" >&2; break; }
            sleep 0.02
        done
        end=$(now)
        kill "$app" 2>/dev/null || true
        wait "$app" 2>/dev/null || true
        echo "start to window ($mode, $cold, run $run): $(echo "$end - $start" | bc) s"
    done
done
