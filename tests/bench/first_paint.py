"""Child process of bench_startup: print one line at the first paint of a window, then exit.

``python -m tests.bench.first_paint IMAGE`` runs ``backchain gui IMAGE`` through the CLI's own
entry point and reports when the graph view first paints with the graph's nodes in it.
``python -m tests.bench.first_paint --bare`` shows an empty QLabel instead: Qt's own floor.
Only the parent's clock counts; this prints ``painted`` and leaves at once.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _done() -> None:
    print("painted", flush=True)
    os._exit(0)  # at once: the figure is launch -> first paint, not the teardown


def bare() -> None:
    """A label in a window, until its first paint."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication, QLabel

    class Watch(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                _done()
            return False

    app = QApplication(sys.argv[:1])
    label = QLabel("Backchain")
    watch = Watch()
    label.installEventFilter(watch)
    label.show()
    app.exec()


def window(image: str) -> None:
    """``backchain gui IMAGE``, with a watch on the graph view's viewport."""
    from PySide6.QtCore import QEvent, QObject

    from backchain.launch import main
    from backchain.ui import app as ui_app
    from backchain.ui.main_window import MainWindow

    class Watch(QObject):
        def __init__(self, win: MainWindow) -> None:
            super().__init__(win)
            self.win = win

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and self.win.view.nodes:
                _done()
            return False

    class Watched(MainWindow):
        def __init__(self) -> None:
            super().__init__()
            self.view.viewport().installEventFilter(Watch(self))

    # run_gui() makes its window from the name in ui.app: swap in the watched one.
    setattr(ui_app, "MainWindow", Watched)  # noqa: B010
    main(["gui", image])


if __name__ == "__main__":
    if sys.argv[1:] == ["--bare"]:
        bare()
    else:
        window(sys.argv[1])
