"""Fault-suite helpers: a standard chain with data everywhere, the checks every case makes, and
the tally of cases run, survived and bytes lost that the README's Reliability table reports."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.checks import qemu_io, raw_view
from tests.images import check_clean, checksums, compare, create, snapshot_copy

MiB = 1 << 20
VIRTUAL = 32 * MiB

# fault class -> [cases run, cases survived, bytes lost]
TALLY: dict[str, list[int]] = {}


def record(fault_class: str, survived: bool, bytes_lost: int = 0) -> None:
    """Count one case of a fault class for the Reliability table."""
    row = TALLY.setdefault(fault_class, [0, 0, 0])
    row[0] += 1
    row[1] += int(survived and bytes_lost == 0)
    row[2] += bytes_lost


def bytes_lost(image: Path, reference: Path, scratch: Path) -> int:
    """How many bytes of ``image``'s view differ from ``reference`` (0 when compare agrees)."""
    if not image.exists():
        return VIRTUAL
    if compare(image, reference):
        return 0
    a = raw_view(image, scratch / "a.raw")
    b = raw_view(reference, scratch / "b.raw")
    return sum(1 for x, y in zip(a, b, strict=False) if x != y) + abs(len(a) - len(b))


@dataclass
class Scene:
    """``base <- snap1 <- snap2 <- active``, ``other`` on base, and an unrelated image.

    snap1 and snap2 write data over the whole disk, so that commit progress moves evenly.
    """

    dir: Path
    state: Path
    keep: Path
    sums: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> Path:
        """The image that receives the data."""
        return self.dir / "base.qcow2"

    def p(self, name: str) -> Path:
        """A path in the scene."""
        return self.dir / name

    @classmethod
    def build(cls, root: Path, names: dict[str, str] | None = None) -> Scene:
        """Create the images, the reference copies and the checksums of untouched files."""
        scene = cls(root / "vm", root / "state", root / "reference")
        scene.dir.mkdir(parents=True, exist_ok=True)
        scene.keep.mkdir(exist_ok=True)
        base, snap1, snap2, active = (
            scene.p(n) for n in ("base.qcow2", "snap1.qcow2", "snap2.qcow2", "active.qcow2")
        )
        create(base, str(VIRTUAL))
        qemu_io(base, [f"write -P 0x11 {i * 4 * MiB} {MiB}" for i in range(8)])
        for image, below in ((snap1, base), (snap2, snap1), (active, snap2)):
            create(image, backing=below.name, cwd=scene.dir)
        qemu_io(snap1, [f"write -P 0x22 {i * 2 * MiB} {MiB}" for i in range(16)])
        qemu_io(snap2, [f"write -P 0x33 {i * 2 * MiB + MiB // 2} {MiB}" for i in range(16)])
        qemu_io(active, [f"write -P 0x44 {i * 8 * MiB} {MiB // 4}" for i in range(4)])
        other = create(scene.p("other.qcow2"), backing="base.qcow2", cwd=scene.dir)
        qemu_io(other, [f"write -P 0x55 {3 * MiB} {MiB}"])
        unrelated = scene.p("unrelated.qcow2")
        create(unrelated, str(VIRTUAL))
        qemu_io(unrelated, [f"write -P 0x66 0 {MiB}"])
        snapshot_copy(active, scene.keep / "active-view.qcow2")
        snapshot_copy(snap2, scene.keep / "snap2-view.qcow2")
        snapshot_copy(other, scene.keep / "other-view.qcow2")
        scene.sums = checksums([other, unrelated])
        return scene

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a backchain subprocess using this scene's state directory."""
        env = dict(os.environ, BACKCHAIN_STATE_DIR=str(self.state))
        env.pop("BACKCHAIN_FAULT_PAUSE", None)
        env.update(extra)
        return env

    def backchain(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI to completion."""
        return subprocess.run(
            [sys.executable, "-m", "backchain", *args],
            cwd=self.dir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start the CLI in the background."""
        return subprocess.Popen(
            [sys.executable, "-m", "backchain", *args],
            cwd=self.dir,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def jobs(self) -> list[dict[str, object]]:
        """The journal records, as JSON."""
        return journal_records(self.state)

    def unchanged_outside_plan(self) -> bool:
        """Every file outside the plan is byte-identical."""
        return checksums(Path(p) for p in self.sums) == self.sums

    def all_clean(self) -> list[str]:
        """The images that qemu-img check does not pass."""
        images = sorted(self.dir.glob("*.qcow2"))
        return [str(p) for p in images if not check_clean(p)]

    def active_lost(self) -> int:
        """Bytes of active's view that differ from the copy taken before the commit."""
        return bytes_lost(self.p("active.qcow2"), self.keep / "active-view.qcow2", self.keep)

    def committed_correctly(self) -> bool:
        """After the whole job: base holds snap2's view, active reads as before, all clean."""
        return (
            compare(self.base, self.keep / "snap2-view.qcow2")
            and self.active_lost() == 0
            and not self.p("snap2.qcow2").exists()
            and not self.p("snap1.qcow2").exists()
            and not self.all_clean()
        )


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def wait_gone(pid: int, seconds: float = 60) -> None:
    """Wait until a process that is not our child has exited."""
    deadline = time.monotonic() + seconds
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.05)


def kill(pid: int) -> None:
    """SIGKILL, ignoring a process that already ended."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_victim(victim: str, backchain: int, children: Sequence[int]) -> None:
    """SIGKILL Backchain, its qemu-img children, or both, as ``victim`` names."""
    if victim in ("backchain", "both"):
        kill(backchain)
    if victim in ("qemu-img", "both"):
        for child in children:
            kill(child)


def journal_records(state: Path) -> list[dict[str, object]]:
    """The journal records in a state directory, as JSON."""
    found = []
    for path in sorted(glob.glob(str(state / "jobs" / "*.json"))):
        try:
            found.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            continue  # replaced between listing and reading
    return found


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``"24m"``) on ``directory``, made here, unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                   check=True)  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def wait_for(predicate: object, seconds: float = 60, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail the test when it never becomes true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


COMMIT_SNAP2_DELETE = (
    "commit", "--yes", "--top", "snap2.qcow2", "--delete", "--rate", str(12 * MiB), "active.qcow2",
)  # fmt: skip
"""snap2 into base with DELETE, slowed so that faults land inside the copy."""
