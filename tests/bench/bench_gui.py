"""GUI benchmarks (they report, never assert): launch to first painted graph, stalls, paint time.

Run: ``QT_QPA_PLATFORM=offscreen python -m tests.bench.bench_gui`` (or under
``xvfb-run -a -s "-screen 0 1400x900x24"`` without the variable, for a real X server).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, QEvent, QObject, QSettings, QTimer
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QApplication

from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph, Layer
from backchain.ui.app import make_app
from backchain.ui.chain_view import ChainView
from backchain.ui.main_window import MainWindow
from tests.images import MiB, create, run, write


def _window(directory: str) -> MainWindow:
    settings = QSettings(os.path.join(directory, "bench.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings)
    window.resize(1400, 880)
    return window


def _spin(app: QApplication, done: object, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:  # type: ignore[operator]
        app.processEvents()
        time.sleep(0.001)


class _FirstPaint(QObject):
    """Notes when the graph view first paints with nodes in its scene."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.window = window
        self.at: float | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint and self.at is None and self.window.view.nodes:
            self.at = time.perf_counter()
        return False


def _build_chain(images: Path, count: int, size: str, random_allocation: bool) -> Path:
    """``count`` layers; each writes its own stretch, or (randomly) 24 scattered extents."""
    images.mkdir()
    rng = random.Random(7)
    previous: Path | None = None
    for index in range(count):
        path = images / f"layer{index:03d}.qcow2"
        if previous is None:
            create(path, size)
        else:
            create(path, backing=previous.name, cwd=images)
        if random_allocation:
            commands = []
            for _ in range(24):
                offset = rng.randrange(0, ((1 << 30) - (1 << 20)) // (64 << 10)) * (64 << 10)
                length = rng.choice((64, 256, 1024)) << 10
                commands += ["-c", f"write -P {index % 250 + 1} {offset} {length}"]
            run(["qemu-io", "-f", "qcow2", *commands, str(path)])
        else:
            write(path, 0x10 + index, index * 256 * 1024, 256 * 1024)
        previous = path
    assert previous is not None
    return previous


def bench_launch(app: QApplication, directory: str, label: str, active: Path) -> None:
    """From creating the window to the first painted graph, and to allocation."""
    start = time.perf_counter()
    window = _window(directory)
    painted = _FirstPaint(window)
    window.view.viewport().installEventFilter(painted)
    stages: dict[str, float] = {}
    window.graph_shown.connect(lambda s: stages.setdefault(s, time.perf_counter()))
    window.show()
    window.open_image(str(active))
    _spin(app, lambda: painted.at is not None and "extents" in stages)
    assert painted.at is not None
    print(f"launch -> first painted graph ({label}): {(painted.at - start) * 1000:.0f} ms")
    print(f"launch -> headers on screen ({label}): {(stages['headers'] - start) * 1000:.0f} ms")
    print(
        f"launch -> complete graph with allocation ({label}): "
        f"{(stages['extents'] - start) * 1000:.0f} ms"
    )
    window.close()


def bench_launch_50(app: QApplication, directory: str) -> None:
    """Issue 3's figure: a 50-layer chain."""
    active = _build_chain(Path(directory) / "chain50", 50, "64M", random_allocation=False)
    bench_launch(app, directory, "50 layers", active)


def bench_launch_100_random(app: QApplication, directory: str) -> None:
    """Issue 7's figure: 100 layers of 1 GiB virtual size with random allocation."""
    active = _build_chain(Path(directory) / "chain100", 100, "1G", random_allocation=True)
    bench_launch(app, directory, "100 × 1 GiB layers, random allocation", active)


def bench_stall_during_commit(app: QApplication, directory: str) -> None:
    """The longest gap between 5 ms heartbeats on the GUI thread while a commit runs."""
    images = Path(directory) / "stall"
    images.mkdir()
    base = create(images / "base.qcow2", "512M")
    mid = create(images / "mid.qcow2", backing="base.qcow2", cwd=images)
    top = create(images / "top.qcow2", backing="mid.qcow2", cwd=images)
    run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {256 * MiB}", str(mid)])
    write(top, 0x6B, 300 * MiB, MiB)
    del base
    window = _window(directory)
    window.show()
    shown: list[str] = []
    window.graph_shown.connect(shown.append)
    window.open_image(str(top))
    _spin(app, lambda: "extents" in shown)
    window.plan_panel.choose_top(os.path.realpath(mid))
    window.plan_panel.rate.setValue(128)  # about two seconds of streaming progress
    assert window.plan is not None
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def beat() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last[0]) / 1e6)
        last[0] = now

    heartbeat = QTimer()
    heartbeat.setInterval(5)
    heartbeat.timeout.connect(beat)
    heartbeat.start()
    done: list[bool] = []
    window.job_done.connect(lambda ok, *_: done.append(ok))
    started = time.perf_counter()
    window.start_job(window.plan)
    _spin(app, lambda: bool(done))
    elapsed = time.perf_counter() - started
    shown.clear()
    _spin(app, lambda: "extents" in shown)  # the re-read after the job counts too
    heartbeat.stop()
    print(
        f"commit of 256 MiB at 128 MiB/s: {elapsed:.1f} s, ok={done[0]}, "
        f"{len(window.progress.events)} progress events"
    )
    print(
        f"GUI heartbeat (5 ms): longest gap {max(gaps):.1f} ms, "
        f"median {statistics.median(gaps):.1f} ms, {len(gaps)} beats (target: under 50 ms)"
    )
    window.close()


def bench_paint_200(app: QApplication) -> None:
    """Time to render a 200-image graph (a 100-layer chain with 100 one-layer branches)."""
    layers: list[Layer] = []
    extents = ExtentSet.from_ranges([(0, MiB), (8 * MiB, 2 * MiB)])
    for index in range(100):
        backing = f"c{index - 1}" if index else None
        layers.append(_layer(f"c{index}", backing, extents))
        layers.append(_layer(f"b{index}", f"c{index}", extents))
    graph = ImageGraph(layers)
    view = ChainView()
    view.resize(1400, 880)
    view.show()
    started = time.perf_counter()
    view.set_graph(graph, "/img/c99")
    build = time.perf_counter() - started
    image = QImage(view.viewport().size(), QImage.Format.Format_ARGB32_Premultiplied)
    times: dict[str, list[float]] = {"fit": [], "100%": []}
    for label in times:
        if label == "100%":
            view.resetTransform()
        for _ in range(10):
            painter = QPainter(image)
            started = time.perf_counter()
            view.render(painter)
            painter.end()
            times[label].append((time.perf_counter() - started) * 1000)
    print(f"200-image graph: scene built in {build * 1000:.0f} ms")
    for label, values in times.items():
        print(f"200-image graph paint ({label}): median {statistics.median(values):.1f} ms")
    view.close()
    del app


def _layer(name: str, backing: str | None, extents: ExtentSet) -> Layer:
    return Layer(
        path=f"/img/{name}",
        format="qcow2",
        virtual_size=64 * MiB,
        backing_name=backing,
        backing_format="qcow2" if backing else None,
        backing_path=f"/img/{backing}" if backing else None,
        extents=extents,
    )


def main() -> None:
    """Run every GUI benchmark and print the figures."""
    app = make_app()
    print(f"Qt platform: {app.platformName()}")
    with tempfile.TemporaryDirectory(prefix="backchain-bench-") as directory:
        bench_launch_50(app, directory)
        bench_launch_100_random(app, directory)
        bench_stall_during_commit(app, directory)
    bench_paint_200(app)


if __name__ == "__main__":
    main()
