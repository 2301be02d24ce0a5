"""The Qt user interface: the only package that imports PySide6."""

from backchain.ui import none_guard as _none_guard  # noqa: F401 - must run before any Qt call
