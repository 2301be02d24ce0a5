"""PyInstaller runtime hook: give the host's programs the host's library path back."""

import os

# The bootloader prepends the bundle to LD_LIBRARY_PATH. Our own process has already read it,
# but qemu-img and QEMU must load the host's libraries, not the bundle's.
_original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
if _original is not None:
    os.environ["LD_LIBRARY_PATH"] = _original
else:
    os.environ.pop("LD_LIBRARY_PATH", None)
