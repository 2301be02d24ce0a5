#!/usr/bin/env bash
# Sets Backchain up on Debian 12 as root: system packages, a virtual environment in .venv with
# the project and its test tools, then (with --demo) opens the window on a demo chain.
#   packaging/setup.sh           install everything
#   packaging/setup.sh --demo    install everything, then open the demo
set -euo pipefail
cd "$(dirname "$0")/.."

want_demo=0
[ "${1:-}" = "--demo" ] && want_demo=1

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh installs Debian packages: run it as root (or with sudo)." >&2
  exit 2
fi

# What the program itself needs on a Debian 12 desktop or server: Python, QEMU's tools, and the
# libraries Qt loads for both the xcb (a real screen, or Xvfb) and offscreen platforms.
base_packages=(
  python3 python3-venv python3-dev gcc
  qemu-utils qemu-system-x86
  xvfb xauth x11-apps netpbm
  fonts-dejavu-core libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb-xkb1 libxcb-util1
  libxkbcommon-x11-0 libx11-xcb1
)
# Packages the test suite and the AppImage build need, kept in one list by topic.
mapfile -t extra_packages < <(grep -v '^\s*#' packaging/apt-packages.txt | sed '/^\s*$/d')

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${base_packages[@]}" "${extra_packages[@]}"

# A virtual environment keeps pip away from Debian's own Python packages (PEP 668).
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,libvirt,packaging]'
echo "Backchain is installed in $(pwd)/.venv (run it as .venv/bin/backchain)."

if [ "$want_demo" -eq 1 ]; then
  if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
    exec .venv/bin/backchain --demo
  fi
  echo "No display here: running the demo on a virtual screen (Xvfb) as a self-test."
  exec xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/backchain --demo --self-test
fi
