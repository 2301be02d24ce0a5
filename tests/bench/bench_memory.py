"""Benchmark 5 (engine side): peak RSS of a process that holds a 1,000-image graph and plans."""

from __future__ import annotations

import subprocess
import sys

from tests.bench.common import Row, log, yes

IMAGES = 1000
EXTENTS = 1000

# Runs in a fresh interpreter so that nothing else this process holds is counted.
_CHILD = f"""
import numpy as np
from backchain.core.extents import ExtentSet
from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitRequest
from backchain.engines.registry import make_plan as plan
rng = np.random.default_rng(1)
layers, previous = [], None
for i in range({IMAGES}):
    starts = np.sort(rng.choice(1 << 20, size={EXTENTS}, replace=False)).astype(np.int64) << 16
    backing = previous if i % 10 else None
    path = f"/images/{{i:04d}}.qcow2"
    layers.append(Layer(path=path, format="qcow2", virtual_size=1 << 36, backing_path=backing,
                        backing_name=backing, backing_format=backing and "qcow2",
                        extents=ExtentSet(starts, starts + 65536)))
    previous = path
graph = ImageGraph(layers)
plan(graph, CommitRequest(image=layers[-1].path))
if WITH_GUI:
    import os
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QImage, QPainter
    from backchain.ui.app import make_app
    from backchain.ui.chain_view import ChainView
    app = make_app()
    view = ChainView()
    view.resize(1400, 880)
    view.show()
    view.set_graph(graph, layers[-1].path)
    app.processEvents()
    image = QImage(view.viewport().size(), QImage.Format.Format_ARGB32_Premultiplied)
    painter = QPainter(image)
    view.render(painter)
    painter.end()
import resource
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_mib(with_gui: bool) -> float:
    """Peak resident memory of a fresh child, as the kernel counted it (ru_maxrss, KiB)."""
    code = f"WITH_GUI = {with_gui}\n" + _CHILD
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[-1]) / 1024


def run() -> list[Row]:
    """Peak RSS without and with the Qt graph view."""
    rows = []
    for with_gui in (False, True):
        peak = peak_mib(with_gui)
        log(f"memory: {peak:.0f} MiB (GUI: {with_gui})")
        what = "with the Qt graph view painted (offscreen)" if with_gui else "engine side, no Qt"
        rows.append(
            Row(
                item=f"5. peak RSS, {IMAGES}-image graph, {EXTENTS:,} extents per layer, "
                f"one plan; {what}",
                backchain=f"{peak:.0f} MiB",
                target="< 300 MB",
                met=yes(peak * 1.048576 < 300),
            )
        )
    return rows
