"""``python -m tests.bench [NAME ...]``: run the benchmarks and print one Markdown table."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
import traceback
from types import ModuleType

from tests.bench.common import Row, log, seconds, table, yes

# Memory first: a child's peak RSS starts from the parent's size at fork, so the parent must
# still be small. bench_gui is the GUI engineer's; it runs in a child process of its own.
MODULES = ["memory", "scan", "extents", "commit", "pull", "plan", "collapse", "gui", "startup"]
GUI_TARGETS = {
    "first painted graph": ("< 0.5 s", r"([0-9.]+) ms", 500.0),
    "complete graph with allocation (100": ("< 2 s", r"([0-9.]+) ms", 2000.0),
    "longest gap": ("< 50 ms", r"longest gap ([0-9.]+) ms", 50.0),
}


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"tests.bench.bench_{name}")
    except ModuleNotFoundError as err:
        if err.name == f"tests.bench.bench_{name}":
            return None
        raise


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default); a failing one becomes a row, not a crash."""
    names = argv or MODULES
    rows: list[Row] = []
    start = time.perf_counter()
    for name in names:
        if name == "gui":
            rows.extend(gui_rows())
            continue
        module = _load(name)
        if module is None:
            rows.append(Row(item=f"bench_{name}", backchain="not present in this checkout"))
            continue
        log(f"running bench_{name}")
        try:
            rows.extend(module.run())
        except Exception as err:  # report and go on: one broken benchmark must not hide the rest
            traceback.print_exc()
            rows.append(Row(item=f"bench_{name}", backchain=f"failed: {err}"))
    log(f"all benchmarks took {seconds(time.perf_counter() - start)}")
    print(table(sorted(rows, key=_number)))
    return 0


def _number(row: Row) -> int:
    match = re.match(r"(\d+)", row.item)
    return int(match.group(1)) if match else 99


def gui_rows() -> list[Row]:
    """Run the GUI engineer's bench_gui in a child process and turn its lines into rows."""
    if not os.path.exists(os.path.join(os.path.dirname(__file__), "bench_gui.py")):
        return [Row(item="5. GUI (bench_gui)", backchain="not present in this checkout")]
    log("running bench_gui (child process)")
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_gui"],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        return [Row(item="5. GUI (bench_gui)", backchain=f"failed: {result.stderr[-300:]}")]
    rows = []
    for line in result.stdout.splitlines():
        if ":" not in line or line.startswith("Qt platform"):
            continue
        label, figure = (part.strip() for part in line.split(":", 1))
        target, met = "report", "–"
        for key, (wanted, pattern, limit) in GUI_TARGETS.items():
            found = re.search(pattern, figure)
            if key in label + " " + figure and found:
                target, met = wanted, yes(float(found.group(1)) < limit)
        rows.append(Row(item=f"5. GUI: {label}", backchain=figure, target=target, met=met))
    return rows


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
