"""Starts the window on the demo and saves a PNG per preview state into resources/screenshots/.

One configuration per run (the scale factor must be set before Qt starts):

    xvfb-run -a -s "-screen 0 1400x900x24" python packaging/screenshots.py [--dark] [--out=DIR]
    python packaging/screenshots.py --all --out=DIR

``--all`` runs every configuration under its own Xvfb screen with openbox as the window
manager (as a user sees it): light and dark (with the interrupted-job banner) at 1400×900,
1366×768 (with a job running and a 30-layer chain), and 1920×1080 at QT_SCALE_FACTOR=1.5.
Each shot is the whole screen (window frame included) when a window manager runs, else the
window alone. It also works with QT_QPA_PLATFORM=offscreen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from tests.images import ChainBuilder

from backchain.engines import ledger
from backchain.engines.demo import make_demo
from backchain.ui.app import make_app
from backchain.ui.main_window import MainWindow
from backchain.ui.roles import dark_palette

OUT = Path(__file__).resolve().parent.parent / "resources" / "screenshots"
CONFIGS = {
    # name: (screen, extra environment, arguments)
    "light": ("1400x900", {}, ["--after", "--snapshots"]),
    "dark": ("1400x900", {}, ["--dark", "--banner"]),
    "small": ("1366x768", {}, ["--prefix=1366x768-", "--busy", "--tall"]),
    "scaled": ("1920x1080", {"QT_SCALE_FACTOR": "1.5"}, ["--prefix=1920x1080-scale1.5-"]),
}
Step = tuple[str, Callable[[], None]]


def _states(window: MainWindow, names: dict[str, str]) -> list[Step]:
    panel = window.plan_panel

    def reset() -> None:
        for box in (panel.shallow, panel.delete, panel.keep_relative):
            box.setChecked(False)
        panel.top_combo.setCurrentIndex(0)
        panel.base_combo.setCurrentIndex(0)
        panel.set_direction("commit")

    def step(
        top: str | None,
        base: str | None,
        shallow: bool = False,
        delete: bool = False,
        direction: str = "commit",
    ) -> Callable[[], None]:
        def apply() -> None:
            reset()
            panel.set_direction(direction)
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
        # The same selection in the other direction: the two columns compare both plans.
        ("10-pull-snap2-into-active", step(None, "snap2.qcow2", direction="pull")),
        ("11-pull-flatten-active-delete", step(None, None, delete=True, direction="pull")),
    ]


def _option(name: str, default: str = "") -> str:
    return next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"--{name}=")), default)


def _save(window: MainWindow, path: Path) -> None:
    """The whole screen when a window manager draws the frame, else the window itself."""
    screen = QGuiApplication.primaryScreen()
    if os.environ.get("BACKCHAIN_SHOT_SCREEN") and screen is not None:
        screen.grabWindow(0).save(str(path))
    else:
        window.grab().save(str(path))
    geometry = window.frameGeometry()
    room = screen.availableGeometry() if screen is not None else geometry
    print(f"{path} window {geometry.width()}x{geometry.height()} screen {room.width()}x"
          f"{room.height()}")  # fmt: skip


def _tall_chain(directory: str) -> str:
    """30 layers with long names that differ in the middle, and one clone in a sibling folder."""
    builder = ChainBuilder(Path(directory))
    names = [f"prod-webserver-2024-{i:02d}-15-pre-update.qcow2" for i in range(30)]
    paths = builder.chain(names, data=False)
    return str(paths[-1])


def _snapshot_chain(directory: str) -> str:
    """base <- system <- active, with internal snapshots in base and system (qemu-img snapshot)."""
    paths = ChainBuilder(Path(directory)).chain(["base.qcow2", "system.qcow2", "active.qcow2"])
    tables = {paths[0]: ["installed", "before-upgrade-2026-with-a-long-name", "after-upgrade"],
              paths[1]: ["clean"]}  # fmt: skip
    for image, names in tables.items():
        for name in names:
            subprocess.run(["qemu-img", "snapshot", "-c", name, str(image)], check=True)
    return str(paths[-1])


def _snapshots_step(window: MainWindow, directory: str) -> Step:
    def apply() -> None:
        image = _snapshot_chain(os.path.join(directory, "snapshots"))
        if window.jobs.running:
            window.job_done.connect(lambda *_a: window.open_image(image))
        else:
            window.open_image(image)

    return ("12-internal-snapshots-on-cards", apply)


class Shooter:
    """Applies each step, waits for the window to settle, saves a PNG, then the next one."""

    def __init__(self, window: MainWindow, out: Path, prefix: str) -> None:
        self.window, self.out, self.prefix = window, out, prefix
        self.steps: list[Step] = []
        self.reads: set[str] = set()
        """Steps that read a new graph; their shot waits for it."""

    def run(self, index: int = 0) -> None:
        """Shoot steps from ``index``; quit after the last."""
        if index >= len(self.steps):
            QGuiApplication.quit()
            return
        name, apply = self.steps[index]
        waiting = name in self.reads

        def grab() -> None:
            if waiting:
                self.window.graph_shown.disconnect(on_shown)
            self.window.view.fit()
            _save(self.window, self.out / f"{self.prefix}{name}.png")
            self.run(index + 1)

        def on_shown(stage: str) -> None:
            if stage in ("extents", "error"):
                QTimer.singleShot(400, grab)

        if waiting:  # this step opens another graph: shoot once it is read
            self.window.graph_shown.connect(on_shown)
        apply()
        if not waiting:
            QTimer.singleShot(400, grab)


def _interrupt_then(window: MainWindow, after: Callable[[], None]) -> None:
    """Start the shown plan at 1 MiB/s and cancel at its first report: the banner then shows."""
    window.plan_panel.rate.setValue(1)
    assert window.plan is not None
    worker = window.start_job(window.plan)
    fired: list[bool] = []

    def cancel(*_args: object) -> None:
        if not fired:
            fired.append(True)
            window.jobs.cancel()

    worker.progressed.connect(cancel)

    def shown(stage: str) -> None:
        if stage == "extents":
            window.graph_shown.disconnect(shown)
            window.plan_panel.rate.setValue(0)
            QTimer.singleShot(300, after)

    window.job_done.connect(lambda *_a: window.graph_shown.connect(shown))


def _busy_step(window: MainWindow, default: Callable[[], None]) -> Step:
    def apply() -> None:
        default()  # the default commit, which has a plan to run
        window.plan_panel.rate.setValue(1)
        if window.plan is not None:
            window.start_job(window.plan)

    return ("07-job-running-controls-locked", apply)


def _after_commit_step(window: MainWindow, default: Callable[[], None]) -> Step:
    """Run the default commit for real; the ledger then marks what it left behind."""

    def apply() -> None:
        default()
        window.plan_panel.rate.setValue(0)
        plan = window.plan
        if plan is None:
            return
        # The runner records the ledger once that half is merged; here the script does.
        window.job_done.connect(lambda ok, *_a: ledger.record(plan) if ok else None)
        window.start_job(plan)

    return ("09-after-commit-ledger-marks", apply)


def _tall_step(window: MainWindow, directory: str) -> Step:
    def apply() -> None:
        image = _tall_chain(os.path.join(directory, "tall"))
        if window.jobs.running:
            window.job_done.connect(lambda *_a: window.open_image(image))
            window.jobs.cancel()
        else:
            window.open_image(image)

    return ("08-30-layer-chain-long-names", apply)


def _one(out: Path) -> int:
    """One configuration in this process."""
    scratch = tempfile.mkdtemp(prefix="backchain-shots-")
    os.environ.setdefault("BACKCHAIN_SETTINGS", os.path.join(scratch, "settings.ini"))
    os.environ.setdefault("BACKCHAIN_STATE_DIR", os.path.join(scratch, "state"))
    app = make_app()
    dark = "--dark" in sys.argv
    if dark:
        app.setPalette(dark_palette())
    window = MainWindow()
    window.show()
    out.mkdir(parents=True, exist_ok=True)
    directory = os.path.join(scratch, "demo")
    active = make_demo(directory)
    names = {name: os.path.join(directory, name) for name in os.listdir(directory)}
    shooter = Shooter(window, out, _option("prefix", "dark-" if dark else ""))
    shooter.steps = _states(window, names)
    if "--busy" in sys.argv:
        shooter.steps.append(_busy_step(window, shooter.steps[0][1]))
    if "--after" in sys.argv:
        shooter.steps.append(_after_commit_step(window, shooter.steps[0][1]))
        shooter.reads.add(shooter.steps[-1][0])
    if "--tall" in sys.argv:
        shooter.steps.append(_tall_step(window, scratch))
        shooter.reads.add(shooter.steps[-1][0])
    if "--snapshots" in sys.argv:
        shooter.steps.append(_snapshots_step(window, scratch))
        shooter.reads.add(shooter.steps[-1][0])
    if "--banner" in sys.argv:
        shooter.steps.insert(0, ("00-interrupted-job-banner", lambda: None))

    def on_shown(stage: str) -> None:
        if stage == "extents":
            window.graph_shown.disconnect(on_shown)
            if "--banner" in sys.argv:
                _interrupt_then(window, shooter.run)
            else:
                QTimer.singleShot(300, shooter.run)
        elif stage == "error":
            print(window.banner.text(), file=sys.stderr)
            app.exit(1)

    window.graph_shown.connect(on_shown)
    window.open_image(active)
    QTimer.singleShot(120_000, lambda: app.exit(2))
    code = int(app.exec())
    if window.jobs.running:
        window.jobs.cancel()
    shutil.rmtree(scratch, ignore_errors=True)
    return code


def _all(out: Path) -> int:
    """Every configuration, each under its own Xvfb screen with openbox."""
    failed = 0
    for name, (screen, env, args) in CONFIGS.items():
        print(f"== {name}: {screen} {env}")
        child = {**os.environ, **env, "BACKCHAIN_SHOT_SCREEN": "1", "QT_QPA_PLATFORM": "xcb"}
        script = (
            "openbox >/dev/null 2>&1 & wm=$!; sleep 1; "
            f'"{sys.executable}" "{__file__}" --out="{out}" {" ".join(args)}; '
            "code=$?; kill $wm; exit $code"
        )
        argv = ["xvfb-run", "-a", "-s", f"-screen 0 {screen}x24", "sh", "-c", script]
        failed += subprocess.run(argv, env=child, check=False).returncode != 0
    return 1 if failed else 0


def main() -> int:
    """Build the demo, show each state, save grabs; exit 0 when all are written."""
    # --out=DIR for trial runs (QT_SCALE_FACTOR=2, other fonts) that must not replace the
    # screenshots the repository keeps.
    out = Path(_option("out", str(OUT)))
    return _all(out) if "--all" in sys.argv else _one(out)


if __name__ == "__main__":
    sys.exit(main())
