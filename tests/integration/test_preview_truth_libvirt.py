"""A running libvirt domain: an active commit's figures are lower bounds, an intermediate's exact.

Each plan is run for real through libvirtd, and a clone on the same base (which the domain does
not open) is measured byte by byte after QEMU has closed the images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from backchain.core.model import CommitRequest, OnReady
from backchain.engines.libvirt import engine as lv
from backchain.engines.progress import RecordingSink
from tests.images import ChainBuilder, MiB, write
from tests.libvirt_daemon import Domains, domains, libvirtd  # noqa: F401
from tests.views import commit_and_measure

URI = "qemu:///system"


@pytest.fixture
def vm(tmp_path: Path, domains: Domains) -> tuple[str, list[Path], Domains]:  # noqa: F811
    """A running domain on base <- snap <- active, and a clone of base beside them."""
    builder = ChainBuilder(tmp_path)
    paths = builder.chain(["base.qcow2", "snap.qcow2", "active.qcow2"])
    clone = builder.overlay("clone.qcow2", paths[0])
    write(clone, 0x77, 0, MiB // 2)
    return domains.start({"vda": str(paths[-1])}), [*paths, clone], domains


def stopper(made: Domains, name: str) -> Callable[[], None]:
    def stop() -> None:
        made.conn.lookupByName(name).destroy()  # QEMU flushes and closes its images

    return stop


def test_active_commit_of_a_running_domain_gives_lower_bounds(
    vm: tuple[str, list[Path], Domains], tmp_path: Path
) -> None:
    name, paths, made = vm
    target = lv.LibvirtTarget(URI, name, "vda")
    plan = lv.plan_commit(target, CommitRequest(image="", on_ready=OnReady.PIVOT))
    assert plan.active_commit and not plan.bytes_to_copy_exact
    assert [(os.path.basename(a.image), a.exact) for a in plan.at_risk] == [("clone.qcow2", False)]
    assert any("lower bounds" in note for note in plan.notes)
    sink = RecordingSink(on_ready=OnReady.PIVOT)
    commit_and_measure(plan, [paths[3]], tmp_path, target, sink, stopper(made, name))


def test_intermediate_commit_of_a_running_domain_stays_exact(
    vm: tuple[str, list[Path], Domains], tmp_path: Path
) -> None:
    name, paths, made = vm
    target = lv.LibvirtTarget(URI, name, "vda")
    plan = lv.plan_commit(target, CommitRequest(image="", top="vda[2]", base="vda[3]"))
    assert plan.bytes_to_copy_exact
    assert [(os.path.basename(a.image), a.bytes, a.exact) for a in plan.at_risk] == [
        ("clone.qcow2", 3 * MiB, True)
    ]
    commit_and_measure(plan, [paths[3]], tmp_path, target, settle=stopper(made, name))
