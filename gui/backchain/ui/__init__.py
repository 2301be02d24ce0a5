"""The Qt user interface: the only package that imports PySide6."""

import os

# libvirt's default event loop iterates GLib's global main context in its own thread. Qt's GLib
# dispatcher iterates that same context in the GUI thread, and the two together segfault (seen
# when a libvirt job had run before the window started). Qt's own dispatcher shares nothing.
os.environ.setdefault("QT_NO_GLIB", "1")
