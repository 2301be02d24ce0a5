"""Starts the window on the demo and saves a PNG per preview state into resources/screenshots/.

Run under a real X server for faithful fonts: ``xvfb-run -a -s "-screen 0 1400x900x24"
python packaging/screenshots.py`` (it also works with QT_QPA_PLATFORM=offscreen).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer

from backchain.engines.demo import make_demo
from backchain.ui.app import make_app
from backchain.ui.main_window import MainWindow
from backchain.ui.roles import dark_palette

OUT = Path(__file__).resolve().parent.parent / "resources" / "screenshots"


def _states(window: MainWindow, names: dict[str, str]) -> list[tuple[str, Callable[[], None]]]:
    panel = window.plan_panel

    def reset() -> None:
        for box in (panel.shallow, panel.delete, panel.keep_relative):
            box.setChecked(False)
        panel.top_combo.setCurrentIndex(0)
        panel.base_combo.setCurrentIndex(0)

    def step(top: str | None, base: str | None, shallow: bool = False, delete: bool = False):
        def apply() -> None:
            reset()
            if top:
                panel.choose_top(names[top])
            if base:
                panel.choose_base(names[base])
            panel.shallow.setChecked(shallow)
            panel.delete.setChecked(delete)

        return apply

    return [
        ("01-default-commit-into-base", step(None, None)),
        ("02-shallow-active", step(None, None, shallow=True)),
        ("03-intermediate-snap2-into-base", step("snap2.qcow2", "base.qcow2")),
        ("04-snap2-into-snap1-delete", step("snap2.qcow2", "snap1.qcow2", delete=True)),
        ("05-invalid-base-above-top", step("snap1.qcow2", "snap2.qcow2")),
        ("06-delete-refused-branch", step("snap2.qcow2", "base.qcow2", delete=True)),
    ]


def main() -> int:
    """Build the demo, show each state, save window grabs; exit 0 when all are written."""
    # Never the user's settings (recent files, geometry) nor their state directory.
    scratch = tempfile.mkdtemp(prefix="backchain-shots-")
    os.environ.setdefault("BACKCHAIN_SETTINGS", os.path.join(scratch, "settings.ini"))
    os.environ.setdefault("BACKCHAIN_STATE_DIR", os.path.join(scratch, "state"))
    app = make_app()
    dark = "--dark" in sys.argv
    # --out=DIR for trial runs (QT_SCALE_FACTOR=2, other fonts) that must not replace the
    # screenshots the repository keeps.
    out = next((Path(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--out=")), OUT)
    if dark:
        app.setPalette(dark_palette())
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    out.mkdir(parents=True, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="backchain-demo-")
    active = make_demo(directory)
    names = {name: os.path.join(directory, name) for name in os.listdir(directory)}
    states = _states(window, names)

    def shoot(index: int) -> None:
        if index >= len(states):
            app.quit()
            return
        name, apply = states[index]
        apply()
        window.view.fit()

        def grab() -> None:
            path = out / (f"dark-{name}.png" if dark else f"{name}.png")
            window.grab().save(str(path))
            print(path)
            shoot(index + 1)

        QTimer.singleShot(300, grab)

    def on_shown(stage: str) -> None:
        if stage == "extents":
            QTimer.singleShot(300, lambda: shoot(0))
        elif stage == "error":
            print(window.banner.text(), file=sys.stderr)
            app.exit(1)

    window.graph_shown.connect(on_shown)
    window.open_image(active)
    QTimer.singleShot(60_000, lambda: app.exit(2))
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
